"""Latency: the median of many timed calls, robust to a disturbed call, which is flagged."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from regprune import cost
from regprune.cost import measure_latency, model_cost


class Clocked(nn.Module):
    """A model whose forward pass advances a fake clock by ``durations[call]`` seconds (exact timings)."""

    def __init__(self, durations: list[float]):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.durations, self.calls, self.now = durations, 0, 0.0

    def forward(self, x):
        self.now += self.durations[self.calls]
        self.calls += 1
        return x * self.weight


@pytest.fixture
def clocked(monkeypatch):
    def make(durations):
        model = Clocked(durations)
        monkeypatch.setattr(cost, "time", types.SimpleNamespace(perf_counter=lambda: model.now))
        return model
    return make


def test_one_stalled_call_does_not_move_the_median_and_is_flagged(clocked):
    warmup, repeats = 5, 21
    durations = [0.05] * warmup + [0.002 + 1e-5 * i for i in range(repeats)]
    durations[warmup + 3] = 0.2  # one timed call stalls 100× (a descheduled process)
    model = clocked(durations)
    lat = measure_latency(model, (1, 2, 2), repeats=repeats, warmup=warmup)
    assert model.calls == warmup + repeats
    # 21 timings: 20 steady ones 2.00..2.20 ms (one replaced by 200 ms): median = the 11th smallest = 2.11 ms
    assert lat["latency_ms"] == pytest.approx(2.11)
    assert lat["latency_outlier_share"] == pytest.approx(1 / 21)
    assert lat["latency_ms_iqr"] == pytest.approx(0.11, abs=0.02)


def test_steady_calls_have_no_outlier(clocked):
    lat = measure_latency(clocked([1.0] + [0.001] * 9), (1, 2, 2), repeats=9, warmup=1)  # slow warm-up ignored
    assert lat == pytest.approx({"latency_ms": 1.0, "latency_ms_iqr": 0.0, "latency_outlier_share": 0.0})


def test_model_cost_carries_the_latency_record():
    c = model_cost(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)), (3, 8, 8))
    assert c["macs"] == 4 * 36 * 27 + 144 * 2 and c["flops"] == 2 * c["macs"]
    assert {"latency_ms", "latency_ms_iqr", "latency_outlier_share"} <= set(c)
    assert "latency_ms" not in model_cost(nn.Linear(2, 2), (2,), latency=False)
