"""Model zoo: sizes against the papers, exact MAC counts, both pruning modes, configs, 1-epoch NS runs.

Parameter counts are ``count_params`` = trainable parameters only. ChannelSelect indices are buffers,
not parameters, and are NOT counted (NS's README counts them: PreResNet-164 1,711,338 vs the paper's
1.70M = 1,703,258 without them).
"""

from __future__ import annotations

import inspect

import pytest
import torch
from hydra.utils import instantiate
from test_compaction import check_equivalence, random_masks
from torch.utils.flop_counter import FlopCounterMode

from conftest import compose
from regprune.cost import count_macs, count_params
from regprune.models import MODELS, ChannelSelect, build_model
from regprune.models.resnet import ResNet
from regprune.pruning import apply_masks, compact
from regprune.pruning.io import load_pruned, model_from_payload, model_payload

MODES = ["inside_blocks", "coupled"]
ZOO = sorted(n for n in MODELS if "prune_mode" in inspect.signature(MODELS[n]).parameters)  # every family with modes

# Network Slimming Table 1 baselines (docs/methods.md, Network Slimming):
# (model, options, classes, params, FLOPs = 2 × MACs)
NS_TABLE1 = [
    ("vgg19", {}, 10, 20.04e6, 7.97e8),
    ("vgg19", {}, 100, 20.08e6, 7.97e8),
    ("densenet40", {"init_channels": 16}, 10, 1.02e6, 5.33e8),
    ("densenet40", {"init_channels": 16}, 100, 1.06e6, 5.33e8),
    ("preresnet164", {}, 10, 1.70e6, 4.99e8),
    ("preresnet164", {}, 100, 1.73e6, 5.00e8),
]


pytestmark = pytest.mark.usefixtures("one_thread")


def flop_counter_macs(model, shape=(3, 32, 32)) -> int:
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *shape))
    return counter.get_total_flops() // 2


def select_indices(model) -> int:
    return sum(m.index.numel() for m in model.modules() if isinstance(m, ChannelSelect))


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("mode", MODES)
def test_compacted_equals_masked(name, mode):
    """Every family and pruning mode (test_compaction's check); the second pass prunes the compacted net."""
    model = build_model(name, num_classes=10, in_channels=3, prune_mode=mode)
    _, small, _ = check_equivalence(model, (3, 8, 8), keep_prob=0.4)  # 8×8: every stage still runs
    check_equivalence(small, (3, 8, 8), keep_prob=0.6, seed=1)


@pytest.mark.parametrize("name,options,classes,params,flops", NS_TABLE1)
def test_sizes_match_network_slimming_table1(name, options, classes, params, flops):
    modes = [{}] if name.startswith("vgg") else [{"prune_mode": m} for m in MODES]
    for mode in modes:  # the pruning mode changes neither parameters nor MACs
        model = build_model(name, num_classes=classes, in_channels=3, **options, **mode)
        macs = count_macs(model, (3, 32, 32))
        assert count_params(model) == pytest.approx(params, rel=0.005)
        assert 2 * macs == pytest.approx(flops, rel=0.01)
        if classes == 10 and mode.get("prune_mode", "inside_blocks") == "inside_blocks":
            assert macs == flop_counter_macs(model)


def test_preresnet164_params_with_and_without_select_indices():
    model = build_model("preresnet164", num_classes=10, in_channels=3)
    assert count_params(model) == 1_703_258  # the paper's 1.70M
    assert count_params(model) + select_indices(model) == 1_711_338  # NS README, indices counted


def test_densenet40_init_channels():
    """16 initial channels give the paper's 1.02M; the public port's 24 give its 1.07M only when the
    ChannelSelect indices are counted as parameters, as that port does."""
    paper = build_model("densenet40", num_classes=10, in_channels=3, init_channels=16)
    port = build_model("densenet40", num_classes=10, in_channels=3, init_channels=24)
    assert paper.conv.out_channels == 16 and port.conv.out_channels == 24
    assert count_params(paper) == pytest.approx(1.02e6, rel=0.005)
    assert count_params(port) + select_indices(port) == pytest.approx(1.07e6, rel=0.005)
    assert count_params(port) == pytest.approx(1.06e6, rel=0.005)


def resnet_cost(n: int, classes: int = 10) -> tuple[int, int]:
    """Params and MACs of a CIFAR ResNet with option-A shortcuts (no shortcut parameters), by hand."""
    params, macs, c_in, size = 27 * 16 + 2 * 16, 27 * 16 * 32 * 32, 16, 32
    for s, c in enumerate((16, 32, 64)):
        for i in range(n):
            size //= 2 if (i == 0 and s) else 1
            params += 9 * c_in * c + 9 * c * c + 4 * c
            macs += (9 * c_in * c + 9 * c * c) * size * size
            c_in = c
    return params + 64 * classes + classes, macs + 64 * classes


@pytest.mark.parametrize("depth,paper_params", [(20, 0.27e6), (56, 0.85e6), (110, 1.7e6)])
def test_cifar_resnet_sizes(depth, paper_params):
    model = build_model(f"resnet{depth}", num_classes=10, in_channels=3)
    params, macs = resnet_cost((depth - 2) // 6)
    assert (count_params(model), count_macs(model, (3, 32, 32))) == (params, macs)
    assert f"{params / 1e6:.2g}" == f"{paper_params / 1e6:.2g}"  # He et al. Table 6: 0.27M, 0.85M, 1.7M
    if depth == 56:
        assert round(macs / 1e6, 1) == 125.5  # docs/methods.md, Counting conventions (zero-padding shortcuts)


@pytest.mark.parametrize("name", sorted(set(MODELS) - {row[0] for row in NS_TABLE1}))  # the rest: above
def test_macs_equal_flop_counter(name):
    modes = [{"prune_mode": m} for m in MODES] if name in ZOO else [{}]
    for mode in modes:
        model = build_model(name, num_classes=10, in_channels=3, **mode)
        assert count_macs(model, (3, 32, 32)) == flop_counter_macs(model)


@pytest.mark.parametrize("name,small", [("resnet20", {"depth": 20}), ("preresnet164", {"depth": 20}),
                                        ("densenet40", {"depth": 13}), ("resnet50", {"layers": [1, 1, 1, 1]}),
                                        ("mobilenet_v2", {})])
@pytest.mark.parametrize("mode", MODES)
def test_pruned_macs_equal_flop_counter_and_payload_round_trip(name, small, mode):
    model = build_model(name, num_classes=10, in_channels=3, prune_mode=mode, **small)
    masks = random_masks(model, 0.5, torch.Generator().manual_seed(0))
    apply_masks(model, masks)
    small = compact(model, masks)
    assert count_macs(small, (3, 16, 16)) == flop_counter_macs(small, (3, 16, 16))
    loaded = model_from_payload(model_payload(small)).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), small.eval()(x), rtol=0, atol=0)


# per family, the BNs that inside_blocks leaves alone (families not listed gate every BN in both modes)
UNGATED_INSIDE_BLOCKS = {
    "ResNet": lambda bn: not bn.endswith(".bn1"),  # CIFAR ResNet: the stem and every block's second BN
    "BottleneckResNet": lambda bn: bn == "bn1" or bn.endswith((".bn3", ".downsample.1")),
    "MobileNetV2": lambda bn: bn.endswith((".conv.2", ".conv.3")),  # the projection BNs
}


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("mode", MODES)
def test_groups_name_real_modules_and_gates_cover_the_penalised_bns(name, mode):
    model = build_model(name, num_classes=10, in_channels=3, prune_mode=mode)
    modules = dict(model.named_modules())
    for g in model.channel_groups():
        for m in (*g.gates, *g.out, *g.inp, *g.select, *(m for m, _ in g.offsets)):
            assert m in modules, f"{name}/{mode}: group {g.name} names missing module {m}"
    bns = {n for n, m in modules.items() if isinstance(m, torch.nn.BatchNorm2d)}
    ungated = UNGATED_INSIDE_BLOCKS.get(type(model).__name__) if mode == "inside_blocks" else None
    if ungated is not None:  # BNs writing the stream (or an ImageNet ResNet's stem) are not pruned
        assert set(model.gate_modules()) == {n for n in bns if not ungated(n)}
    else:  # NS (and coupled mode) penalises and thresholds every BN
        assert set(model.gate_modules()) == bns


@pytest.mark.parametrize("name,stream", [("resnet20", 5), ("preresnet164", 4), ("densenet40", 39)])
def test_inside_blocks_keeps_the_stream_full_width(name, stream):
    model = build_model(name, num_classes=10, in_channels=3)
    masks = random_masks(model, 0.3, torch.Generator().manual_seed(1))
    apply_masks(model, masks)
    small = compact(model, masks)
    assert small.widths[:stream] == model.widths[:stream]
    assert small.widths[stream:] != model.widths[stream:]
    if name != "resnet20":  # NS: every block-input BN stays full width, its ChannelSelect narrows
        full = dict(model.named_modules())
        pairs = [(n, getattr(m, "bn1", None) or m.bn, m.select) for n, m in small.named_modules()
                 if isinstance(getattr(m, "select", None), ChannelSelect)]
        assert len(pairs) == sum(isinstance(m, ChannelSelect) for m in model.modules())
        for n, bn, sel in pairs:
            full_bn = getattr(full[n], "bn1", None) or full[n].bn
            assert bn.num_features == full_bn.num_features >= sel.index.numel()
        assert any(sel.index.numel() < bn.num_features for _, bn, sel in pairs)


@pytest.mark.parametrize("name,params,macs", [("resnet50", 25_557_032, 4_089_184_256),
                                              ("mobilenet_v2", 3_504_872, 300_774_272)])
def test_imagenet_models_equal_torchvision(name, params, macs):
    """torchvision's state dict loads unchanged (same keys and shapes) and gives the same outputs, in both
    pruning modes; params and MACs at 224² are torchvision's (25.56M / 4.09G, 3.50M / 0.30G), and the MACs
    equal FlopCounterMode's count / 2 for both networks."""
    import torchvision

    reference = getattr(torchvision.models, name)().eval()
    x = torch.randn(2, 3, 64, 64)
    for mode in MODES:
        ours = build_model(name, num_classes=1000, in_channels=3, prune_mode=mode).eval()
        ours.load_state_dict(reference.state_dict(), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=0)
    assert count_params(ours) == count_params(reference) == params
    assert count_macs(ours, (3, 224, 224)) == flop_counter_macs(reference, (3, 224, 224)) == macs
    assert round(params / 1e6, 2) == {"resnet50": 25.56, "mobilenet_v2": 3.50}[name]
    assert round(macs / 1e9, 2) == {"resnet50": 4.09, "mobilenet_v2": 0.30}[name]


def test_mobilenet_depthwise_groups_follow_the_pruned_width():
    """A hidden group spans the expansion conv, the depthwise conv (one filter per channel) and the projection."""
    model = build_model("mobilenet_v2", num_classes=10, in_channels=3)
    groups = {g.name: g for g in model.channel_groups()}
    g = groups["features.2.conv.0.1"]
    assert g.gates == ("features.2.conv.0.1", "features.2.conv.1.1") and g.inp == ("features.2.conv.2",)
    assert groups["features.0.1"].out == ("features.0.0", "features.1.conv.0.0", "features.0.1", "features.1.conv.0.1")
    masks = {name: torch.ones(model.widths[grp.width], dtype=torch.bool) for name, grp in groups.items()}
    masks["features.2.conv.0.1"][:40] = False
    small = compact(model, masks)
    depthwise = small.features[2].conv[1][0]
    assert depthwise.groups == depthwise.in_channels == depthwise.out_channels == 96 - 40
    assert small.features[2].conv[0][0].out_channels == small.features[2].conv[2].in_channels == 56


def test_option_a_padding_maps_stage_channels_into_the_middle_of_the_next_stage():
    """Masking stem channel k (coupled) zeroes stream channel k, 8 + k and 24 + k in stages 1, 2, 3."""
    model = build_model("resnet20", num_classes=10, in_channels=3, prune_mode="coupled").eval()
    torch.nn.init.normal_(model.bn.bias)  # make silent channels the exception
    groups = {g.name: g for g in model.channel_groups()}
    assert len(groups["stream.a"].gates) == 1 + 9  # the stem BN and every block's second BN
    masks = {name: torch.ones(model.widths[g.width], dtype=torch.bool) for name, g in groups.items()}
    masks["stream.a"][3] = False
    apply_masks(model, masks)
    seen = {}
    for s in (1, 2, 3):
        getattr(model, f"layer{s}").register_forward_hook(lambda m, i, o, s=s: seen.__setitem__(s, o))
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32))
    silent = {s: (seen[s].abs().amax((0, 2, 3)) == 0).nonzero().flatten().tolist() for s in seen}
    assert 3 in silent[1] and 8 + 3 in silent[2] and 24 + 3 in silent[3]
    small = compact(model, masks)
    assert small.widths[:5] == [15, 8, 8, 16, 16] and small.layer2[0].pad == (8, 8)


def test_coupled_preresnet_shortcut_reads_the_preactivated_input():
    """NS's network (inside_blocks) projects the raw stream; coupled mode projects BN→ReLU of it, so a
    stream channel silenced at every reading BN reaches no conv (see models/preresnet.py)."""
    inside = build_model("preresnet164", num_classes=10, in_channels=3)
    coupled = build_model("preresnet164", num_classes=10, in_channels=3, prune_mode="coupled")
    assert inside.layer2[0].shortcut == "raw" and coupled.layer2[0].shortcut == "preact"
    assert coupled.layer1[0].select is None and inside.layer1[0].select is not None


@pytest.mark.parametrize("kwargs,match", [
    ({"prune_mode": "stream"}, "prune_mode='stream'"),
    ({"widths": [16, 8]}, "needs 32 widths"),
    ({"widths": [16, 8, 8, 16, 16] + [-1] + [16] * 26}, "needs 32 widths, positive"),
    ({"depth": 57}, "depth=57 must be 6n"),
])
def test_resnet_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResNet(**{"depth": 56, **kwargs})


def test_select_wider_than_its_input_is_rejected():
    widths = build_model("preresnet164", num_classes=10, in_channels=3).widths
    widths[4] = 17  # block 1.0 selects 17 of the stem's 16 channels
    with pytest.raises(ValueError, match="selects 17 of 16"):
        build_model("preresnet164", num_classes=10, in_channels=3, widths=widths)
    with pytest.raises(ValueError, match="depth=41 must be 3L"):
        build_model("densenet40", num_classes=10, in_channels=3, depth=41)


@pytest.mark.parametrize("name", ZOO)
def test_model_configs_compose_and_build(name):
    cfg = compose([f"model={name}", "model.prune_mode=coupled"])
    model = instantiate(cfg.model, num_classes=100, in_channels=3).eval()
    assert model.prune_mode == "coupled" and model(torch.zeros(1, 3, 32, 32)).shape == (1, 100)
    default = instantiate(compose([f"model={name}"]).model, num_classes=10, in_channels=3)
    assert default.prune_mode == "inside_blocks"
    ns = name in ("preresnet164", "densenet40")
    first_bn = next(m for m in default.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert first_bn.weight[0].item() == (0.5 if ns else 1.0)  # NS initialises γ to 0.5
    if name == "densenet40":
        assert instantiate(compose(["model=densenet40", "model.init_channels=24"]).model,
                           num_classes=10, in_channels=3).conv.out_channels == 24


# -- 1-epoch NS runs on synthetic data: train with penalty -> prune -> compact -> fine-tune -> record --
RUN = ["dataset=synthetic", "dataset.num_train=64", "dataset.num_test=32", "dataset.image_size=16",
       "dataset.batch_size=32", "dataset.eval_batch_size=32", "schedule=ns", "schedule.train.epochs=1",
       "schedule.finetune.epochs=1", "schedule.prune.ratio=0.5", "schedule.prune.on_empty=keep_min",
       "regularizer=l1", "regularizer.lam=1e-4", "optimizer.lr=0.05", "progress=false", "latency=false"]


def ns_run(tmp_path, model: list[str]) -> None:
    from regprune.run import run

    metrics = run(compose([*model, *RUN, f"run.root={tmp_path}"]))
    assert metrics["status"] == "complete"
    assert metrics["params"] < metrics["params_unpruned"] and metrics["macs"] < metrics["macs_unpruned"]
    assert abs(metrics["acc_pruned"] - metrics["acc_pruned_masked"]) <= 100 / 32  # float32: ≤ 1 image
    unpruned = instantiate(compose(model).model, num_classes=10, in_channels=3)
    groups = unpruned.channel_groups()
    assert set(metrics["kept_channels"]) == {g.name for g in groups}
    assert metrics["total_channels"] == {g.name: unpruned.widths[g.width] for g in groups}
    pruned = load_pruned(metrics["run_dir"])
    assert {g.name: pruned.widths[g.width] for g in groups} == metrics["kept_channels"]
    assert count_params(pruned) == metrics["params"]
    assert count_macs(pruned, (3, 16, 16)) == metrics["macs"]
    grouped = {g.width for g in groups}
    fixed = [i for i in range(len(unpruned.widths)) if i not in grouped]
    assert [pruned.widths[i] for i in fixed] == [unpruned.widths[i] for i in fixed]


@pytest.mark.parametrize("model", [
    ["model=resnet50", "model.prune_mode=coupled"],
    ["model=mobilenet_v2"],
    ["model=mobilenet_v2", "model.prune_mode=coupled"],
    ["model=resnet20", "model.prune_mode=coupled"],
    ["model=resnet56"],
    ["model=resnet110", "model.prune_mode=coupled"],
    ["model=preresnet164"],
    ["model=preresnet164", "model.prune_mode=coupled"],
    ["model=densenet40"],
    ["model=densenet40", "model.prune_mode=coupled"],
], ids=lambda m: "-".join(v.split("=")[-1] for v in m))
def test_one_epoch_ns_run_compacts_and_records(tmp_path, model):
    ns_run(tmp_path, model)
