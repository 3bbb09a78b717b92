"""Readable names and stable plot styles of methods (keyed by the regularizer name a run records), and titles.

One mapping for every table and figure: a method keeps its colour whichever methods a figure shows. A
proximal variant (``<name>-prox``) takes its method's colour with a dashed line and square markers; a name
not listed here gets a colour from a checksum of the name (stable across runs and machines).
"""

from __future__ import annotations

import zlib

# name -> label; the order fixes the colours (PALETTE[i]), so new methods are appended, never inserted
LABELS = {
    "l1": "ℓ1 (NS)",
    "lp0.5": "ℓ1/2",
    "lp0.75": "ℓ3/4",
    "tl1": "Tℓ1",
    "mcp": "MCP",
    "scad": "SCAD",
    "polarization": "polarization",
    "rsnli": "RSNLI",
    "l1_2_prox": "ℓ1/2 on weights",
    "group_lasso": "group lasso (filters)",
    "group_lasso_channel": "group lasso (channels)",
    "oicsr": "OICSR",
    "l12": "L1,2",
    "gl_half": "group L1/2",
    "hgl": "HGL",
    "greg": "GReg",
    "tp_ns": "peer: Torch-Pruning NS",
    "lp0.667": "ℓ2/3",
    "oto": "OTO",
    "scp": "SCP",
    "sss": "SSS",
    "dmc": "DMC",
    "gdp": "GDP",
    "resrep": "ResRep",
    "bar": "BAR",
    "scop": "SCOP",
    "gal": "GAL",
}
BASELINE = "none"  # the unpenalised baseline: black, never a palette colour
# one hue per listed method (in LABELS' order), chosen to stay apart on white; the last two only for names
# not listed (they may then share a hue)
PALETTE = ["#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#000075", "#469990", "#f032e6", "#800000", "#808000", "#daa520", "#4b0082", "#2f4f4f", "#fa8072",
           "#911eb4", "#f58231", "#42d4f4", "#9a6324", "#e6194b", "#3cb44b", "#4363d8", "#f0a000", "#006400",
           "#00bfff", "#32cd32"]
PROX = "-prox"


def split(method: str) -> tuple[str, bool]:
    """(base name, whether it is the proximal variant)."""
    if method.endswith(PROX):
        return method[: -len(PROX)], True
    return method, False


def label(method: str) -> str:
    if method == BASELINE:
        return "no penalty (baseline)"
    base, prox = split(method)
    return LABELS.get(base, base) + (" prox" if prox else "")


# schedules that make a row a method of its own (docs/methods.md, Multi-pass network slimming; EagleEye)
SCHEDULES = {"ns_multipass": "{} multi-pass", "eagleeye": "EagleEye search from {}",
             "gate_decorator": "Gate Decorator (tick-tock, {} tock)"}


def with_schedule(method: str, schedule: str | None) -> str:
    """The method's label, naming the schedule where it is not the plain one (``ℓ1 (NS) multi-pass``)."""
    return SCHEDULES.get(schedule, "{}").format(label(method))


def with_lam(method: str, lam: float, schedule: str | None = None) -> str:
    """The method's label (and schedule) with its penalty strength (none for the baseline)."""
    return with_schedule(method, schedule) + ("" if method == BASELINE else f" λ={lam:g}")


def color(method: str) -> str:
    if method == BASELINE:
        return "black"
    base, _ = split(method)
    names = list(LABELS)
    index = names.index(base) if base in names else zlib.crc32(base.encode()) % len(PALETTE)
    return PALETTE[index % len(PALETTE)]


def style(method: str) -> dict:
    """Matplotlib keyword arguments of a method's line: colour, line style, marker."""
    _, prox = split(method)
    return {"color": color(method), "ls": "--" if prox else "-", "marker": "s" if prox else "o"}


def order(method: str) -> tuple[int, int, str]:
    """Sort key: baseline first, then the listed methods in their order (each before its prox variant)."""
    if method == BASELINE:
        return (-1, 0, method)
    base, prox = split(method)
    names = list(LABELS)
    return (names.index(base) if base in names else len(names), int(prox), base)


DATASETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "digits": "digits", "synthetic": "synthetic"}


def title(model: str, dataset: str) -> str:
    return f"{model} on {DATASETS.get(dataset, dataset)}"
