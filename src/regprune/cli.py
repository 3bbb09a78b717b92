"""Command-line entry: one-line errors for bad overrides and user mistakes, non-zero exit, no traceback."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import hydra
from omegaconf import DictConfig

from .compose import CONFIG_DIR
from .config import register_schema
from .distributed import world_from_env
from .errors import UserError


def fail(message: str) -> None:
    if world_from_env().main:  # across processes every rank stops with the error, rank 0 says it
        print(f"error: {message}", file=sys.stderr)
    sys.exit(UserError.exit_code)


def explain(e: Exception) -> str:
    """Hydra/OmegaConf composition errors as one line naming the key."""
    text = str(e).strip()
    cause = e.__cause__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    key = re.search(r"full_key: (\S+)", text + (str(cause) if cause else ""))
    first = lines[0] if lines else type(e).__name__
    if first.startswith("Error merging override") and len(lines) > 1:
        first = f"{first.removeprefix('Error merging override ')}: {lines[1]}"
    elif cause is not None and str(cause).strip():
        first = f"{first} ({str(cause).strip().splitlines()[0]})"
    options = re.search(r"Available options in '([^']+)':\s*(.*?)(?:Config search path|$)", text, re.S)
    if options:
        first += f"; available {options.group(1)} options: " + ", ".join(options.group(2).split())
    if key and key.group(1) not in first:
        first += f" [key: {key.group(1)}]"
    return first


def first_of_each_sweep(overrides: list[str]) -> list[str]:
    """Turn sweep overrides (a=1,2 / range / choice) into their first value, for a pre-flight check."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out = []
    for o in OverridesParser.create().parse_overrides(overrides):
        if o.is_sweep_override():
            first = next(iter(o.sweep_string_iterator()))
            out.append(f"{o.get_key_element()}={first}")
        else:
            out.append(o.input_line)
    return out


def preflight(argv: list[str], config_name: str = "config") -> None:
    """Compose the config once before Hydra does, so a typo or bad value is one line, not a traceback.

    The command line is read with Hydra's own parser, so every Hydra flag keeps its meaning (``--cfg job``,
    ``-p regularizer``, ``--info defaults``, ``-cn``/``-cp``/``-cd``); only the overrides are checked here.
    """
    from hydra._internal.utils import get_args_parser

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            args = get_args_parser().parse_args(argv)
    except SystemExit:  # --version, or a malformed flag: Hydra answers it as usual
        return
    if args.shell_completion or args.experimental_rerun or (args.config_path or "").startswith("pkg://"):
        return
    config_dir = CONFIG_DIR if args.config_path is None else CONFIG_DIR.parent / args.config_path
    overrides = [o for o in args.overrides if not o.lstrip("+~").startswith("hydra")]
    if args.config_dir is not None:
        overrides.append(f"hydra.searchpath=[file://{Path(args.config_dir).resolve()}]")
    compose_or_fail(config_dir, args.config_name or config_name, overrides)


def compose_or_fail(config_dir: Path, config_name: str, overrides: list[str]) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import MissingConfigException

    register_schema()
    try:
        overrides = first_of_each_sweep(overrides)
        with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
            try:
                compose(config_name, overrides=overrides)
            except MissingConfigException as e:
                first = str(e).strip().splitlines()[0]
                fail(f"{first}; {available(e.missing_cfg_file, GlobalHydra.instance().config_loader())}"
                     if e.missing_cfg_file and "/" in e.missing_cfg_file else first)
    except Exception as e:
        fail(explain(e))


def available(missing: str, loader) -> str:
    """The presets next to a missing ``group/[sub/]option``: the options of the deepest group that exists,
    with its sub-groups as ``sub/...`` (internal fragments, named ``_*``, left out)."""
    parts = missing.split("/")
    group = next("/".join(parts[:i]) for i in range(len(parts), 0, -1)
                 if i == 1 or loader.get_group_options("/".join(parts[:i])) or loader.list_groups("/".join(parts[:i])))
    names = [o for o in loader.get_group_options(group) if not o.startswith("_")]
    names += [f"{g}/..." for g in sorted(loader.list_groups(group))]
    return f"available {group} options: {', '.join(names)}"


def execute(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict | None:
    """Run one job; user errors print one line and exit non-zero (the run folder keeps its records).

    ``overrides`` name the run as a command line would, where Hydra did not compose ``cfg``. In a multirun the
    error is printed and raised instead, so the launcher runs the other jobs and reports every failed one at the
    end (``regprune.launchers``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .run import run

    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    try:
        metrics = run(cfg, list(hydra.overrides.task) if hydra else list(overrides))
        if world_from_env().main:
            print(f"run folder: {metrics['run_dir']}", flush=True)
        return metrics
    except UserError as e:
        if hydra is not None and hydra.mode == RunMode.MULTIRUN:
            print(f"error: {e}", file=sys.stderr, flush=True)
            raise
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted")


def entry(hydra_main: Callable[[], None], config_name: str = "config") -> None:
    if os.environ.get("REGPRUNE_NO_PREFLIGHT") != "1":
        preflight(sys.argv[1:], config_name)
    register_schema()
    hydra_main()


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def _train(cfg: DictConfig) -> None:
    execute(cfg)


def train_main() -> None:
    """``regprune-train`` and ``python train.py``: one run (or ``-m``, a sweep) of the composed config."""
    entry(_train)
