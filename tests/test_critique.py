"""The scale-invariance critique: random function-preserving rescalings change what |γ| prunes but not what Taylor
or the ReLU-survival probability prune; the script writes its table and figure from trained runs."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
import torch

from conftest import FAST_TRAIN, ROOT, compose
from regprune.analysis import critique as C
from regprune.models import build_model
from regprune.pruning.verify import randomise_bn

pytestmark = pytest.mark.usefixtures("one_thread")


def test_changed_share_counts_the_pruned_channels_kept_after_rescaling():
    base = {"a": torch.tensor([True, True, False, False]), "b": torch.tensor([True, False])}
    other = {"a": torch.tensor([True, False, True, False]), "b": torch.tensor([False, False])}
    assert C.changed_share(base, other) == pytest.approx(2 / 3)
    assert C.changed_share(base, base) == 0.0


@pytest.mark.parametrize("scope", C.SCOPES)
def test_rescaling_moves_gamma_pruning_only(scope):
    g = torch.Generator().manual_seed(0)
    model = build_model("vgg_tiny", num_classes=10, in_channels=1).double()
    randomise_bn(model, g)
    batches = [(torch.randn(16, 1, 16, 16, generator=g, dtype=torch.float64), torch.randint(0, 10, (16,), generator=g))
               for _ in range(2)]
    rows = pd.DataFrame(C.critique(model, batches, batches, ["bn_gamma", "taylor", "relu_prob"], 0.5, [1.0, 10.0], 2,
                                   scope))
    moved = rows[rows.spread == 10.0].groupby("importance").changed.max()
    assert moved["bn_gamma"] > 0.05 and moved["taylor"] == 0 and moved["relu_prob"] == 0
    assert (rows[rows.spread == 1.0].changed == 0).all()  # spread 1: α = 1, nothing changes
    for imp in ("taylor", "relu_prob"):
        assert rows[rows.importance == imp].acc_pruned.nunique() == 1  # the same channels, the same function


def test_factors_are_within_the_spread_and_shared_by_a_layer():
    model = build_model("vgg_tiny", num_classes=10, in_channels=1)
    g = torch.Generator().manual_seed(0)
    layer = C.random_factors(model, 4.0, "layer", g)
    channel = C.random_factors(model, 4.0, "channel", g)
    for k, a in layer.items():
        assert (a == a[0]).all() and 0.25 <= float(a[0]) <= 4.0
        assert (channel[k] >= 0.25).all() and (channel[k] <= 4.0).all() and channel[k].unique().numel() > 1
    with pytest.raises(ValueError, match="spread=0.5"):
        C.random_factors(model, 0.5, "layer", g)


def test_script_writes_table_and_figure_from_trained_runs(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import critique as script

    from regprune.run import run

    runs = [run(compose([*FAST_TRAIN, "schedule=train", f"seed={seed}", f"run.root={tmp_path}"]))["run_dir"]
            for seed in (0, 1)]
    out = tmp_path / "critique"
    assert script.main([*runs, "--out", str(out), "--spreads", "4", "--trials", "2"]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.importance) == {"bn_gamma", "taylor", "relu_prob"} and set(summary.models) == {2}
    assert (summary[summary.importance != "bn_gamma"].changed == 0).all()
    assert (out / "critique.png").stat().st_size > 0 and (out / "critique.pdf").is_file()
    assert "| bn_gamma | 4 | 2 |" in (out / "summary.md").read_text()


def test_script_refuses_a_folder_without_a_trained_model(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    import critique as script

    assert script.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == f"error: {tmp_path}: no trained.pt (not a finished training run)"
    assert not (tmp_path / "out").exists()
