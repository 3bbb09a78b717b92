"""Researcher experience (issue 15): Hydra's flags, console output, run names, errors, launcher failures."""

from __future__ import annotations

import pytest

from conftest import ROOT, compose, train
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


# -- item 7: wrong types, unknown keys, nested presets -------------------------------------------------
@pytest.mark.parametrize("override, message", [
    ("regularizer.lam=abc", "regularizer.lam='abc': expected float, got str"),
    ("schedule.prune.ratio=half", "schedule.prune.ratio='half': expected float, got str"),
    ("dataset.batch_size=1.5", "dataset.batch_size=1.5: expected int, got float"),
    ("model.widths=[1,a]", "model.widths=[1, 'a']: expected list of int or null, got list"),
    ("+regularizer.lamda=1", "regularizer: unknown key 'lamda'; allowed: lam, update"),
])
def test_wrong_type_names_key_value_and_type(override, message):
    from regprune.errors import UserError
    from regprune.run import component

    cfg = compose([override])
    key = override.lstrip("+").split(".")[0]
    with pytest.raises(UserError) as e:
        component(cfg[key], key, **({"num_classes": 10, "in_channels": 1} if key == "model" else {}))
    assert str(e.value) == message


def test_unknown_top_level_key_is_an_error():
    from regprune.errors import UserError
    from regprune.run import run_folder

    with pytest.raises(UserError, match=r"unknown top-level key\(s\) sead \(a typo after '\+'\?\)"):
        run_folder(compose(["+sead=1"]))


@pytest.mark.parametrize("preset, listed", [
    ("experiment=ns2017/c10_vgg19_p7", "available experiment/ns2017 options: c100_densenet40_baseline, "),
    ("experiment=nss2017", "available experiment options: demo, demo_baseline, bui2020/..., li2024/..., mini/..."),
])
def test_unknown_nested_preset_lists_nested_presets(preset, listed, capsys):
    with pytest.raises(SystemExit):
        preflight([preset])
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and listed in line and "_settings" not in line
