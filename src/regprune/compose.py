"""Composing configs outside ``train.py`` (scripts, tests, notebooks), and expanding a sweep into its jobs,
the way Hydra itself does."""

from __future__ import annotations

from itertools import product
from pathlib import Path

from omegaconf import DictConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # shipped with the package (configs/ of the checkout)


def compose(overrides: list[str], hydra: bool = False) -> DictConfig:
    """The config ``python train.py <overrides>`` would run (with the ``hydra`` node when asked)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from .config import register_schema

    register_schema()
    if GlobalHydra.instance().is_initialized():
        return hydra_compose("config", overrides=overrides, return_hydra_config=hydra)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=overrides, return_hydra_config=hydra)


def initialize_once() -> None:
    """Keep Hydra initialised for the rest of the process: later ``compose`` calls skip the set-up (a script
    that composes every job of many sweeps)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from .config import register_schema

    if not GlobalHydra.instance().is_initialized():
        register_schema()
        initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3")


def sweep_overrides(overrides: list[str]) -> list[list[str]]:
    """Every job of a multirun over ``overrides`` (``a=1,2 b=x,y`` → 4 jobs), parsed by Hydra's own override
    parser, so quoted commas, ``range()`` and ``choice()`` expand as they do for ``train.py -m``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    axes = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
            else [o.input_line] for o in parsed]
    return [list(job) for job in product(*axes)]


def sweep_jobs(sweep: str, extra: list[str] = ()) -> list[list[str]]:
    """The override lists of every job of ``configs/sweep/<sweep>.yaml`` (its sweeper params' product)."""
    params = compose([f"sweep={sweep}", *extra], hydra=True).hydra.sweeper.params or {}
    return sweep_overrides([f"{k}={v}" for k, v in params.items()])
