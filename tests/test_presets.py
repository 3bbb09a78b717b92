"""Every experiment preset and sweep composes, and its components build (fast); a few train 1 epoch."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from conftest import ROOT, compose
from regprune.run import typed

PRESETS = sorted(str(p.relative_to(ROOT / "configs/experiment").with_suffix(""))
                 for p in (ROOT / "configs/experiment").rglob("*.yaml"))
SWEEPS = sorted(p.stem for p in (ROOT / "configs/sweep").glob("*.yaml"))


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
    if not preset.rpartition("/")[2].startswith("_"):
        assert cfg.run.experiment != "default", "a preset names its experiment folder"
        assert schedule.phases()


def sweep_jobs(name: str) -> list[list[str]]:
    """The override lists of every job of a sweep config (its params' cartesian product)."""
    from itertools import product

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from regprune.config import register_schema

    register_schema()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = hydra_compose("config", overrides=[f"sweep={name}"], return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN"
    params = cfg.hydra.sweeper.params
    return [[f"{k}={v}" for k, v in zip(params, values, strict=True)]
            for values in product(*[str(v).split(",") for v in params.values()])]


@pytest.mark.parametrize("row", ["c10_vgg19_p70", "c100_densenet40_p60", "c10_preresnet164_baseline"])
def test_port_presets_change_only_the_port_settings(row):
    """NS's public port (papers.md §3, §6): plain momentum, decay on BN, DenseNet-40 with 24 initial channels;
    everything else is the paper's row."""
    paper, port = compose([f"experiment=ns2017/{row}"]), compose([f"experiment=ns2017_port/{row}"])
    assert (paper.optimizer.nesterov, paper.optimizer.bn_weight_decay) == (True, False)
    assert (port.optimizer.nesterov, port.optimizer.bn_weight_decay) == (False, True)
    assert (paper.run.experiment, port.run.experiment) == ("ns2017", "ns2017_port")
    for key in ("dataset", "regularizer", "schedule", "seed"):
        assert paper[key] == port[key], key
    widths = {k: v for k, v in port.model.items() if k != "init_channels"}
    assert widths == {k: v for k, v in paper.model.items() if k != "init_channels"}
    if "densenet" in row:
        assert (paper.model.init_channels, port.model.init_channels) == (16, 24)


@pytest.mark.parametrize("sweep", SWEEPS)
def test_sweep_jobs_compose_with_three_seeds(sweep):
    jobs = sweep_jobs(sweep)
    seeds = {o for job in jobs for o in job if o.startswith("seed=")}
    assert len(seeds) >= (1 if "calibration" in sweep else 3)  # tables: 3 seeds; λ calibration: one seed
    for job in jobs:
        cfg = compose([f"sweep={sweep}", *job])
        typed(cfg)
        assert cfg.resume == "auto"
        phases = [name for name, _ in instantiate(cfg.schedule).phases()]
        if sweep.endswith("_train"):  # stage 1 trains only; stage 2 starts at pruning
            assert phases == ["train"]
        else:
            assert phases[0] == "prune" and cfg.schedule.start_from.endswith(f"-trained-s{cfg.seed}")


def test_stage_two_prunes_the_run_stage_one_trains():
    trained = compose(["sweep=ns2017_table1_train", "experiment=ns2017/_c10_vgg19", "seed=1"])
    pruned = compose(["sweep=ns2017_table1", "experiment=ns2017/c10_vgg19_p70", "seed=1"])
    assert trained.schedule.name == "train" and trained.regularizer.lam == 1e-4
    folder = f"{trained.run.root}/{trained.run.experiment}/{trained.run.id}"
    assert pruned.schedule.start_from == folder == "runs/ns2017/ns2017-c10-vgg19-trained-s1"
    assert pruned.schedule.prune.ratio == 0.7 and pruned.optimizer.nesterov


SMOKE = ["ns2017/c10_vgg19_p70", "li2024/c10_resnet20_l12", "survey/c100_resnet56_oicsr"]
TINY = ["dataset=synthetic", "dataset.num_train=32", "dataset.num_test=16", "dataset.batch_size=16",
        "schedule.train.epochs=1", "schedule.finetune.epochs=1", "progress=false", "latency=false"]


@pytest.mark.parametrize("preset", [pytest.param(p, marks=[] if p in SMOKE else pytest.mark.slow)
                                    for p in PRESETS if not p.rpartition("/")[2].startswith("_")])
def test_preset_trains_one_epoch_on_synthetic_data(preset, tmp_path):
    from conftest import train

    classes = "100" if "c100" in preset else "10"
    # one epoch does not polarise γ: its valley criterion has nothing to find yet
    extra = ["schedule.prune.criterion=percentile"] if "polarization" in preset else []
    tiny = TINY if compose([f"experiment={preset}"]).schedule.get("finetune") else [
        a for a in TINY if not a.startswith("schedule.finetune")]  # baselines: schedule=train has no fine-tuning
    proc = train([f"experiment={preset}", *tiny, f"dataset.num_classes={classes}", f"run.root={tmp_path}", *extra],
                 timeout=900)
    metrics = proc.stdout.strip().splitlines()[-1].removeprefix("run folder: ")
    assert '"status": "complete"' in open(f"{metrics}/metrics.json").read()
