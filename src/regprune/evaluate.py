"""Evaluate a saved (pruned) model and export it: ``python eval.py run=<run folder>`` or ``regprune-eval run=...``.

Accuracy and loss on a chosen split of the run's own dataset (rebuilt from its ``config.yaml``), params,
MACs, FLOPs (= 2 × MACs) and latency of the compact model; ``export=[onnx,torchscript]`` writes the model
as ONNX / TorchScript and checks that the exported model's outputs equal PyTorch's on that split's first
batch. Results go to ``<run folder>/eval/`` (``eval_<split>.json`` and the exported files); the run's own
records are never touched.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from .cli import CONFIG_DIR, entry
from .errors import UserError

SPLITS = ("test", "val", "train")
FORMATS = ("onnx", "torchscript")
MODEL_FILES = ("model.pt", "trained.pt")


@dataclass
class EvalConfig:
    run: str = MISSING  # a run folder
    model_file: str = "model.pt"  # model.pt: the final (pruned) model | trained.pt: before pruning
    split: str = "test"  # test | val (needs dataset.val_fraction > 0 in the run) | train (without augmentation)
    batch_size: int = 0  # 0: the run's eval batch size
    device: str = "cpu"  # cpu | cuda | cuda:N
    latency: bool = True  # median time of a batch-1 forward pass
    export: list[str] = field(default_factory=list)  # onnx | torchscript
    tolerance: float = 1e-4  # largest |exported - PyTorch| output accepted
    out: str | None = None  # null: <run folder>/eval

    def __post_init__(self):
        if self.model_file not in MODEL_FILES:
            raise UserError(f"model_file={self.model_file!r}: choose from {list(MODEL_FILES)}")
        if self.split not in SPLITS:
            raise UserError(f"split={self.split!r}: choose from {list(SPLITS)}")
        if self.batch_size < 0:
            raise UserError(f"batch_size={self.batch_size} must be ≥ 0")
        unknown = sorted(set(self.export) - set(FORMATS))
        if unknown:
            raise UserError(f"export={unknown}: choose from {list(FORMATS)}")
        if not self.tolerance > 0:
            raise UserError(f"tolerance={self.tolerance} must be > 0")


ConfigStore.instance().store(name="regprune_eval_schema", node=EvalConfig)


def load_split(folder: Path, split: str, batch_size: int, device: torch.device):
    """(batches of ``split`` of the run's dataset, input shape, number of images)."""
    from .data.loader import BatchLoader
    from .run import component

    config = folder / "config.yaml"
    if not config.is_file():
        raise UserError(f"run={folder}: no config.yaml (not a run folder)")
    dataset = component(OmegaConf.load(config).dataset, "dataset")
    data = dataset.load()
    images = getattr(data, split)
    if images is None:
        raise UserError(f"split={split}: the run has no validation split (it was trained with dataset.val_fraction=0)")
    batches = BatchLoader(*images, batch_size or dataset.eval_batch_size, mean=data.mean, std=data.std,
                          device=device)
    return batches, data.input_shape, len(images[1])


def export_torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path) -> torch.Tensor:
    """Trace ``model``, save it, load it back and return its outputs on ``example``."""
    with warnings.catch_warnings():  # PyTorch deprecates TorchScript (the README says so); ONNX is the alternative
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model, example)
        traced.save(str(path))
        return torch.jit.load(str(path), map_location=example.device)(example)


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> torch.Tensor:
    """Export ``model`` (batch size dynamic) and return onnxruntime's outputs on ``example``."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError("export=[onnx] needs onnx, onnxscript and onnxruntime: pip install 'regprune[export]'") \
            from None
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(model, (example,), str(path), dynamo=True, dynamic_shapes=({0: batch},),
                      input_names=["images"], output_names=["logits"], external_data=False, verbose=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"images": example.cpu().numpy()})
    return torch.from_numpy(out).to(example.device)


EXPORTERS = {"onnx": (export_onnx, "model.onnx"), "torchscript": (export_torchscript, "model.ts")}


@torch.no_grad()
def evaluate_run(settings: EvalConfig) -> dict:
    """Accuracy, cost and exports of one saved model; the results as written to ``eval_<split>.json``."""
    from .cost import model_cost
    from .engine.loop import evaluate
    from .pruning.io import load_pruned
    from .run import resolve_device
    from .tracking.record import atomic_write_bytes

    folder = Path(settings.run)
    if not folder.is_dir():
        raise UserError(f"run={folder}: not a folder")
    device = resolve_device(settings.device)
    model = load_pruned(folder / settings.model_file).to(device).eval()
    batches, shape, n = load_split(folder, settings.split, settings.batch_size, device)
    result = {"run": str(folder), "model_file": settings.model_file, "split": settings.split, "images": n,
              "device": str(device), "widths": list(model.widths)}
    result.update(evaluate(model, batches))  # acc, loss
    result.update(model_cost(model, shape, settings.latency))
    out = Path(settings.out) if settings.out else folder / "eval"
    out.mkdir(parents=True, exist_ok=True)
    example = next(iter(batches))[0]
    expected = model(example)
    for fmt in settings.export:
        exporter, name = EXPORTERS[fmt]
        got = exporter(model, example, out / name)
        diff = float((got.float() - expected.float()).abs().max())
        result[f"export_{fmt}"] = {"path": str(out / name), "max_abs_diff": diff}
        if not diff <= settings.tolerance:
            raise UserError(f"export={fmt}: outputs differ from PyTorch's by {diff:.3g} > tolerance="
                            f"{settings.tolerance:g} ({out / name})")
    atomic_write_bytes(out / f"eval_{settings.split}.json", (json.dumps(result, indent=2) + "\n").encode())
    return result


def report(r: dict) -> str:
    lines = [f"model    {r['run']}/{r['model_file']} (widths {r['widths']})",
             f"{r['split']:<8} {r['images']} images: acc {r['acc']:.2f}%  loss {r['loss']:.4f}",
             f"cost     params {r['params']:,}  MACs {r['macs']:,}  FLOPs {r['flops']:,}"]
    if "latency_ms" in r:
        lines.append(f"latency  {r['latency_ms']:.3f} ms per image (batch 1, {r['device']})")
    for fmt in FORMATS:
        if f"export_{fmt}" in r:
            e = r[f"export_{fmt}"]
            lines.append(f"export   {fmt}: {e['path']} (max |output - PyTorch's| = {e['max_abs_diff']:.2g})")
    return "\n".join(lines)


@hydra.main(config_path=str(CONFIG_DIR), config_name="eval", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    from .cli import fail

    if OmegaConf.is_missing(cfg, "run"):
        fail("run=<run folder> is required, e.g. python eval.py run=runs/demo/<run-id>")
    try:
        settings = OmegaConf.to_object(cfg)
        result = evaluate_run(settings)
    except UserError as e:
        fail(str(e))
    except Exception as e:  # a typed-config error from OmegaConf
        if type(e).__module__.startswith("omegaconf"):
            fail(str(e).splitlines()[0])
        raise
    print(report(result))
    print(f"results: {Path(settings.out or Path(settings.run) / 'eval') / f'eval_{settings.split}.json'}", flush=True)


def main() -> None:
    """``regprune-eval`` / ``python eval.py``."""
    entry(_main, config_name="eval")
