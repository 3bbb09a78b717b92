"""eval.py / regprune-eval: accuracy and cost of a saved model on a chosen split; ONNX and TorchScript exports
whose outputs equal PyTorch's."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from conftest import FAST, compose, train
from regprune.errors import UserError
from regprune.evaluate import EvalConfig, evaluate_run


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory) -> dict:
    from regprune.run import run

    root = tmp_path_factory.mktemp("eval")
    return run(compose([*FAST, "dataset.val_fraction=0.1", f"run.root={root}"]))


def test_evaluation_repeats_the_runs_own_numbers(pruned_run):
    r = evaluate_run(EvalConfig(run=pruned_run["run_dir"], latency=False))
    assert r["acc"] == pytest.approx(pruned_run["acc_finetuned_final"])
    assert (r["params"], r["macs"], r["flops"]) == (pruned_run["params"], pruned_run["macs"], pruned_run["flops"])
    val = evaluate_run(EvalConfig(run=pruned_run["run_dir"], split="val", latency=False))
    history = (Path(pruned_run["run_dir"]) / "history.csv").read_text().strip().splitlines()
    header, last = history[0].split(","), history[-1].split(",")
    assert val["acc"] == pytest.approx(float(last[header.index("val_acc")]))
    trained = evaluate_run(EvalConfig(run=pruned_run["run_dir"], model_file="trained.pt", latency=False))
    assert trained["acc"] == pytest.approx(pruned_run["acc_trained_final"])
    assert trained["params"] == pruned_run["params_unpruned"]
    saved = json.loads((Path(pruned_run["run_dir"]) / "eval" / "eval_test.json").read_text())
    assert saved["acc"] == trained["acc"] and saved["model_file"] == "trained.pt"


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_model_computes_what_pytorch_computes(pruned_run, fmt, tmp_path):
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
    r = evaluate_run(EvalConfig(run=pruned_run["run_dir"], export=[fmt], latency=False, out=str(tmp_path)))
    assert r[f"export_{fmt}"]["max_abs_diff"] <= 1e-4
    from regprune import load_pruned

    model = load_pruned(pruned_run["run_dir"]).eval()
    x = torch.randn(7, 1, 16, 16)  # another batch size than the export's example: the batch dim is dynamic
    with torch.no_grad():
        expected = model(x)
    if fmt == "onnx":
        session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    else:
        with warnings.catch_warnings():  # PyTorch deprecates TorchScript; loading still works
            warnings.simplefilter("ignore", FutureWarning)
            got = torch.jit.load(str(tmp_path / "model.ts"))(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_bad_requests_are_user_errors(pruned_run, tmp_path):
    with pytest.raises(UserError, match="split='holdout': choose from"):
        EvalConfig(run=pruned_run["run_dir"], split="holdout")
    with pytest.raises(UserError, match=r"export=\['tflite'\]: choose from"):
        EvalConfig(run=pruned_run["run_dir"], export=["tflite"])
    with pytest.raises(UserError, match="not a folder"):
        evaluate_run(EvalConfig(run=str(tmp_path / "missing")))
    run_dir = Path(pruned_run["run_dir"])
    shutil.copytree(run_dir, tmp_path / "no-val", ignore=shutil.ignore_patterns("eval"))
    config = tmp_path / "no-val" / "config.yaml"
    config.write_text(config.read_text().replace("val_fraction: 0.1", "val_fraction: 0.0"))
    with pytest.raises(UserError, match="split=val: the run has no validation split"):
        evaluate_run(EvalConfig(run=str(tmp_path / "no-val"), split="val"))


def test_eval_command_line(pruned_run):
    proc = train([f"run={pruned_run['run_dir']}", "latency=false"], check=False, script="eval.py")
    assert proc.returncode == 0, proc.stderr
    assert f"test     450 images: acc {pruned_run['acc_finetuned_final']:.2f}%" in proc.stdout
    bad = train([f"run={pruned_run['run_dir']}", "split=holdout"], check=False, script="eval.py")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: split='holdout': choose from ['test', 'val', 'train']"
