"""Magnitude framework: weight / group magnitude histograms and sparsity in the run record."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import FAST, compose
from regprune.analysis.magnitudes import LOG10_EDGES, append_jsonl, layer_stats, magnitude_stats, record_magnitudes
from regprune.pruning.io import load_checkpoint, model_from_payload
from regprune.tracking.record import RunRecord

pytestmark = pytest.mark.usefixtures("one_thread")


def test_layer_stats_counts_zero_and_small_weights_and_filters():
    w = torch.full((4, 2, 3, 3), 0.5)
    w[0] = 0.0  # an all-zero filter
    w[1] = 0.005  # entirely below 0.009 (Li/Hu zero it), not zero
    w[2, 0, 0, 0] = 0.0  # one zero weight in a live filter
    w[3, 1] = 1e-12  # below the histogram's range
    s = layer_stats(w)
    assert (s["weights"], s["zero"], s["small"]) == (72, 19, 19 + 18 + 9)
    assert (s["filters"], s["filters_zero"], s["filters_small"]) == (4, 1, 2)
    h = s["weight_hist"]
    assert h["zeros"] == 19 and h["under"] == 9 and h["over"] == 0
    assert sum(h["counts"]) + h["under"] == 72 - 19
    lo, hi, bins = LOG10_EDGES
    width = (hi - lo) / bins
    assert h["counts"][int((math.log10(0.5) - lo) / width)] == 72 - 19 - 18 - 9 and h["counts"][
        int((math.log10(0.005) - lo) / width)] == 18
    g = s["group_hist"]  # filter norms: 0, √18·0.005, ..., one zero bin
    assert g["zeros"] == 1 and sum(g["counts"]) == 3
    g1 = s["group_hist_l1"]  # ℓ1 filter norms (the magnitude of Li/Hu's penalties) next to ℓ2: 18·0.005 = 0.09
    assert g1["zeros"] == 1 and sum(g1["counts"]) == 3
    assert g1["counts"][int((math.log10(18 * 0.005) - lo) / width)] == 1


def test_overall_stats_sum_layers_and_percentages():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 2, 1), nn.Flatten(), nn.Linear(2, 3))
    with torch.no_grad():
        model[0].weight[:2] = 0
    stats = magnitude_stats(model)
    layers = stats["layers"]
    assert set(layers) == {"0", "1", "3"}
    total = stats["overall"]
    assert total["weights"] == 36 + 8 + 6 and total["zero"] == 18
    assert total["filter_sparsity"] == 100.0 * 2 / (4 + 2 + 3)
    assert total["weight_sparsity"] == 100.0 * 18 / 50
    assert [sum(x) for x in zip(*(v["weight_hist"]["counts"] for v in layers.values()), strict=True)] == \
        total["weight_hist"]["counts"]


def test_append_jsonl_replaces_repeated_epochs(tmp_path):
    record = RunRecord(tmp_path)
    for epoch, value in ((1, "a"), (2, "b"), (2, "c")):
        append_jsonl(record, "m.jsonl", {"phase": "train", "epoch": epoch, "v": value}, key=("phase", "epoch"))
    append_jsonl(record, "m.jsonl", {"phase": "finetune", "epoch": 1, "v": "d"}, key=("phase", "epoch"))
    rows = [json.loads(ln) for ln in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["epoch"], r["v"]) for r in rows] == [("train", 1, "a"), ("train", 2, "c"),
                                                                ("finetune", 1, "d")]


class RecordingLogger:
    def __init__(self):
        self.histograms = []

    def histogram(self, name, values, step=None):
        self.histograms.append((name, len(values), step))


def test_record_magnitudes_logs_histograms(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 3))
    logger = RecordingLogger()
    out = record_magnitudes(RunRecord(tmp_path), logger, model, "train", 1, 10)
    assert set(out) == {"weight_sparsity", "weight_sparsity_thr", "filter_sparsity", "filter_sparsity_thr"}
    assert logger.histograms == [("train/log10_weight_magnitude", 36 + 12, 10),
                                 ("train/log10_group_magnitude", 4 + 3, 10),
                                 ("train/log10_group_l1_magnitude", 4 + 3, 10)]


def test_runner_writes_magnitudes_every_k_epochs(tmp_path):
    from regprune.run import run

    cfg = compose([*FAST, "regularizer=l1_2_prox", "schedule.train.epochs=2", "magnitude_every=1",
                   "schedule.prune.criterion=percentile", "schedule.prune.scope=layer", f"run.root={tmp_path}"])
    metrics = run(cfg)
    folder = Path(metrics["run_dir"])
    rows = [json.loads(ln) for ln in (folder / "magnitudes.jsonl").read_text().splitlines()]
    assert [(r["phase"], r["epoch"]) for r in rows] == [("train", 1), ("train", 2), ("finetune", 1)]
    for row, file in ((rows[1], "trained.pt"), (rows[-1], "model.pt")):  # end of training; the fine-tuned model
        weights = {n: m.weight.detach() for n, m in model_from_payload(load_checkpoint(folder / file)).named_modules()
                   if isinstance(m, nn.Conv2d | nn.Linear)}
        assert {n: (v["weights"], v["zero"]) for n, v in row["layers"].items()} == {
            n: (w.numel(), int((w == 0).sum())) for n, w in weights.items()}
        assert row["overall"]["weights"] == sum(w.numel() for w in weights.values())
    assert rows[-1]["overall"]["weights"] < rows[1]["overall"]["weights"]  # the record follows the pruned model
    history = (folder / "history.csv").read_text().splitlines()
    assert "filter_sparsity" in history[0]
    assert rows[1]["overall"]["zero"] > 0  # the proximal ℓ1/2 step made exact zeros
