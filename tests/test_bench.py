"""scripts/bench.py: the report's schema (never timing thresholds) and the fake CIFAR files it benchmarks on."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT


def bench_module():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def positive(x) -> bool:
    return isinstance(x, float | int) and math.isfinite(x) and x > 0


@pytest.mark.slow
@pytest.mark.ci
def test_quick_bench_writes_a_complete_report(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--device", "cpu",
                           "--threads", "1", "--out", str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1 and files[0].stem.startswith("cpu-")
    report = json.loads(files[0].read_text())
    assert report["schema"] == 1 and report["device"] == files[0].stem and report["quick"] is True

    (step,) = report["step"]
    assert step["model"] == "vgg_tiny" and step["batch"] == 64
    assert all(positive(step[k]) for k in ("reference_ms", "project_ms", "ratio", "with_pipeline_ratio"))
    assert math.isclose(step["ratio"], step["project_ms"] / step["reference_ms"], rel_tol=1e-9)
    assert step["fastest"]["ms"] == min(step["settings_ms"].values())
    assert {"project", "channels_last=false"} <= set(step["settings_ms"])  # channels_last is the default

    pipe = report["pipeline"]
    assert pipe["images"] == 256 and positive(pipe["project_img_s"])
    assert [r["num_workers"] for r in pipe["reference"]] == [0, 2]
    for r in pipe["reference"]:
        assert positive(r["img_s"]) and math.isclose(r["speedup"], pipe["project_img_s"] / r["img_s"], rel_tol=1e-6)

    pen = report["penalty"]
    assert pen["skipped"] == []  # every regularizer ran: a crashing penalty fails here, not silently
    names = {r["name"] for r in pen["regularizers"]}
    assert names == {p.stem for p in (ROOT / "configs" / "regularizer").glob("*.yaml")} - {"none"}
    for r in pen["regularizers"]:
        assert r["kind"] in ("gamma", "group", "weight", "gate") and positive(r["ms"]) and r["isolated_overhead"] >= 0
        assert (r["kind"] == "gate") == (r["name"] in ("sss", "dmc", "gdp", "resrep", "bar", "scop", "gal"))
        assert r["kind"] != "weight" or r["class"] == "WeightLHalf"  # element-wise: no group-penalty goal
        assert math.isclose(r["overhead"], r["ms"] / pen["none_ms"] - 1, rel_tol=1e-6, abs_tol=1e-9)

    prune = report["prune"]
    plain, row = prune["rows"]
    assert not plain["bn_folded"] and plain["flops_ratio"] == row["flops_ratio"]
    assert prune["measure"] == "latency" and row["variant"] == "p50" and row["batch"] == 1 and row["bn_folded"]
    assert 0 < row["flops_ratio"] < 1 and math.isclose(row["flops_speedup"], 1 / row["flops_ratio"])
    assert math.isclose(row["efficiency"], row["speedup"] / row["flops_speedup"])

    assert report["epoch"] is None and any("CUDA only" in n for n in report["notes"])
    assert {"a_step_ratio", "b_pipeline_speedup", "c_penalty_gamma", "d_prune_efficiency",
            "d_prune_efficiency_bn_folded"} <= set(report["goals"])
    assert all(isinstance(g["met"], bool) for g in report["goals"].values())
    assert "(a) training step" in proc.stdout and "goals" in proc.stdout


def test_fake_cifar_files_read_the_same_by_torchvision_and_the_project(tmp_path):
    bench = bench_module()
    files = bench.write_fake_cifar(tmp_path, 12_000)
    assert files == ["data_batch_1", "data_batch_2"]
    x, y = bench.read_cifar(tmp_path, files)
    ds = bench.torchvision_cifar(tmp_path, files, transform=None)
    assert len(ds) == len(y) == 12_000
    for i in (0, 9_999, 10_000, 11_999):
        image, label = ds[i]
        assert label == int(y[i])
        assert np.array_equal(np.asarray(image), x[i].permute(1, 2, 0).numpy())
    assert x.dtype == torch.uint8 and tuple(x.shape) == (12_000, 3, 32, 32)


def test_reference_loop_trains_and_applies_the_l1_subgradient():
    bench = bench_module()
    model = bench.new_model("vgg_tiny", torch.device("cpu"))
    bn = model.gate_modules()[next(iter(model.gate_modules()))]
    before = bn.weight.detach().clone()
    batches = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: only the gradient is observable
    bench.reference_train(model, batches, optimizer, torch.device("cpu"), sparsity=0.5)
    plain = torch.autograd.grad(torch.nn.functional.cross_entropy(model(batches[0][0]), batches[0][1]),
                                bn.weight)[0]
    torch.testing.assert_close(bn.weight.grad, plain + 0.5 * torch.sign(before), rtol=1e-4, atol=1e-5)


def test_epoch_section_runs_end_to_end_on_cpu(tmp_path):
    """The CUDA-only epoch comparison, exercised on CPU with a tiny model (no memory figures there)."""
    bench = bench_module()
    s = bench.settings_for(torch.device("cpu"), quick=True, models=None)
    s.epoch_images = 128
    out = bench.bench_epoch(s, torch.device("cpu"), tmp_path)
    assert out["images"] == 128 and out["model"] == "vgg_tiny"
    assert positive(out["reference_s"]) and positive(out["project_s"])
    assert math.isclose(out["time_ratio"], out["project_s"] / out["reference_s"])
    assert out["memory_ratio"] is None and out["project_peak_mib"] is None
