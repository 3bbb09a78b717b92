"""Compaction is exact: the smaller network computes what the masked one computes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from regprune.cost import count_macs, count_params
from regprune.models import MODELS, build_model
from regprune.pruning import BNScale, Percentile, apply_masks, select
from regprune.pruning.io import model_from_payload, model_payload
from regprune.pruning.verify import check_equivalence, random_masks  # noqa: F401 (test_models_zoo imports them here)


@pytest.mark.parametrize("name", ["vgg_tiny", "vgg11"])
@pytest.mark.parametrize("keep_prob", [0.2, 0.7])
def test_compacted_equals_masked(name, keep_prob):
    shape = (1, 16, 16) if name == "vgg_tiny" else (3, 32, 32)
    model = build_model(name, num_classes=10, in_channels=shape[0])
    check_equivalence(model, shape, keep_prob)


def test_vgg_cost_matches_kept_channels():
    """Params and MACs of the compacted VGG are what its kept widths predict."""
    model = build_model("vgg_tiny", num_classes=10, in_channels=1)
    _, small, masks = check_equivalence(model, (1, 16, 16), 0.5, seed=3)
    widths = [int(masks[g.name].sum()) for g in model.channel_groups()]
    assert small.widths == widths
    layout = [32, 32, "M", 64, 64, "M", 128, 128]
    c_in, size, i, params, macs = 1, 16, 0, 0, 0
    for v in layout:
        if v == "M":
            size //= 2
            continue
        c = widths[i]
        params += 9 * c_in * c + 2 * c  # conv (no bias) + BN γ, β
        macs += 9 * c_in * c * size * size
        c_in, i = c, i + 1
    params += c_in * 10 + 10
    macs += c_in * 10
    assert count_params(small) == params
    assert count_macs(small, (1, 16, 16)) == macs


def test_compacted_model_round_trips_through_payload():
    model = build_model("vgg_tiny", num_classes=10, in_channels=1)
    _, small, _ = check_equivalence(model, (1, 16, 16))
    small = small.float()
    loaded = model_from_payload(model_payload(small)).eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), small(x), rtol=0, atol=0)


def test_global_percentile_keeps_strictly_above_threshold():
    """NS keeps |γ| strictly above the value at index ⌊N·ratio⌋, pruning one channel more than the ratio."""
    scores = {"a": torch.tensor([0.1, 0.3, 0.5, 0.9]), "b": torch.tensor([0.2, 0.4, 0.6, 0.8])}
    r = select(scores, Percentile(0.5))  # sorted .1 .2 .3 .4 .5 .6 .8 .9: index 4 -> 0.5
    assert r.threshold == pytest.approx(0.5)
    assert r.kept() == {"a": 1, "b": 2}
    assert r.pruned_ratio() == pytest.approx(5 / 8)


def test_emptied_layer_is_an_error_or_recorded_top_up():
    from regprune.errors import UserError

    scores = {"a": torch.tensor([0.1, 0.2, 0.3, 0.4]), "b": torch.tensor([0.5, 0.6, 0.7, 0.8])}
    with pytest.raises(UserError, match="would leave 0 channel"):
        select(scores, Percentile(0.5))
    r = select(scores, Percentile(0.5), on_empty="keep_min", min_channels=2)
    assert r.kept() == {"a": 2, "b": 3}
    assert r.topped_up == {"a": 2}
    assert r.masks["a"].tolist() == [False, False, True, True]


def test_layer_scope_drops_ratio_per_layer():
    scores = {"a": torch.tensor([0.4, 0.1, 0.3, 0.2]), "b": torch.tensor([0.5, 0.9, 0.7, 0.8])}
    r = select(scores, Percentile(0.5, scope="layer"))
    assert r.masks["a"].tolist() == [True, False, True, False]
    assert r.masks["b"].tolist() == [False, True, False, True]


def test_masking_zeroes_gamma_and_beta():
    model = build_model("vgg_tiny", num_classes=10, in_channels=1)
    scores = BNScale()(model)
    masks = {k: torch.arange(len(v)) % 2 == 0 for k, v in scores.items()}
    apply_masks(model, masks)
    for name, bn in model.gate_modules().items():
        assert (bn.weight[~masks[name]] == 0).all() and (bn.bias[~masks[name]] == 0).all()


def test_every_registered_model_declares_consistent_groups():
    for name in MODELS:
        model = build_model(name, num_classes=10, in_channels=3)
        modules = dict(model.named_modules())
        for g in model.channel_groups():
            for m in (*g.gates, *g.out, *g.inp, *g.select):
                assert m in modules, f"{name}: group {g.name} names missing module {m}"


def test_readme_guide_to_prune_your_own_architecture_runs():
    """The README's 'Prune your own architecture' example passes the compaction-equivalence check."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Prune your own architecture", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    small, masks = namespace["small"], namespace["masks"]
    assert small.widths == [int(m.sum()) for m in masks.values()] and small.widths != [16, 32]
