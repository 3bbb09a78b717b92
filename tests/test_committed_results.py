"""The committed digits benchmark regenerates exactly: two of its runs (the l1 penalty training of seed 0 and its
pruning at 50%), repeated here on CPU with the thread count the committed runs record, give the committed rows of
runs.csv and kept_channels.csv character for character. Machine-dependent figures are not in those files."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import ROOT, compose
from regprune.analysis.collect import collect
from regprune.analysis.runs import KEYS

COMMITTED = ROOT / "results" / "digits"
# (sweep, overrides) of each job, as `make reproduce-digits` composes them
SLICE = [("digits_train", ["experiment=digits/l1", "seed=0"]),
         ("digits", ["experiment=digits/l1", "schedule.prune.ratio=0.5", "seed=0"])]
MATCH = [*KEYS, "seed"]  # a run id holds the run root (through schedule.start_from): match rows on settings
NOT_COMPARED = ["run", "run_id", "git_dirty"]


def rows_of(frame: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    return frame.merge(keys[MATCH], on=MATCH, how="inner").sort_values(MATCH).reset_index(drop=True)


def test_committed_digits_slice_regenerates_exactly(tmp_path):
    committed = pd.read_csv(COMMITTED / "runs.csv", dtype=str, keep_default_na=False)
    assert {"threads", "device", "train_seed"} <= set(committed.columns), \
        "results/digits predates the current table format: regenerate it with make reproduce-digits"
    from regprune.run import run

    for sweep, job in SLICE:
        cfg = compose([f"sweep={sweep}", *job, f"run.root={tmp_path / 'runs'}", "device=cpu"])
        mine = committed[committed.run_id == cfg.run.id]
        assert len(mine) == 1, f"results/digits has no run {cfg.run.id} (sweep={sweep}): regenerate it"
        assert mine.device.iloc[0] == "cpu"
        threads = int(mine.threads.iloc[0])
        run(compose([f"sweep={sweep}", *job, f"run.root={tmp_path / 'runs'}", "device=cpu", f"threads={threads}"]))
    tables = collect([tmp_path / "runs"], tmp_path / "tables", None)
    again = pd.read_csv(tmp_path / "tables" / "runs.csv", dtype=str, keep_default_na=False)
    assert len(again) == 2 and len(tables["summary"]) == 2
    want = rows_of(committed, again)
    assert len(want) == 2, "the regenerated runs' settings are not in results/digits: regenerate it"
    columns = [c for c in want.columns if c not in NOT_COMPARED]
    pd.testing.assert_frame_equal(rows_of(again, want)[columns], want[columns])
    kept = pd.read_csv(COMMITTED / "kept_channels.csv", dtype=str, keep_default_na=False)
    kept_again = pd.read_csv(tmp_path / "tables" / "kept_channels.csv", dtype=str, keep_default_na=False)
    layers = [*MATCH, "layer", "kept", "total"]
    pd.testing.assert_frame_equal(rows_of(kept_again, want)[layers], rows_of(kept, want)[layers])


@pytest.mark.parametrize("name", ["runs", "summary", "kept_channels"])
def test_committed_tables_hold_no_machine_dependent_figures(name):
    columns = pd.read_csv(COMMITTED / f"{name}.csv", nrows=1).columns
    assert not [c for c in columns if c.startswith(("latency", "wall_time", "git_commit", "device_name", "host"))]
