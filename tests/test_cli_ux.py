"""Researcher experience (issue 15): Hydra's flags, console output, run names, errors, launcher failures."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import FAST, FAST_TRAIN, ROOT, compose, train
from regprune.cli import preflight

# every Hydra flag that takes a value or changes what is shown, in both spellings
FLAGS = [["--cfg", "job"], ["-c", "job"], ["--cfg=hydra"], ["--info", "defaults"], ["-i", "defaults"], ["--info"],
         ["--package", "regularizer", "-c", "job"], ["-p", "regularizer", "-c", "job"], ["--resolve", "-c", "job"],
         ["--config-name", "config"], ["-cn", "config"], ["--config-path", "configs"], ["-cp", "configs"],
         ["--config-dir", str(ROOT / "configs")], ["-cd", str(ROOT / "configs")], ["--help"], ["-h"],
         ["--hydra-help"], ["-m"], ["--multirun"], ["-r"], ["--run"]]


@pytest.fixture
def reproduce():
    """scripts/reproduce.py as a module; it initialises Hydra once per process, cleared again afterwards."""
    from hydra.core.global_hydra import GlobalHydra

    if str(ROOT / "scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "scripts"))
    yield importlib.import_module("reproduce")  # the one module object (its local pool pickles its functions)
    GlobalHydra.instance().clear()


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
    ("experiment=nss2017", "available experiment options: bui2020/..., digits/..., imagenet/..., li2024/..., "),
])
def test_unknown_nested_preset_lists_nested_presets(preset, listed, capsys):
    with pytest.raises(SystemExit):
        preflight([preset])
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and listed in line and "_settings" not in line


# -- item 4: run folders name what the command line changed ------------------------------------------
def test_run_id_names_overrides_by_value_in_any_order():
    from regprune.run_id import run_id

    def rid(overrides):
        return run_id(compose(overrides), "vgg_tiny-digits-l1-ns", 0, overrides)

    a = rid(["regularizer.lam=1e-3", "schedule.prune.ratio=0.5", "threads=1", "run.root=/x", "seed=0"])
    assert a == rid(["schedule.prune.ratio=0.5", "regularizer.lam=0.001", "seed=0"])  # same values, same folder
    assert a.startswith("vgg_tiny-digits-l1-ns-lam0.001-prune.ratio0.5-s0-")
    assert rid(["optimizer=adam", "schedule.train.epochs=3", "schedule.finetune.epochs=2"]).startswith(
        "vgg_tiny-digits-l1-ns-adam-finetune.epochs2-train.epochs3-s0-")
    long = rid([f"dataset.{k}=1" for k in ("crop_padding", "eval_batch_size", "split_seed")] +
               ["model.widths=[8,8,16,16,32,32]", "regularizer.update=prox"])
    assert all(c.isalnum() or c in "._-" for c in long) and len(long) <= 140, long


@pytest.mark.slow
def test_sweep_folders_differ_by_the_swept_value(tmp_path):
    proc = train(["-m", *FAST, "regularizer.lam=1e-3,1e-4", f"run.root={tmp_path}"])
    names = sorted(p.name for p in (tmp_path / "default").iterdir())
    assert [n.split("-s0-")[0] for n in names] == [
        f"vgg_tiny-digits-l1-ns-lr0.05-{lam}-finetune.epochs1-prune.ratio0.5-train.epochs1"
        for lam in ("lam0.0001", "lam0.001")]
    assert f"[sweep] 2 runs in {tmp_path / 'default'}, 2 complete, 0 failed:" in proc.stdout
    assert all(str(tmp_path / "default" / n) in proc.stdout for n in names)


# -- item 2: a run that starts from another takes the source's settings -------------------------------
PRUNE = [a for a in FAST if not a.startswith("schedule.train.")]  # the training settings come from the source


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    root = tmp_path_factory.mktemp("start")
    train([*FAST_TRAIN, "regularizer=none", "schedule=train", "schedule.train.epochs=2", f"run.root={root}",
           "run.name=base"])
    (folder,) = (root / "default").iterdir()
    return folder


@pytest.mark.slow
def test_pruning_a_baseline_is_recorded_as_the_baseline(baseline, tmp_path):
    from regprune.analysis.runs import runs_frame

    proc = train([*PRUNE, f"schedule.start_from={baseline}", f"run.root={tmp_path}"])
    folder = Path(proc.stdout.strip().splitlines()[-1].removeprefix("run folder: "))
    metrics = json.loads((folder / "metrics.json").read_text())
    assert (metrics["regularizer"], metrics["lam"]) == ("none", 0.0)
    assert metrics["started_from_id"] == baseline.name and metrics["started_from"] == str(baseline)
    ours, source = (yaml.safe_load((f / "config.yaml").read_text()) for f in (folder, baseline))
    for key in ("model", "dataset", "regularizer"):
        assert ours[key] == source[key]
    assert ours["schedule"]["train"] == source["schedule"]["train"]
    (row,) = runs_frame(tmp_path).itertuples()
    assert (row.regularizer, row.lam, row.train_epochs) == ("none", 0.0, 2)


@pytest.mark.parametrize("override, leaf", [("regularizer=l1", "regularizer._target_"),
                                            ("schedule.train.epochs=5", "schedule.train.epochs"),
                                            ("model.bn_init=1.0", "model.bn_init")])
def test_override_contradicting_the_source_is_refused(baseline, tmp_path, override, leaf):
    proc = train([*PRUNE, f"schedule.start_from={baseline}", f"run.root={tmp_path}", override], check=False)
    (line,) = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and line.startswith("error: ")
    assert f"contradicts the run it starts from ({leaf} is " in line
    assert not (tmp_path / "default").exists()


@pytest.mark.slow
def test_digits_sweep_pair_prunes_its_trained_model(reproduce, tmp_path):
    """Stage 1 (digits_train) trains, stage 2 (digits) prunes it at three ratios; reproduce.py finds every folder."""
    extra = ["hydra.sweeper.params.experiment=digits/l1", "hydra.sweeper.params.seed=0", "schedule.train.epochs=2",
             "latency=false", f"run.root={tmp_path}"]
    train(["sweep=digits_train", *extra])
    train(["sweep=digits", *extra, "schedule.finetune.epochs=1"])
    specs = [["sweep=digits", *job, *extra, "schedule.finetune.epochs=1"]
             for job in reproduce.sweep_jobs("digits", [*extra, "schedule.finetune.epochs=1"])]
    status = [reproduce.job_status(spec) for spec in specs]
    assert len(status) == 3 and all(s == "complete" for _, s in status)
    for folder, _ in status:
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["started_from_id"] == "digits-l1-lam0.02-trained-s0" and metrics["regularizer"] == "l1"
        assert folder.name == f"digits-l1-lam0.02-p{metrics['prune_ratio']:g}-s0"  # the id the controls point at


# -- item 3: console lines when the output goes to a file; TensorBoard next to W&B --------------------
@pytest.mark.slow
def test_console_prints_epochs_prune_and_final_summary_to_a_file(tmp_path):
    args = [a for a in FAST if a != "progress=false"] + ["schedule.train.epochs=2", "dataset.val_fraction=0.1"]
    proc = train([*args, f"run.root={tmp_path}"])  # stdout and stderr are pipes, as in a Slurm log
    lines = proc.stdout.strip().splitlines()
    folder = Path(lines[-1].removeprefix("run folder: "))
    metrics = json.loads((folder / "metrics.json").read_text())
    history = list(csv.DictReader((folder / "history.csv").open()))
    epochs = [ln for ln in lines if ln.startswith(("train ", "finetune "))]
    assert len(epochs) == len(history) == 3
    for line, row in zip(epochs, history, strict=True):
        total = {"train": 2, "finetune": 1}[row["phase"]]
        assert line.startswith(f"{row['phase']:<8} epoch {row['epoch']:>3}/{total}  lr {float(row['lr']):.4g}  "
                               f"loss {float(row['train_loss']):.4f}  train {float(row['train_acc']):6.2f}%  "
                               f"val {float(row['val_acc']):6.2f}%  test {float(row['test_acc']):6.2f}%")
    (prune,) = [ln for ln in lines if ln.startswith("prune ")]
    kept, total = sum(metrics["kept_channels"].values()), sum(metrics["total_channels"].values())
    assert f"kept {kept}/{total} channels" in prune and f"test {metrics['acc_pruned']:.2f}% right after" in prune
    (done,) = [ln for ln in lines if ln.startswith("done ")]
    assert f"fine-tuned {metrics['acc_finetuned_final']:.2f}%" in done and "FLOPs " in done
    assert "it/s" not in proc.stderr and "\r" not in proc.stderr  # no progress bars off a terminal


def test_tensorboard_next_to_wandb_and_console(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from regprune.run import build_parts, run, typed
    from regprune.tracking import ConsoleLogger, TensorBoardLogger, WandbLogger

    args = [*FAST, "dataset.size=8", f"run.root={tmp_path}"]
    cfg = compose([*args, "logger=[wandb,tensorboard]"])
    sinks = build_parts(cfg, typed(cfg), torch.device("cpu")).logger.sinks
    assert [type(s) for s in sinks] == [ConsoleLogger, WandbLogger, TensorBoardLogger]
    metrics = run(compose([*args, "logger=tensorboard"]))
    events = EventAccumulator(str(Path(metrics["run_dir"]) / "tensorboard"))
    events.Reload()
    history = list(csv.DictReader((Path(metrics["run_dir"]) / "history.csv").open()))
    for phase in ("train", "finetune"):
        logged = [e.value for e in events.Scalars(f"{phase}/test_acc")]
        assert logged == pytest.approx([float(r["test_acc"]) for r in history if r["phase"] == phase], abs=1e-4)
    assert events.Scalars("prune/acc_pruned")[0].value == pytest.approx(metrics["acc_pruned"], abs=1e-4)
    assert events.Scalars("final/flops")[0].value == metrics["flops"]
    assert events.Tags()["histograms"] == ["train/gamma_abs", "finetune/gamma_abs"]


# -- item 10: make clean keeps runs; deleting them is its own target that asks -------------------------
@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_clean_keeps_runs_and_clean_runs_asks(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for d in ("runs/default/a-s0-1234abcd", ".pytest_cache", "src/pkg/__pycache__"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "runs/default/a-s0-1234abcd/ckpt.pt").write_bytes(b"x")

    def make(*args, answer=""):
        return subprocess.run(["make", "-s", *args], cwd=tmp_path, input=answer, capture_output=True, text=True)

    assert make("clean").returncode == 0
    assert (tmp_path / "runs/default/a-s0-1234abcd/ckpt.pt").is_file()
    assert not (tmp_path / ".pytest_cache").exists() and not (tmp_path / "src/pkg/__pycache__").exists()
    refused = make("clean-runs", answer="n\n")
    assert refused.returncode != 0 and "nothing deleted" in refused.stdout and (tmp_path / "runs").is_dir()
    assert make("clean-runs", answer="y\n").returncode == 0 and not (tmp_path / "runs").exists()
    (tmp_path / "runs").mkdir()
    assert make("clean-runs", "CONFIRM=yes").returncode == 0 and not (tmp_path / "runs").exists()


# -- item 13: make reproduce --dry-run estimates the compute and says what data is missing --------------
def test_dry_run_estimates_compute_and_names_missing_cifar(reproduce, tmp_path, capsys, monkeypatch):
    from regprune.cost import count_macs
    from regprune.models import build_model

    monkeypatch.setenv("REGPRUNE_DATA", str(tmp_path / "data"))
    extra = ["hydra.sweeper.params.experiment=ns2017/c10_vgg19_p70", "hydra.sweeper.params.seed=0",
             f"run.root={tmp_path / 'runs'}"]
    reproduce.run_sweep("ns2017_table1_train", extra, dry_run=True)
    out = capsys.readouterr().out
    macs = count_macs(build_model("vgg19", num_classes=10, in_channels=3), (3, 32, 32))
    assert "sweep=ns2017_table1_train: 1 runs, 0 complete, 1 to run" in out
    assert f"to run: 160 epochs, {160 * 50_000:,} image passes, at most {6 * macs * 160 * 50_000:.2e} " in out
    assert f"missing data: CIFAR-10 not found in {tmp_path / 'data' / 'cifar-10-batches-py'}: " in out
    assert not (tmp_path / "runs").exists()


def test_license_and_citation():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT" and cff["authors"] and cff["message"]
    assert cff["version"] == __import__("regprune").__version__
