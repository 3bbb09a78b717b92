"""Every user mistake: one-line error, exit code 2, and an earlier run in the same root stays byte-identical."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from conftest import FAST, train
from regprune.models import build_model
from regprune.pruning.io import model_payload


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """A complete run whose files no later mistake may change."""
    root = tmp_path_factory.mktemp("runs")
    train([*FAST, f"run.root={root}"])
    (run_dir,) = (root / "default").iterdir()
    return root, run_dir


def corrupt_copy(run_dir: Path, tmp: Path, name: str) -> Path:
    """A copy of the earlier run (status running) whose ``name`` is truncated."""
    copy = tmp / "copy" / "default" / run_dir.name
    shutil.copytree(run_dir, copy)
    data = (copy / name).read_bytes()
    (copy / name).write_bytes(data[: len(data) // 3])
    metrics = (copy / "metrics.json").read_text().replace('"status": "complete"', '"status": "running"')
    (copy / "metrics.json").write_text(metrics)
    return copy


def other_architecture(tmp: Path) -> Path:
    path = tmp / "vgg11-trained"
    path.mkdir()
    torch.save(model_payload(build_model("vgg11", num_classes=10, in_channels=1)), path / "trained.pt")
    return path


CASES = {
    "unknown model": (["model=resnet9000"], "Could not find 'model/resnet9000'"),
    "unknown dataset": (["dataset=imagenet22k"], "Could not find 'dataset/imagenet22k'"),
    "unknown regularizer": (["regularizer=l0_magic"], "Could not find 'regularizer/l0_magic'"),
    "ratio 1": (["schedule.prune.ratio=1.0"], "schedule.prune.ratio=1.0 is outside [0, 1)"),
    "negative ratio": (["schedule.prune.ratio=-0.2"], "schedule.prune.ratio=-0.2 is outside [0, 1)"),
    "negative lambda": (["regularizer.lam=-1e-4"], "regularizer.lam=-0.0001 must be ≥ 0"),
    "negative epochs": (["schedule.train.epochs=-3"], "schedule.train.epochs=-3 must be ≥ 0"),
    "seed not an int": (["seed=abc"], "seed=abc"),
    "negative seed": (["seed=-1"], "seed=-1 must be ≥ 0"),
    "unknown resume mode": (["resume=maybe"], "resume='maybe': choose from"),
    "typo in a top-level key": (["sead=1"], "Could not override 'sead'"),
    "typo in a schedule key": (["schedule.prune.ratoi=0.5"], "Could not override 'schedule.prune.ratoi'"),
    "momentum out of range": (["optimizer.momentum=1.5"], "optimizer.momentum=1.5 is outside [0, 1)"),
    "unknown empty-layer policy": (["schedule.prune.on_empty=ignore"], "schedule.prune.on_empty='ignore'"),
    "zero batch size": (["dataset.batch_size=0"], "dataset: batch sizes must be ≥ 1"),
    "unknown lr schedule": (["schedule.train.lr_schedule=warmup"], "schedule.train.lr_schedule='warmup'"),
    "unknown stop_after phase": (["schedule.stop_after=lunch"], "schedule.stop_after='lunch' is not a phase"),
    "flops target out of range": (["schedule.prune.flops_target=1.5"], "schedule.prune.flops_target=1.5 is outside"),
    "missing start_from": (["schedule.start_from=/nonexistent/run"], "checkpoint not found: /nonexistent/run"),
    "MCP flat at every initial gamma": (["regularizer=mcp", "regularizer.gamma_sat=0.4"],
                                        "regularizer=mcp: the penalty's gradient is 0 at every gate γ"),
    "MCP saturating below lambda": (["regularizer=mcp", "regularizer.gamma_sat=1e-5"],
                                    "regularizer.gamma_sat=1e-05 must be > 1·lam"),
    "GReg on initial weights": (["regularizer=greg"], "add a plain training phase before it"),
    "OTO half-space below 0": (["regularizer=oto", "regularizer.eps=-0.1"], "regularizer.eps=-0.1 is outside [0, 1)"),
    "SCP temperature 0": (["regularizer=scp", "regularizer.temperature=0"], "regularizer.temperature=0 must be > 0"),
    "RSNLI rescaling a ReLU6 model": (["regularizer=rsnli", "regularizer.rescale=0.5", "model=mobilenet_v2"],
                                      "γ–W rescaling is not function-preserving on MobileNetV2"),
    "existing run folder": ([], "already exists; pass resume=auto"),
    "diverging training": (["optimizer.lr=1e30", "run.name=diverge"], "non-finite"),
    "block gates without blocks": (["regularizer=sss", "regularizer.structures=blocks"],
                                   "regularizer=sss cannot be used with model=VGG: block gates need residual blocks"),
    "compactors on select groups": (["regularizer=resrep", "model=preresnet164"],
                                    "compactors need every channel group to be one conv followed by one BatchNorm"),
    "gate FLOPs budget of 1.5": (["regularizer=gdp", "regularizer.flops_target=1.5"],
                                 "regularizer.flops_target=1.5 is outside (0, 1)"),
    "gate FLOPs budget of 0": (["regularizer=dmc", "regularizer.flops_target=0"],
                               "regularizer.flops_target=0 is outside (0, 1)"),
    "BAR budget of 1": (["regularizer=bar", "regularizer.flops_target=1"], "regularizer.flops_target=1"),
    "BAR temperature 0": (["regularizer=bar", "regularizer.temperature=0"], "temperature=0 must be > 0"),
    "BAR alpha above 1": (["regularizer=bar", "regularizer.alpha=1.5"], "alpha=1.5 is outside [0, 1]"),
    "SCOP beta outside [0, 1]": (["regularizer=scop", "schedule=gates", "regularizer.init=1.5"],
                                 "init=1.5 is outside [0, 1]"),
    "SCOP knockoffs of too large inputs": (["regularizer=scop", "schedule=gates", "schedule.pretrain.epochs=1",
                                            "regularizer.max_features=10", "run.name=scop-large"],
                                           "its 256 features exceed regularizer.max_features=10"),
    "GAL block masks without blocks": (["regularizer=gal", "schedule=gates", "regularizer.structures=blocks"],
                                       "regularizer=gal cannot be used with model=VGG: block gates need residual "
                                       "blocks"),
    "GAL mask step 0": (["regularizer=gal", "schedule=gates", "regularizer.every=0"],
                        "every=0 must be ≥ 1 iteration"),
    "lambda not a number": (["regularizer.lam=abc"], "regularizer.lam='abc': expected float, got str"),
    "unknown top-level key": (["+sed=1"], "unknown top-level key(s) sed"),
    "unknown nested preset": (["experiment=ns2017/c10_vgg19_p7"], "available experiment/ns2017 options: "
                              "c100_densenet40_baseline"),
}


# cases that train before failing: the slow checks
SLOW = {"diverging training", "SCOP knockoffs of too large inputs"}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in CASES])
def test_bad_input(case, earlier):
    root, _ = earlier
    overrides, message = CASES[case]
    before = snapshot(root)
    proc = train([*FAST, f"run.root={root}", *overrides], check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    after = snapshot(root)
    assert {k: v for k, v in after.items() if k in before} == before


def test_output_root_under_a_file(earlier, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    proc = train([*FAST, f"run.root={blocker}/runs"], check=False)
    (line,) = proc.stderr.strip().splitlines()
    assert proc.returncode == 2
    assert line.startswith(f"error: cannot create run folder {blocker}/runs/default/vgg_tiny-digits-l1-ns-lr0.05-"
                           "finetune.epochs1-prune.ratio0.5-train.epochs1-s0-")
    assert line.endswith(f": {blocker} is not a directory")


def test_start_from_another_architecture(earlier, tmp_path):
    root, _ = earlier
    before = snapshot(root)
    proc = train([*FAST, f"run.root={root}", f"schedule.start_from={other_architecture(tmp_path)}"], check=False)
    assert proc.returncode == 2 and "holds VGG({'depth': 'vgg11'" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert snapshot(root) == before


@pytest.mark.parametrize("name", ["trained.pt", "ckpt.pt"])
def test_truncated_checkpoints(name, earlier, tmp_path):
    root, run_dir = earlier
    before = snapshot(root)
    copy = corrupt_copy(run_dir, tmp_path, name)
    args = [f"schedule.start_from={copy}"] if name == "trained.pt" else ["resume=auto", f"run.root={tmp_path}/copy"]
    proc = train([*FAST, f"run.root={tmp_path}/other", *args], check=False) if name == "trained.pt" else \
        train([*FAST, *args], check=False)
    assert proc.returncode == 2 and f"cannot read checkpoint {copy / name}" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert snapshot(root) == before


def test_layer_emptied_by_pruning(earlier, tmp_path):
    root, run_dir = earlier
    proc = train([*FAST, f"run.root={tmp_path}", f"schedule.start_from={run_dir}", "schedule.prune.ratio=0.99"],
                 check=False)
    assert proc.returncode == 2 and "pruning would leave 0 channel(s) in features." in proc.stderr, proc.stderr
    (failed,) = (tmp_path / "default").iterdir()
    assert '"status": "failed"' in (failed / "metrics.json").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_cuda_requested_without_gpu(earlier):
    proc = train([*FAST, "device=cuda"], check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: device=cuda: CUDA is not available on this machine"
