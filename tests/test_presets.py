"""Every experiment preset and sweep composes, and its components build (fast); a few train 1 epoch."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from conftest import ROOT, compose
from regprune.compose import sweep_jobs
from regprune.run import typed

PRESETS = sorted(str(p.relative_to(ROOT / "configs/experiment").with_suffix(""))
                 for p in (ROOT / "configs/experiment").rglob("*.yaml"))
SWEEPS = sorted(p.stem for p in (ROOT / "configs/sweep").glob("*.yaml"))
BUI = sorted(p.stem for p in (ROOT / "configs/experiment/bui2020").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_and_builds(preset):
    cfg = compose([f"experiment={preset}"])
    typed(cfg)
    instantiate(cfg.regularizer)
    instantiate(cfg.optimizer)
    schedule = instantiate(cfg.schedule)
    dataset = instantiate(cfg.dataset)
    model = instantiate(cfg.model, num_classes=100 if "cifar100" in str(cfg.dataset) else 10,
                        in_channels=1 if dataset.name == "digits" else 3)
    assert model.channel_groups()
    assert cfg.run.experiment != "default", "a preset names its experiment folder"
    assert schedule.plan()


def test_help_lists_only_presets_and_fragments_cannot_be_selected():
    """Shared fragments live in configs/_shared/ (composed by the presets' defaults lists), not in the
    experiment group: --help lists only runnable presets, and selecting a fragment is a one-line error."""
    from conftest import train

    assert not list((ROOT / "configs/experiment").rglob("_*.yaml"))
    shared = sorted((ROOT / "configs/_shared").rglob("*.yaml"))
    assert shared
    used = "".join(p.read_text() for p in (ROOT / "configs").rglob("*.yaml"))
    for fragment in shared:  # every fragment is composed by some preset
        assert f"/_shared/{fragment.relative_to(ROOT / 'configs/_shared').with_suffix('')}" in used, fragment
    text = train(["--help"]).stdout
    experiment_lines = [ln for ln in text.splitlines() if ln.startswith("experiment")]
    listed = {f"{ln.split(':')[0].removeprefix('experiment').strip('/')}/{name.strip()}".strip("/")
              for ln in experiment_lines for name in ln.split(":", 1)[1].split(",")}
    assert listed == set(PRESETS)
    for selection in ("experiment=ns2017/_settings", "experiment=ns2017/_c10_vgg19", "_shared=ns2017/settings"):
        proc = train([selection, "--cfg", "job"], check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("error: "), (selection, proc.stderr)


@pytest.mark.parametrize("row", BUI)
def test_bui_penalties_act_on_every_gate_at_initialisation(row):
    """With λ overridden (DenseNet-40: 1e-5), MCP/SCAD's saturation point must stay above γ's initial value:
    the penalty's gradient is non-zero at γ = init on every gate (a fixed a = 1e4 flattened them at 0.1)."""
    import torch

    cfg = compose([f"experiment=bui2020/{row}"])
    reg = instantiate(cfg.regularizer)
    model = instantiate(cfg.model, num_classes=100 if "c100" in row else 10, in_channels=3)
    reg.attach(model)
    for gamma in reg.gammas:
        assert (gamma == cfg.model.bn_init).all()
        gamma.grad = torch.zeros_like(gamma)
    reg.after_backward()
    assert all((g.grad != 0).all() for g in reg.gammas)


GREG = sorted(p.stem for p in (ROOT / "configs/experiment/survey").glob("*_greg.yaml"))


@pytest.mark.parametrize("row", GREG)
def test_greg_presets_start_from_a_trained_model_in_the_authors_protocol(row):
    """GReg prunes a trained model: a plain pre-training phase, the penalty phase (ended by its stopping
    rule; epochs is a ceiling), pruning of the selected filters, fine-tuning; weight decay 5e-4 in every
    phase, plain momentum (Regularization-Pruning's CIFAR commands)."""
    cfg = compose([f"experiment=survey/{row}"])
    phases = instantiate(cfg.schedule).plan()
    assert [name for name, _ in phases] == ["pretrain", "train", "prune", "finetune"]
    settings = dict(phases)
    assert not settings["pretrain"].penalty and settings["train"].penalty and not settings["finetune"].penalty
    assert [settings[k].weight_decay for k in ("pretrain", "train", "finetune")] == [5e-4] * 3
    assert (settings["train"].lr, settings["train"].lr_schedule) == (1e-3, "constant")
    assert (settings["finetune"].epochs, settings["finetune"].lr) == (120, 0.01)
    assert settings["prune"].ratio == cfg.regularizer.ratio and settings["prune"].criterion == "auto"
    reg = instantiate(cfg.regularizer)
    assert (reg.delta, reg.every, reg.lam, reg.mag_ratio_limit, reg.stabilize) == (1e-4, 10, 1.0, 1000.0, 10000)
    assert (cfg.optimizer.nesterov, cfg.optimizer.bn_weight_decay, cfg.optimizer.momentum) == (False, True, 0.9)


def flat(cfg, prefix: str = "") -> dict:
    from omegaconf import OmegaConf

    out = {}
    for k, v in (OmegaConf.to_container(cfg, resolve=True) if prefix == "" else cfg).items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


ROWS = sorted(p.stem for p in (ROOT / "configs/experiment/ns2017").glob("*.yaml"))


@pytest.mark.parametrize("row", ROWS)
def test_port_presets_differ_from_the_paper_only_in_momentum_and_densenet_width(row):
    """The authors' Torch code and the PyTorch port both decay every parameter, BN γ and β included
    (docs/methods.md, Network Slimming): paper and port rows differ only in Nesterov vs plain momentum and in
    DenseNet-40's initial channels (16 vs 24), besides their experiment folder."""
    paper, port = flat(compose([f"experiment=ns2017/{row}"])), flat(compose([f"experiment=ns2017_port/{row}"]))
    assert paper["optimizer.bn_weight_decay"] and port["optimizer.bn_weight_decay"]
    differ = {k for k in paper.keys() | port.keys() if paper.get(k) != port.get(k)}
    expected = {"optimizer.nesterov", "run.experiment"} | ({"model.init_channels"} if "densenet" in row else set())
    assert differ == expected
    assert (paper["optimizer.nesterov"], port["optimizer.nesterov"]) == (True, False)
    if "densenet" in row:
        assert (paper["model.init_channels"], port["model.init_channels"]) == (16, 24)


@pytest.mark.parametrize("row", BUI)
def test_bui_presets_inherit_the_public_port(row):
    """Bui et al.'s code is NS's PyTorch port: plain momentum, decay on every parameter, DenseNet-40 with 24
    initial channels; the ℓ1 row equals the port's penalty-training row up to the ratio and its names."""
    cfg = flat(compose([f"experiment=bui2020/{row}"]))
    assert (cfg["optimizer.nesterov"], cfg["optimizer.bn_weight_decay"]) == (False, True)
    if "densenet" in row:
        assert cfg["model.init_channels"] == 24
    if row.endswith("_l1"):
        data, model = row.split("_")[:2]
        ratio = {"c10_vgg19": "p70", "c100_vgg19": "p50"}.get(f"{data}_{model}", "p40")
        port = flat(compose([f"experiment=ns2017_port/{data}_{model}_{ratio}"]))
        differ = {k for k in cfg.keys() | port.keys() if cfg.get(k) != port.get(k)}
        assert differ <= {"run.experiment", "run.name", "schedule.prune.ratio"}


@pytest.mark.parametrize("sweep", SWEEPS)
def test_sweep_jobs_compose_with_three_seeds(sweep):
    jobs = sweep_jobs(sweep)
    seeds = {o for job in jobs for o in job if o.startswith("seed=")}
    assert len(seeds) >= (1 if "calibration" in sweep else 3)  # tables: 3 seeds; λ calibration: one seed
    one_seed = {tuple(o for o in job if not o.startswith("seed=")): job for job in jobs}  # seeds compose alike
    for job in one_seed.values():
        cfg = compose([f"sweep={sweep}", *job])
        typed(cfg)
        assert cfg.resume == "auto"
        phases = [name for name, _ in instantiate(cfg.schedule).plan()]
        if sweep.endswith("_train"):  # stage 1 trains only (GReg: pre-training, then its penalty); stage 2 prunes
            assert phases[-1] == "train" and set(phases) <= {"pretrain", "train"}
        elif cfg.schedule.start_from is None:  # one stage: OTO (train, remove its zero groups), Gate Decorator, GReg
            assert (cfg.schedule.name, *phases[:2]) in {("oto", "train", "prune"),
                                                        ("gate_decorator", "train", "pass1.tick"),
                                                        ("greg", "pretrain", "train")}
        else:  # from a trained model: prune, a repeated pass (Gate Decorator's tick, multi-pass), EagleEye's search
            first = phases[0].rpartition(".")[2]  # a repeated pass's phases are named pass<i>.<phase>
            assert first in ("prune", "tick", "search") and cfg.schedule.start_from.endswith(f"-trained-s{cfg.seed}")


def test_stage_two_prunes_the_run_stage_one_trains():
    trained = compose(["sweep=ns2017_table1_train", "experiment=ns2017/c10_vgg19_p70", "seed=1"])
    pruned = compose(["sweep=ns2017_table1", "experiment=ns2017/c10_vgg19_p70", "seed=1"])
    assert trained.schedule.name == "train" and trained.regularizer.lam == 1e-4
    folder = f"{trained.run.root}/{trained.run.experiment}/{trained.run.id}"
    assert pruned.schedule.start_from == folder == "runs/ns2017/ns2017-c10-vgg19-trained-s1"
    assert pruned.schedule.prune.ratio == 0.7 and pruned.optimizer.nesterov


SMOKE = ["ns2017/c10_vgg19_p70", "li2024/c10_resnet20_l12", "survey/c100_resnet56_oicsr"]
TINY = ["dataset=synthetic", "dataset.num_train=32", "dataset.num_test=16", "dataset.batch_size=16",
        "schedule.train.epochs=1", "schedule.finetune.epochs=1", "progress=false", "latency=false"]


# slow presets that CI still runs (.ci/run): one more per family of models and schedules
CI = ["bui2020/c100_densenet40_mcp", "tang2023/c10_vgg16", "survey/c10_resnet56_greg", "digits/tp_ns"]


def preset_marks(preset: str) -> list:
    return [] if preset in SMOKE else [pytest.mark.slow, *([pytest.mark.ci] if preset in CI else [])]


# presets that start from another run's folder (the digits controls): test_digits_controls runs them end to end
# after the runs they read
CHAINED = ["digits/eagleeye", "digits/l1_multipass", "digits/scratch_l1"]


def test_chained_presets_are_the_digits_controls():
    def chained(schedule) -> bool:
        return bool(schedule.get("start_from") or (schedule.get("retrain") or {}).get("source"))
    assert [p for p in PRESETS if chained(compose([f"experiment={p}"]).schedule)] == CHAINED


@pytest.mark.parametrize("preset", [pytest.param(p, marks=preset_marks(p)) for p in PRESETS if p not in CHAINED])
def test_preset_trains_one_epoch_on_tiny_data(preset, tmp_path):
    from conftest import train

    # one epoch does not polarise γ: its valley criterion has nothing to find yet
    extra = ["schedule.prune.criterion=percentile"] if "polarization" in preset else []
    schedule = compose([f"experiment={preset}"]).schedule
    tiny = TINY if schedule.get("finetune") else [
        a for a in TINY if not a.startswith("schedule.finetune")]  # baselines: schedule=train has no fine-tuning
    tiny = tiny + (["schedule.pretrain.epochs=1"] if schedule.get("pretrain") else [])
    if preset.startswith("digits/"):  # the digits presets set digits' own keys (size): they run on digits itself
        tiny = [a for a in tiny if not a.startswith("dataset")]
    else:
        tiny = tiny + [f"dataset.num_classes={'100' if 'c100' in preset else '10'}"]
    proc = train([f"experiment={preset}", *tiny, f"run.root={tmp_path}", *extra], timeout=900)
    metrics = proc.stdout.strip().splitlines()[-1].removeprefix("run folder: ")
    assert '"status": "complete"' in open(f"{metrics}/metrics.json").read()
