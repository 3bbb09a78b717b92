"""Published numbers (``results/reference/*.csv``, each file's sources in its README) and their comparison
with collected runs.

Each reference CSV keeps its paper's own columns; ``SOURCES`` maps them onto our metric names, so a
reference becomes long rows (source, dataset, model, method, ratio, metric, paper). A row matches a
collected group on dataset, model, method (our regularizer: l1 → ns, polarization → pr, an unpenalised
baseline → baseline) and pruning ratio; an empty ratio or method in the reference matches any.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

# source -> {our metric: (reference column, conversion)}; sources are listed in priority order
SOURCES: dict[str, dict[str, tuple[str, object]]] = {
    "ns2017_table1": {"acc_final": ("error_pct", lambda v: 100.0 - v), "params": ("params_m", lambda v: v * 1e6),
                      "flops": ("flops", float)},
    "polarization2020_table1": {"baseline_acc": ("acc_base", float), "acc_final": ("acc_pruned", float),
                                "flops_reduction": ("flops_reduction_pct", lambda v: v / 100.0)},
    "ns2017_port": {"baseline_acc": ("acc_baseline", float), "acc_trained": ("acc_trained", float),
                    "acc_pruned": ("acc_pruned", float), "acc_final": ("acc_finetuned", float),
                    "params_unpruned": ("params_before_m", lambda v: v * 1e6),
                    "params": ("params_after_m", lambda v: v * 1e6)},
    "common_counts": {"macs_unpruned": ("macs", float), "flops_unpruned": ("flops", float)},
    "imagenet_resnet50": {"baseline_acc": ("acc_base_top1", float), "acc_final": ("acc_top1", float),
                          "macs": ("macs", float), "params": ("params_m", lambda v: v * 1e6),
                          "flops_reduction": ("flops_reduction_pct", lambda v: v / 100.0),
                          "params_reduction": ("params_reduction_pct", lambda v: v / 100.0)},
}
METHODS = {"l1": "ns", "polarization": "pr"}  # our regularizer -> the papers' method name


def method_of(regularizer: str, prune_ratio: float) -> str:
    if regularizer == "none" and pd.isna(prune_ratio):
        return "baseline"
    return METHODS.get(regularizer, regularizer)


def load_references(folder: str | Path | None) -> pd.DataFrame:
    """All reference CSVs in ``folder`` as long rows; no folder gives an empty frame."""
    rows = []
    for source, columns in SOURCES.items():
        path = Path(folder) / f"{source}.csv" if folder is not None else None
        if path is None or not path.is_file():
            continue
        table = pd.read_csv(path)
        for rec in table.to_dict("records"):
            ratio = rec.get("ratio", float("nan"))
            for metric, (column, convert) in columns.items():
                value = rec.get(column)
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                rows.append({"source": source, "dataset": rec["dataset"], "model": rec["model"],
                             "method": rec.get("method", float("nan")), "ratio": float(ratio),
                             "metric": metric, "paper": float(convert(float(value)))})
    return pd.DataFrame(rows, columns=["source", "dataset", "model", "method", "ratio", "metric", "paper"])


def _matches(ref: pd.Series, row: pd.Series, method: str) -> bool:
    if (ref["dataset"], ref["model"]) != (row["dataset"], row["model"]):
        return False
    if isinstance(ref["method"], str) and ref["method"] != method:
        return False
    if math.isnan(ref["ratio"]):
        return True
    ours = 0.0 if pd.isna(row["prune_ratio"]) else float(row["prune_ratio"])
    return abs(ours - ref["ratio"]) < 1e-9


def compare(summary: pd.DataFrame, refs: pd.DataFrame) -> pd.DataFrame:
    """One row per (collected group, reference number): paper, ours (mean and 95% interval half-width over n
    seeds), ours − paper."""
    out = []
    for _, row in summary.iterrows():
        method = method_of(row["regularizer"], row["prune_ratio"])
        for _, ref in refs.iterrows():
            metric = ref["metric"]
            mean_col = f"{metric}_mean" if f"{metric}_mean" in summary else metric
            if mean_col not in summary or pd.isna(row.get(mean_col)) or not _matches(ref, row, method):
                continue
            ours = float(row[mean_col])
            ci = row.get(f"{metric}_ci", float("nan"))
            out.append({"source": ref["source"], "dataset": row["dataset"], "model": row["model"], "method": method,
                        "regularizer": row["regularizer"], "lam": row["lam"], "prune_ratio": row["prune_ratio"],
                        "setting": row["setting"], "metric": metric, "paper": ref["paper"], "ours": ours,
                        "ours_ci": ci, "n": row["n"], "diff": ours - ref["paper"],
                        "any_ratio": math.isnan(ref["ratio"])})
    cols = ["source", "dataset", "model", "method", "regularizer", "lam", "prune_ratio", "setting", "metric",
            "paper", "ours", "ours_ci", "n", "diff"]
    frame = pd.DataFrame(out, columns=[*cols, "any_ratio"])
    if frame.empty:
        return frame[cols]
    frame["any_ratio"] = frame.any_ratio.astype(bool)
    # a reference without a ratio (e.g. an unpruned MAC count) is the same comparison for every ratio: keep one
    unique = frame[frame.any_ratio].drop_duplicates(["source", "dataset", "model", "method", "metric", "paper",
                                                     "ours", "setting"])
    return pd.concat([frame[~frame.any_ratio], unique])[cols].reset_index(drop=True)


def headline(summary: pd.DataFrame, vs_paper: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with the paper's final accuracy and our difference from it (first source that has one)."""
    acc = vs_paper[vs_paper.metric == "acc_final"].copy()
    if acc.empty:
        return summary.assign(paper_source=None, paper_acc=float("nan"), paper_acc_diff=float("nan"))
    acc["priority"] = acc.source.map({s: i for i, s in enumerate(SOURCES)})
    acc = acc.sort_values("priority").drop_duplicates(["dataset", "model", "regularizer", "lam", "prune_ratio",
                                                       "setting"])
    keys = ["dataset", "model", "regularizer", "lam", "prune_ratio", "setting"]
    acc = acc[[*keys, "source", "paper", "diff"]].rename(columns={"source": "paper_source", "paper": "paper_acc",
                                                                  "diff": "paper_acc_diff"})
    return summary.merge(acc, on=keys, how="left")
