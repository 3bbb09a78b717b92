"""How a run is named: ``<name>[-<overrides>]-s<seed>-<config hash>``.

The overrides part names what the command line changed (Hydra's ``override_dirname`` idea), shortened and
safe in a path: ``regularizer.lam=0.001 schedule.prune.ratio=0.5`` gives ``lam0.001-ratio0.5``, so the runs
of a sweep differ by what was swept, not only by a hash. Values come from the composed config, so
``lam=1e-3`` and ``lam=0.001`` name the same folder; the hash still tells apart settings the name cuts short.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# keys that do not change a run's results, so changing them keeps its run id (and its folder)
HASH_EXCLUDE = ("run", "resume", "logger", "progress", "threads", "checkpoint_every", "checkpoint_keep", "callbacks",
                "latency", "magnitude_every", "dist")
# left out of the overrides part: the seed has a part of its own, presets name their runs (run.name)
UNNAMED = (*HASH_EXCLUDE, "seed", "experiment", "sweep", "hydra")
NAMED_GROUPS = ("model", "dataset", "regularizer", "schedule")  # their choice already is <name>
MAX_SLUG = 80  # characters of the overrides part in a folder name
SOURCE_KEY = "schedule.start_from"  # named by the source's run id in the label, left out of the folder name


def config_hash(cfg: DictConfig, skipped: Sequence[str] = ()) -> str:
    """A hash of what decides a run's results: no bookkeeping keys, no ``skipped`` phase of the schedule."""
    plain = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in HASH_EXCLUDE}
    plain["schedule"] = {k: v for k, v in plain["schedule"].items() if k not in skipped}
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:8]


def command_line(overrides: Sequence[str]) -> list[tuple[str, object]]:
    """(key or group, value) of each override that sets something (deletions left out)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return [(o.key_or_group, o.value()) for o in OverridesParser.create().parse_overrides(list(overrides))
            if not o.is_delete()]


def named_overrides(cfg: DictConfig, overrides: Sequence[str]) -> tuple[dict[str, object], set[str]]:
    """Key -> value (as composed) of each override that changes results and is not already in the name,
    and which of them choose a config group option (``optimizer=adam`` maps to ``adam``)."""
    out: dict[str, object] = {}
    groups = set()
    for key, given in command_line(overrides):
        root = re.split(r"[./]", key)[0]
        if root in UNNAMED or "/" in key or key in NAMED_GROUPS:
            continue
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, DictConfig):
            value = str(given).rpartition("/")[2]
            groups.add(key)
        elif OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        out[key] = value
    return dict(sorted(out.items())), groups  # sorted: the order of the overrides does not rename the run


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each key without its top-level section (``schedule.prune.ratio`` -> ``prune.ratio``, ``regularizer.lam``
    -> ``lam``), or in full where two keys would read the same."""
    short = {k: k.partition(".")[2] or k for k in keys}
    count = Counter(short.values())
    return {k: v if count[v] == 1 else k for k, v in short.items()}


def format_value(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "_".join(format_value(v) for v in value)
    return str(value)


def slug(named: dict[str, object], groups: set[str]) -> str:
    """The overrides part of a folder name: ``lam0.001-prune.ratio0.5-adam`` (characters safe in paths and W&B ids)."""
    parts = []
    for key, short in short_keys([k for k in named if k != SOURCE_KEY]).items():
        value = re.sub(r"[^A-Za-z0-9._-]+", "_", format_value(named[key]))
        parts.append(value if key in groups else short + value if re.match(r"[-\d.]", value) else f"{short}-{value}")
    return "-".join(parts)[:MAX_SLUG].rstrip("-_.")


def label(name: str, named: dict[str, object]) -> str:
    """A readable label for tables and legends: ``mini-l1 lam=0.001 prune.ratio=0.5 from=<source run id>``."""
    shorts = short_keys(list(named))
    return " ".join([name, *(f"from={Path(str(v)).name}" if k == SOURCE_KEY else f"{shorts[k]}={format_value(v)}"
                             for k, v in named.items())])


def run_id(cfg: DictConfig, name: str, seed: int, overrides: Sequence[str] = (), skipped: Sequence[str] = ()) -> str:
    """``skipped``: the schedule's phases that do not run (their settings do not change the results)."""
    return "-".join(filter(None, [name, slug(*named_overrides(cfg, overrides)), f"s{seed}",
                                  config_hash(cfg, skipped)]))
