"""Runs → one row per setting: n seeds, mean and 95% t interval of every figure, the baseline, a paired
comparison with a reference method, and scratch-retraining controls.

A row is a model × dataset × method (regularizer) × λ × schedule × pruning ratio × setting (``KEYS``). Its
replicates are trained models: runs of a row that share a training seed (e.g. two prunings of one trained
model) are not independent, so one is kept and the others are reported in ``duplicates``. Statistics are
those of ``analysis.stats``: ``<metric>_n``, ``_mean``, ``_std`` (sample standard deviation) and ``_ci``
(half-width of the 95% t interval; NaN with one seed).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import labels
from .runs import KEYS, MACHINE, METRICS, complete
from .settings import setting_labels
from .stats import paired_difference, t_interval

REFERENCE = "l1"  # the method every other one is paired with, at the same ratio
PAIRED = ["acc_pruned", "acc_pruned_recal", "acc_final"]
DUPLICATE_DIFFS = ["acc_trained_final", "acc_pruned", "acc_final"]


def key(row) -> tuple:
    """A row's KEYS as a hashable tuple (a missing ratio as -1, since NaN never equals itself)."""
    return tuple(-1.0 if k == "prune_ratio" and pd.isna(row[k]) else row[k] for k in KEYS)


# -- replicates ---------------------------------------------------------------------------------------
def attach_scratch(done: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Scratch-retraining controls (runs recording ``scratch_of: <run id>``) leave the rows and become the
    ``acc_scratch`` of the run they control (its final accuracy). Returns the runs and notes on controls that
    found no run to control or a run already controlled."""
    is_control = done.get("scratch_of", pd.Series(None, index=done.index)).notna()
    rest, controls = done[~is_control].copy(), done[is_control]
    rest["acc_scratch"] = np.nan
    notes = []
    for _, c in controls.iterrows():
        target = rest[rest.run_id == c.scratch_of]
        if len(target) > 1:  # run ids repeat across experiments: the one of the control's experiment
            target = target[target.experiment == c.experiment]
        if len(target) != 1:
            notes.append(f"`{c.run}`: scratch control of `{c.scratch_of}`, which is not among the collected runs")
            continue
        index = target.index[0]
        if not pd.isna(rest.at[index, "acc_scratch"]):
            notes.append(f"`{c.run}`: a second scratch control of `{c.scratch_of}`, not averaged")
            continue
        rest.at[index, "acc_scratch"] = c.acc_final
    return rest, notes


def split_duplicates(done: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one run per row and training seed, the others with the run kept in their place and their differences)."""
    done = done.sort_values("run").reset_index(drop=True)
    ids = [(key(r), r.train_seed) for _, r in done.iterrows()]
    first: dict[tuple, pd.Series] = {}
    rows = []
    for i, d in done.iterrows():
        if ids[i] not in first:
            first[ids[i]] = d
            continue
        k = first[ids[i]]
        rows.append({"run": d.run, "duplicate_of": k.run, "train_seed": d.train_seed, "seed": d.seed,
                     **{f"{m}_diff": _num(d.get(m)) - _num(k.get(m)) for m in DUPLICATE_DIFFS}})
    kept = done.loc[[d.name for d in first.values()]]
    columns = ["run", "duplicate_of", "train_seed", "seed", *[f"{m}_diff" for m in DUPLICATE_DIFFS]]
    return kept.reset_index(drop=True), pd.DataFrame(rows, columns=columns)


def _num(v) -> float:
    return float(v) if v is not None and not pd.isna(v) else math.nan


# -- statistics ---------------------------------------------------------------------------------------
def describe(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per row of KEYS: ``<metric>_n/_mean/_std/_ci`` over its runs (one per training seed)."""
    out = []
    for _, group in runs.groupby(KEYS, dropna=False, sort=False):
        stats = dict(zip(KEYS, group.iloc[0][KEYS], strict=True))
        for m in metrics:
            iv = t_interval(group[m])
            stats.update({f"{m}_n": iv.n, f"{m}_mean": iv.mean, f"{m}_std": iv.std, f"{m}_ci": iv.half})
        out.append(stats)
    return pd.DataFrame(out)


def seed_values(runs: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    """Row key -> its runs indexed by training seed (for paired comparisons)."""
    return {key(g.iloc[0]): g.set_index("train_seed") for _, g in runs.groupby(KEYS, dropna=False, sort=False)}


def _joined(values) -> str:
    return " ".join(map(str, sorted(set(values), key=str)))


def _span(values) -> str:
    """"40" when all runs agree, "31–40" when they do not (a penalty's stopping rule), "" when unknown."""
    v = sorted({int(x) for x in values if not pd.isna(x)})
    return "" if not v else str(v[0]) if len(v) == 1 else f"{v[0]}–{v[-1]}"


def summarize(runs: pd.DataFrame, reference: str = REFERENCE) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(summary, duplicates, notes) of the complete runs: see the module docstring."""
    done = complete(runs)
    if done.empty:
        return pd.DataFrame(columns=[*KEYS, "n"]), split_duplicates(done)[1], []
    done, notes = attach_scratch(done)
    kept, duplicates = split_duplicates(done)
    present = [m for m in METRICS if m in kept]
    kept[present] = kept[present].apply(pd.to_numeric, errors="coerce").astype(float)
    rows = []
    for _, g in kept.groupby(KEYS, dropna=False, sort=False):
        gap = g.pruned_masked_gap.abs() if "pruned_masked_gap" in g else pd.Series(dtype=float)
        rows.append({**dict(zip(KEYS, g.iloc[0][KEYS], strict=True)), "n": len(g),
                     "seeds": _joined(g.train_seed), "experiments": _joined(g.experiment),
                     "train_epochs": _span(g.train_epochs), "finetune_epochs": _span(g.finetune_epochs),
                     "topped_up_layers": g.topped_up_layers.max(), "pruned_masked_gap_max": gap.max(),
                     "dirty_runs": int(g.get("git_dirty", pd.Series(dtype=object)).eq(True).sum())})
    summary = pd.DataFrame(rows).merge(describe(kept, present), on=KEYS, how="left")
    names = setting_labels(kept)
    summary.insert(KEYS.index("regularizer") + 1, "method",
                   [labels.with_schedule(m, s) for m, s in zip(summary.regularizer, summary.schedule, strict=True)])
    summary.insert(len(KEYS) + 1, "setting_label", summary.setting.map(names).fillna(""))
    values = seed_values(kept)
    summary = attach_baselines(summary, values)
    summary = attach_reference(summary, values, reference)
    order = sorted(range(len(summary)), key=lambda i: _position(summary.iloc[i]))
    return summary.iloc[order].reset_index(drop=True), duplicates, notes


def _position(r: pd.Series) -> tuple:
    """Table order: model, dataset, method (baseline and l1 first), λ, setting, unpruned before the ratios."""
    return (r.model, r.dataset, labels.order(r.regularizer), r.lam, r.setting_label,
            -1.0 if pd.isna(r.prune_ratio) else r.prune_ratio)


def unpruned(summary: pd.DataFrame) -> pd.Series:
    """Rows that pruned nothing: no ratio and no channel pruned (a FLOPs-target search records no ratio)."""
    pruned = summary.get("channels_pruned_ratio_mean", pd.Series(np.nan, index=summary.index)).fillna(0) > 0
    return summary.prune_ratio.isna() & ~pruned


def _best(cands: pd.DataFrame, row: pd.Series) -> pd.Series:
    """The candidate row most like ``row``: same experiments, then same training length, then most seeds."""
    cands = cands.assign(_exp=(cands.experiments == row.experiments).astype(int),
                         _len=(cands.train_epochs == row.train_epochs).astype(int))
    return cands.sort_values(["_exp", "_len", "n", "setting"], ascending=[False, False, False, True]).iloc[0]


def attach_baselines(summary: pd.DataFrame, values: dict[tuple, pd.DataFrame]) -> pd.DataFrame:
    """The unpenalised baseline (regularizer none, not pruned) of the same model and dataset, and the drop
    from it: baseline − final accuracy, paired over common seeds (difference of means when none are common)."""
    base = summary[(summary.regularizer == labels.BASELINE) & unpruned(summary)]
    cols = {"baseline_acc": math.nan, "baseline_acc_ci": math.nan, "baseline_n": 0, "baseline_setting": None,
            "drop_diff": math.nan, "drop_ci": math.nan, "drop_n": 0}
    out = summary.assign(**cols)
    for i, row in summary.iterrows():
        cands = base[(base.model == row.model) & (base.dataset == row.dataset) & (base.index != i)]
        if cands.empty:
            continue
        b = _best(cands, row)
        paired = paired_difference(values[key(b)].acc_final, values[key(row)].acc_final)
        drop = paired.diff if paired.n else b.acc_final_mean - row.acc_final_mean
        out.loc[i, list(cols)] = [b.acc_final_mean, b.acc_final_ci, b.n, b.setting, drop, paired.half, paired.n]
    return out


def attach_reference(summary: pd.DataFrame, values: dict[tuple, pd.DataFrame], reference: str) -> pd.DataFrame:
    """Each pruned row minus the reference method at the same model, dataset, schedule and ratio, paired over
    the training seeds both have: ``ref_<metric>_diff/_ci/_n/_sig`` for the metrics in PAIRED."""
    cols = {"reference": reference, "ref_lam": math.nan, "ref_setting": None}
    for m in PAIRED:
        cols.update({f"ref_{m}_diff": math.nan, f"ref_{m}_ci": math.nan, f"ref_{m}_n": 0, f"ref_{m}_sig": False})
    out = summary.assign(**cols)
    ref = summary[summary.regularizer == reference]
    for i, row in summary.iterrows():
        cands = ref[(ref.model == row.model) & (ref.dataset == row.dataset) & (ref.schedule == row.schedule)
                    & ((ref.prune_ratio == row.prune_ratio) | (ref.prune_ratio.isna() & pd.isna(row.prune_ratio)))]
        if row.regularizer == reference or pd.isna(row.prune_ratio) or cands.empty:
            continue
        r = _best(cands, row)
        out.loc[i, ["ref_lam", "ref_setting"]] = [r.lam, r.setting]
        mine, theirs = values[key(row)], values[key(r)]
        for m in PAIRED:
            if m not in mine or m not in theirs:
                continue
            p = paired_difference(mine[m], theirs[m])
            out.loc[i, [f"ref_{m}_diff", f"ref_{m}_ci", f"ref_{m}_n", f"ref_{m}_sig"]] = [
                p.diff, p.half, p.n, p.significant]
    return out


# -- machine-dependent figures ------------------------------------------------------------------------
LATENCY_SPREAD = 3.0  # a run whose latency is this many times its row's median is flagged
OUTLIER_SHARE = 0.1  # ... and a run with more than this share of outlier calls (see cost.measure_latency)


def timing(runs: pd.DataFrame) -> pd.DataFrame:
    """Latency and wall time per row (one run per training seed): mean, 95% interval, median, and the runs
    whose measurement was disturbed (more than OUTLIER_SHARE outlier calls, or latency ≥ LATENCY_SPREAD × the
    row's median)."""
    kept = split_duplicates(attach_scratch(complete(runs))[0])[0]
    present = [m for m in MACHINE if m in kept]
    if kept.empty or not present:
        return pd.DataFrame(columns=KEYS)
    kept[present] = kept[present].apply(pd.to_numeric, errors="coerce").astype(float)
    stats = describe(kept, present)
    flagged = []
    for _, g in kept.groupby(KEYS, dropna=False, sort=False):
        lat = g.get("latency_ms", pd.Series(dtype=float))
        slow = lat >= LATENCY_SPREAD * lat.median()
        noisy = g.get("latency_outlier_share", pd.Series(0.0, index=g.index)).fillna(0) > OUTLIER_SHARE
        flagged.append({**dict(zip(KEYS, g.iloc[0][KEYS], strict=True)), "latency_ms_median": lat.median(),
                        "disturbed_runs": " ".join(sorted(g.run[slow | noisy]))})
    return pd.DataFrame(flagged).merge(stats, on=KEYS, how="left")
