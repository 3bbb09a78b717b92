"""The summary tables as Markdown: per model × dataset, test accuracy, paired differences with the reference
method, validation accuracy and cost (``summary.md``); latency and wall time apart (``timing.md``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from . import labels

STATISTICS = ("Each cell: mean ± half-width of the 95% Student-t interval over n training seeds (t with n − 1 "
              "degrees of freedom); n = 1: the single value, no interval; (n=k): only k of the runs record that "
              "figure; –: not recorded. Runs that share a trained model (same setting, λ, ratio and training "
              "seed) count once.")


@dataclass
class Column:
    header: str
    cell: Callable[[pd.Series], str]
    show: Callable[[pd.DataFrame], bool] = lambda rows: True


def has(metric: str) -> Callable[[pd.DataFrame], bool]:
    return lambda rows: f"{metric}_n" in rows and (rows[f"{metric}_n"].fillna(0) > 0).any()


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def number(v, digits: int = 2) -> str:
    return "–" if _missing(v) else f"{v:.{digits}f}"


def count(v) -> str:
    if _missing(v):
        return "–"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.2f}{unit}"
    return f"{v:.0f}"


def percent(v) -> str:
    return "–" if _missing(v) else f"{100 * v:.1f}%"


def interval(metric: str, fmt: Callable = number) -> Callable[[pd.Series], str]:
    """Cell of ``metric``: mean ± half-width, with the number of runs when fewer than the row's n."""
    def cell(r: pd.Series) -> str:
        n = r.get(f"{metric}_n", 0)
        if _missing(n) or n == 0 or _missing(r.get(f"{metric}_mean")):
            return "–"
        text = fmt(r[f"{metric}_mean"])
        if n >= 2 and not _missing(r.get(f"{metric}_ci")):
            text += f" ± {fmt(r[f'{metric}_ci']).rstrip('%')}"
        return text + (f" (n={int(n)})" if n < r.n else "")
    return cell


def difference(prefix: str) -> Callable[[pd.Series], str]:
    """Cell of a paired difference: diff ± half-width (n pairs), * when the interval excludes 0."""
    def cell(r: pd.Series) -> str:
        n = r.get(f"{prefix}_n", 0)
        if _missing(n) or n == 0:
            return "–"
        text = f"{r[f'{prefix}_diff']:+.2f}"
        if n >= 2:
            text += f" ± {r[f'{prefix}_ci']:.2f}" + (" *" if r.get(f"{prefix}_sig") is True else "")
        return text + f" ({int(n)})"
    return cell


def ratio(r: pd.Series) -> str:
    return "–" if _missing(r.prune_ratio) else f"{r.prune_ratio:.0%}"


def lam(r: pd.Series) -> str:
    return "–" if r.regularizer == labels.BASELINE else f"{r.lam:g}"


IDENTITY = [Column("method", lambda r: r.method), Column("λ", lam),
            Column("setting", lambda r: r.setting_label or "–", lambda rows: (rows.setting_label != "").any()),
            Column("experiments", lambda r: r.experiments, lambda rows: rows.experiments.nunique() > 1),
            Column("ratio", ratio), Column("n", lambda r: str(r.n))]
ACCURACY = [
    Column("trained", interval("acc_trained_final"), has("acc_trained_final")),
    Column("right after pruning", interval("acc_pruned"), has("acc_pruned")),
    Column("masked − compacted (max)", lambda r: number(r.pruned_masked_gap_max), has("pruned_masked_gap")),
    Column("+ adaptive BN", interval("acc_pruned_recal"), has("acc_pruned_recal")),
    Column("median candidate + adaptive BN", interval("acc_search_median_recal"), has("acc_search_median_recal")),
    Column("BN recalibrated (phase)", interval("acc_recalibrated"), has("acc_recalibrated")),
    Column("fine-tuned", interval("acc_finetuned_final"), has("acc_finetuned_final")),
    Column("scratch", interval("acc_scratch"), has("acc_scratch")),
    Column("baseline − final", difference("drop"), lambda rows: (rows.drop_n > 0).any()),
]
VALIDATION = [
    Column("trained", interval("val_acc_trained_final"), has("val_acc_trained_final")),
    Column("right after pruning", interval("val_acc_pruned"), has("val_acc_pruned")),
    Column("+ adaptive BN", interval("val_acc_pruned_recal"), has("val_acc_pruned_recal")),
    Column("median candidate + adaptive BN", interval("val_acc_search_median_recal"),
           has("val_acc_search_median_recal")),
    Column("fine-tuned", interval("val_acc_finetuned_final"), has("val_acc_finetuned_final")),
]
COST = [
    Column("channels pruned", interval("channels_pruned_ratio", percent), has("channels_pruned_ratio")),
    Column("params", interval("params", count), has("params")),
    Column("MACs", interval("macs", count), has("macs")),
    Column("FLOPs", interval("flops", count), has("flops")),
    Column("FLOPs ↓", interval("flops_reduction", percent), has("flops_reduction")),
    Column("epochs trained + fine-tuned", lambda r: f"{r.train_epochs or '–'} + {r.finetune_epochs or '–'}"),
]
TIMING = [
    Column("latency ms", interval("latency_ms", lambda v: number(v, 3)), has("latency_ms")),
    Column("median", lambda r: number(r.latency_ms_median, 3), has("latency_ms")),
    Column("unpruned ms", interval("latency_ms_unpruned", lambda v: number(v, 3)), has("latency_ms_unpruned")),
    Column("wall time s", interval("wall_time_s", lambda v: number(v, 1)), has("wall_time_s")),
    Column("disturbed runs", lambda r: r.disturbed_runs or "–", lambda rows: (rows.disturbed_runs != "").any()),
]


def table(rows: pd.DataFrame, columns: list[Column]) -> list[str]:
    shown = [c for c in columns if c.show(rows)]
    lines = ["| " + " | ".join(c.header for c in shown) + " |", "|" + "---|" * len(shown)]
    return lines + ["| " + " | ".join(c.cell(r) for c in shown) + " |" for _, r in rows.iterrows()]


def paired_columns(reference: str) -> list[Column]:
    pairs = [("right after pruning", "acc_pruned"), ("+ adaptive BN", "acc_pruned_recal"), ("final", "acc_final")]
    return [c for c in IDENTITY if c.header != "n"] + [
        Column(f"{what} − {labels.label(reference)}", difference(f"ref_{m}"),
               lambda rows, m=m: f"ref_{m}_n" in rows and (rows[f"ref_{m}_n"] > 0).any()) for what, m in pairs]


def panels(summary: pd.DataFrame):
    for (model, dataset), rows in summary.groupby(["model", "dataset"], sort=True):
        yield model, dataset, rows


def summary_markdown(summary: pd.DataFrame, vs_paper: pd.DataFrame, skipped: pd.DataFrame,
                     duplicates: pd.DataFrame, notes: list[str], heading: str, preface: str = "") -> str:
    """summary.md: see the module docstring."""
    lines = [f"# {heading}", ""] + ([preface, ""] if preface else [])
    if summary.empty:
        return "\n".join(lines + ["No complete runs.", ""])
    n_runs, dirty = int(summary.n.sum()), int(summary.dirty_runs.sum())
    lines += [STATISTICS + " Accuracy in %, on the test split unless said otherwise; right after pruning = the "
              "compacted model (masked − compacted: the largest gap over runs; 0 = they agree); baseline − final: "
              "paired over common seeds (its number of pairs in brackets); FLOPs = 2 × MACs. Latency and wall time: "
              "machine/timing.md (machine-dependent, not committed).", ""]
    lines += [f"**{dirty} of {n_runs} runs were recorded from a git tree with uncommitted changes: these tables "
              "cannot be regenerated from a commit.**" if dirty else
              f"All {n_runs} runs were recorded from a clean git tree.", ""]
    for model, dataset, rows in panels(summary):
        reference = rows.reference.iloc[0]
        paired = rows[rows.ref_setting.notna()]
        lines += [f"## {labels.title(model, dataset)}", "", "### Accuracy (%)", "",
                  *table(rows, IDENTITY + ACCURACY), ""]
        if len(paired):
            lines += [f"### Paired with {labels.label(reference)}", "",
                      f"Method − {labels.label(reference)} at the same ratio, in points: mean difference ± "
                      "half-width of its 95% t interval over the training seeds both have (number of pairs); "
                      "* = the interval excludes 0 (significant).", "", *table(paired, paired_columns(reference)), ""]
        if any(c.show(rows) for c in VALIDATION):
            lines += ["### Validation accuracy (%)", "", *table(rows, IDENTITY + VALIDATION), ""]
        lines += ["### Cost", "", *table(rows, IDENTITY + COST), ""]
    lines += paper_section(vs_paper)
    if len(duplicates):
        lines += [f"## Runs not averaged ({len(duplicates)})", "",
                  "Each shares its training seed with a kept run of the same row (e.g. a second pruning of one "
                  "trained model), so it is no independent replicate; differences are this run − the kept one.", ""]
        lines += [f"- `{d.run}` (seed {d.seed}) = `{d.duplicate_of}`, training seed {d.train_seed}: "
                  f"trained {number(d.acc_trained_final_diff)}, right after pruning {number(d.acc_pruned_diff)}, "
                  f"final {number(d.acc_final_diff)}" for _, d in duplicates.iterrows()]
        lines.append("")
    if notes:
        lines += ["## Scratch controls not joined", "", *[f"- {n}" for n in notes], ""]
    if len(skipped):
        lines += [f"## Not included ({len(skipped)} runs not complete)", ""]
        lines += [f"- `{r.run}`: {r.status}" + (f" ({r.reason})" if isinstance(r.reason, str) else "")
                  for _, r in skipped.iterrows()]
        lines.append("")
    return "\n".join(lines)


def paper_section(vs_paper: pd.DataFrame) -> list[str]:
    if vs_paper.empty:
        return []
    lines = ["## Compared with the papers", "", "| source | dataset | model | method | ratio | metric | paper | ours | "
             "ours − paper |", "|---|---|---|---|---|---|---|---|---|"]
    for _, r in vs_paper.iterrows():
        if r.metric.startswith(("params", "macs", "flops")) and not r.metric.endswith("reduction"):
            cells = [count(r.paper), count(r.ours), f"{100 * r['diff'] / r.paper:+.1f}%"]
        elif r.metric.endswith("reduction"):
            cells = [percent(r.paper), percent(r.ours), f"{100 * r['diff']:+.1f} pt"]
        else:
            ours = number(r.ours) + (f" ± {number(r.ours_ci)}" if not _missing(r.ours_ci) else "")
            cells = [number(r.paper), ours, f"{r['diff']:+.2f}"]
        lines.append(f"| {r.source} | {r.dataset} | {r.model} | {r.method} | {ratio(r)} | {r.metric} | "
                     + " | ".join(cells) + " |")
    return [*lines, ""]


def timing_markdown(timing: pd.DataFrame, provenance: pd.DataFrame) -> str:
    """timing.md: latency and wall time per row, and the machines the runs were measured on."""
    lines = ["# Latency and wall time (machine-dependent)", "",
             STATISTICS + " Latency: median of 51 timed eval-mode forward passes of one image per run "
             "(regprune.cost.measure_latency); disturbed runs recorded outlier calls (> 3× their median) or are "
             "≥ 3× the row's median. Not comparable across machines.", ""]
    machines = provenance.groupby(["device_name", "threads", "host", "torch"], dropna=False).size()
    lines += [f"- {n} runs on {dev} ({threads} threads, host {host}, torch {torch})"
              for (dev, threads, host, torch), n in machines.items()]
    for model, dataset, rows in panels(timing):
        lines += ["", f"## {labels.title(model, dataset)}", "", *table(rows, IDENTITY + TIMING)]
    return "\n".join(lines) + "\n"
