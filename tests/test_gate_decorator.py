"""Gate Decorator: the tick trains only the gates and the last linear layer and prunes one FLOPs step by Taylor
scores; tick-tock passes end at the FLOPs target (within 2% on digits), later passes skipped; bad settings fail."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from conftest import FAST_TRAIN, compose, train
from regprune.engine.optim import SGD
from regprune.engine.phases import Repeat, Tick, Train
from regprune.engine.phases.tick import train_gates_and_head
from regprune.errors import UserError
from regprune.models import build_model


class Batches:
    """Fixed random digits-shaped batches with the loader interface (len, set_epoch)."""

    def __init__(self, n: int = 4):
        g = torch.Generator().manual_seed(0)
        self.items = [(torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g))
                      for _ in range(n)]

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        pass


def test_tick_pass_moves_only_the_gates_and_the_last_linear_layer():
    model = build_model("vgg_tiny", num_classes=10, in_channels=1)
    runner = SimpleNamespace(optimizer_spec=SGD(lr=0.1, weight_decay=1e-3), train_batches=Batches(),
                             forward_module=lambda m: m, accel=SimpleNamespace(precision=lambda: None))
    state = SimpleNamespace(model=model, step=0, history=[])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen = {n: p.requires_grad for n, p in model.named_parameters()}
    train_gates_and_head(runner, state, batches=2, lr=None)
    gates = {f"{name}.{p}" for name in model.gate_modules() for p in ("weight", "bias")}
    head = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == gates | {f"{head}.weight", f"{head}.bias"}
    assert state.step == 2 and frozen == {n: p.requires_grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("target,step", [pytest.param(0.45, 0.2, marks=[pytest.mark.slow, pytest.mark.ci]),
                                         (0.3, 0.25)])
def test_tick_tock_reaches_the_flops_target_within_2_percent_and_skips_later_passes(tmp_path, target, step):
    from regprune.run import run

    cfg = compose([*FAST_TRAIN, "schedule=gate_decorator", "regularizer=l1", "regularizer.lam=1e-3",
                   f"schedule.pass.phases.tick.flops_target={target}", f"schedule.pass.phases.tick.flops_step={step}",
                   "schedule.pass.phases.tick.data_share=0.2", "schedule.pass.times=6",
                   "schedule.pass.phases.tock.epochs=1", "schedule.finetune.epochs=1", f"run.root={tmp_path}"])
    metrics = run(cfg)
    share = metrics["flops"] / metrics["flops_unpruned"]
    assert share <= target and target - share <= 0.02
    ticks = [p["phase"] for p in metrics["passes"]]
    needed = Tick(flops_target=target, flops_step=step).min_passes
    assert len(ticks) <= needed and ticks == [f"pass{i}.tick" for i in range(1, len(ticks) + 1)]
    assert metrics["skipped_phases"] == [f"pass{i}.{p}" for i in range(len(ticks) + 1, 7) for p in ("tick", "tock")]
    assert metrics["prune_importance"] == "taylor" and metrics["acc_pruned"] == metrics["acc_pruned_masked"]
    assert metrics["prune_ratio"] is None and 0 < metrics["tick_ratio"] < 1
    assert metrics["epochs_tock"] == 1 and "acc_finetuned_final" in metrics


@pytest.mark.parametrize("kwargs,match", [
    ({"flops_target": 0.0}, "flops_target=0.0 is outside"), ({"flops_target": 1.0}, "flops_target=1.0 is outside"),
    ({"flops_step": 0.0}, "flops_step=0.0 is outside"), ({"data_share": 0.0}, "data_share=0.0 is outside"),
    ({"data_share": 1.5}, "data_share=1.5 is outside"), ({"lr": 0.0}, "lr=0.0 must be > 0"),
    ({"importance": "nope"}, "importance='nope'"), ({"on_empty": "ignore"}, "on_empty='ignore'")])
def test_tick_settings_are_checked(kwargs, match):
    with pytest.raises((ValueError, UserError), match=match):
        Tick(**kwargs)


def test_repeat_refuses_too_few_passes_for_the_target():
    with pytest.raises(ValueError, match="times=4 is too few: phase tick needs 5 passes"):
        Repeat(4, {"tick": Tick(flops_target=0.5, flops_step=0.1), "tock": Train(epochs=1)})
    assert len(Repeat(5, {"tick": Tick(flops_target=0.5, flops_step=0.1)}).expand("pass")) == 5


@pytest.mark.parametrize("override,message", [
    ("schedule.pass.phases.tick.flops_target=1.0", "schedule.pass.phases.tick.flops_target=1.0 is outside (0, 1)"),
    ("schedule.pass.phases.tick.data_share=0", "schedule.pass.phases.tick.data_share=0 is outside (0, 1]"),
    ("schedule.pass.times=2", "schedule.pass.times=2 is too few: phase tick needs 5 passes")])
def test_bad_settings_are_one_line_errors(tmp_path, override, message):
    proc = train([*FAST_TRAIN, "schedule=gate_decorator", "regularizer=l1", f"run.root={tmp_path}", override],
                 check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {message}", proc.stderr
    assert not (tmp_path / "default").exists()
