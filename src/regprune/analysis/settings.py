"""What makes two runs the same setting: their configs without the keys that do not change results.

A run's *effective* config is its config.yaml as far as it determined the results: bookkeeping (paths,
logging, threads, checkpoints, latency), the seed, λ and the pruning ratio (columns of their own) and the
phases after ``schedule.stop_after`` are dropped; a run that started from another run's trained model
(``schedule.start_from``) did not train, so its own training section is replaced by the source run's. Runs
with equal effective configs share a ``setting`` hash and average over seeds. Settings of one method that
differ are told apart by a readable label: the keys in which they differ.
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd

# top-level keys that do not change what a run computes
NOT_SETTING = {"run", "seed", "resume", "logger", "progress", "threads", "latency", "device", "fault", "callbacks",
               "checkpoint_every", "checkpoint_keep", "magnitude_every"}
# nested keys that do not change results, or that are columns of their own (λ, pruning ratio)
NOT_SETTING_NESTED = {("schedule", "start_from"), ("dataset", "root"), ("dataset", "download"),
                      ("dataset", "verify_checksums"), ("dataset", "eval_batch_size"), ("perf", "cudnn_benchmark"),
                      ("regularizer", "lam"), ("schedule", "prune", "ratio"),
                      ("schedule", "pass", "phases", "prune", "ratio"),
                      ("regularizer", "ratio")}  # GReg's selection: the pruning ratio its presets prune at
TRAINING = ("schedule", "train")  # the section a run started from another run's model did not use
SCHEDULE_FIELDS = {"_target_", "name", "start_from", "start_at", "stop_after"}  # the other schedule keys are phases


def effective_config(config: dict, source_config: dict | None = None) -> dict:
    """``config`` without the keys that do not change results; with a source run's config, its training section."""
    plain = {k: v for k, v in config.items() if k not in NOT_SETTING}
    if isinstance(plain.get("schedule"), dict):
        plain["schedule"] = without_skipped(plain["schedule"])
    for path in NOT_SETTING_NESTED:
        plain = _without(plain, path)
    if source_config is not None:
        plain = _with(plain, TRAINING, _get(source_config, TRAINING))
    return plain


def without_skipped(schedule: dict) -> dict:
    """A schedule without the phases after ``stop_after`` (they did not run; the stage of a two-stage sweep)."""
    stop = schedule.get("stop_after")
    phases = [k for k in schedule if k not in SCHEDULE_FIELDS]
    if stop not in phases:
        return schedule
    skipped = set(phases[phases.index(stop) + 1:]) | {"stop_after"}
    return {k: v for k, v in schedule.items() if k not in skipped}


def setting_hash(effective: dict) -> str:
    return hashlib.sha256(json.dumps(effective, sort_keys=True, default=str).encode()).hexdigest()[:8]


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """Dotted keys -> values as text (``schedule.train.epochs`` -> ``"40"``)."""
    out = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = json.dumps(v, default=str) if isinstance(v, list | dict) else str(v)
    return out


def short_key(key: str) -> str:
    return key.removeprefix("schedule.")


def setting_labels(runs: pd.DataFrame,
                   within: tuple[str, ...] = ("model", "dataset", "regularizer", "schedule")) -> dict:
    """setting hash -> the keys (and values) in which it differs from the other settings of the same
    ``within`` group; "" where a group has one setting. ``runs`` has ``setting`` and ``config`` columns."""
    labels: dict[str, str] = {}
    for _, group in runs.groupby(list(within), dropna=False, sort=False):
        configs = {s: flatten(c) for s, c in zip(group.setting, group.config, strict=True)}
        if len(configs) == 1:
            labels.update(dict.fromkeys(configs, ""))
            continue
        keys = sorted(set().union(*configs.values()))
        # a key only some settings have (the pruning phases a training-only stage did not run) tells nothing apart
        differ = [k for k in keys if len({c[k] for c in configs.values() if k in c}) > 1]
        for s, c in configs.items():
            labels[s] = ", ".join(f"{short_key(k)}={c.get(k, '–')}" for k in differ)
    return labels


def _get(config: dict, path: tuple[str, ...]):
    node = config
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _without(config: dict, path: tuple[str, ...]) -> dict:
    head, *rest = path
    if head not in config:
        return config
    if not rest:
        return {k: v for k, v in config.items() if k != head}
    if not isinstance(config[head], dict):
        return config
    return {**config, head: _without(config[head], tuple(rest))}


def _with(config: dict, path: tuple[str, ...], value) -> dict:
    head, *rest = path
    if not rest:
        return {**config, head: value}
    inner = config.get(head) if isinstance(config.get(head), dict) else {}
    return {**config, head: _with(inner, tuple(rest), value)}
