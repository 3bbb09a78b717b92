"""Researcher experience (issue 15): Hydra's flags, console output, run names, errors, launcher failures."""

from __future__ import annotations

import pytest

from conftest import ROOT, train
from regprune.cli import preflight

# every Hydra flag that takes a value or changes what is shown, in both spellings
FLAGS = [["--cfg", "job"], ["-c", "job"], ["--cfg=hydra"], ["--info", "defaults"], ["-i", "defaults"], ["--info"],
         ["--package", "regularizer", "-c", "job"], ["-p", "regularizer", "-c", "job"], ["--resolve", "-c", "job"],
         ["--config-name", "config"], ["-cn", "config"], ["--config-path", "configs"], ["-cp", "configs"],
         ["--config-dir", str(ROOT / "configs")], ["-cd", str(ROOT / "configs")], ["--help"], ["-h"],
         ["--hydra-help"], ["-m"], ["--multirun"], ["-r"], ["--run"]]


@pytest.mark.parametrize("flags", FLAGS, ids=" ".join)
def test_preflight_reads_hydra_flags_as_flags(flags, capsys):
    """A flag's value is never taken for an override; the overrides after it are still checked."""
    preflight(["regularizer=tl1", "seed=0,1" if "-m" in flags or "--multirun" in flags else "seed=1", *flags])
    with pytest.raises(SystemExit) as e:
        preflight(["regularizer=bogus", *flags])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("error: In 'config': Could not find 'regularizer/bogus'")


PLAIN = [["--cfg", "job", "regularizer=tl1"], ["-p", "schedule.prune", "-c", "job"], ["--info", "defaults"],
         ["-cd", "EXTRA", "experiment=mine", "-c", "job", "-p", "seed"]]


@pytest.mark.parametrize("args", PLAIN, ids=" ".join)
def test_flags_behave_as_in_plain_hydra(args, tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\nseed: 7\n")
    args = [str(tmp_path) if a == "EXTRA" else a for a in args]
    ours = train(args, check=False)
    plain = train(args, check=False, env={"REGPRUNE_NO_PREFLIGHT": "1"})
    assert (ours.returncode, ours.stdout, ours.stderr) == (plain.returncode, plain.stdout, plain.stderr)
    assert ours.returncode == 0 and ours.stdout.strip()
