"""Collection of run folders into tables, paper references, and figures — on real tiny runs."""

from __future__ import annotations

import json
import math
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT
from regprune.analysis import histograms
from regprune.analysis.collect import collect, runs_frame, setting_hash, summarize
from regprune.analysis.magnitudes import WEIGHT_TYPES
from regprune.analysis.reference import compare, headline, load_references

REFERENCE = ROOT / "results" / "reference"
VGG_TINY_CHANNELS = 32 + 32 + 64 + 64 + 128 + 128


@pytest.fixture(scope="session")
def tables(tiny_runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tables")
    collect([tiny_runs], out, REFERENCE)
    return out


def metrics_of(root: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(root)): json.loads(p.read_text()) for p in root.rglob("metrics.json")}


def test_runs_frame_lists_every_run_and_its_status(tiny_runs):
    runs = runs_frame(tiny_runs)
    assert len(runs) == 6
    assert sorted(runs.status) == ["complete"] * 5 + ["failed"]
    failed = runs[runs.status == "failed"].iloc[0]
    assert failed.run.startswith("fx/doomed-s0-") and "pruning would leave 0 channel" in failed.reason
    pruned = runs[runs.schedule == "ns"]
    assert pruned.setting[pruned.status == "complete"].nunique() == 1  # ratio, seed, start_from not in the hash


def test_summary_averages_seeds_and_joins_the_baseline(tiny_runs, tables):
    summary = pd.read_csv(tables / "summary.csv")
    metrics = metrics_of(tiny_runs)
    ratio = [m for m in metrics.values() if m["status"] == "complete" and m.get("prune_ratio") == 0.3]
    assert sorted(m["seed"] for m in ratio) == [0, 1]
    row = summary[summary.prune_ratio == 0.3].iloc[0]
    accs = [m["acc_finetuned_final"] for m in ratio]
    assert row.n_seeds == 2 and row.acc_final_mean == pytest.approx(statistics.mean(accs))
    assert row.acc_final_std == pytest.approx(statistics.stdev(accs))
    assert row.acc_pruned_mean == pytest.approx(statistics.mean(m["acc_pruned"] for m in ratio))
    assert row.flops_mean == pytest.approx(statistics.mean(m["flops"] for m in ratio))
    assert row.flops_reduction_mean == pytest.approx(statistics.mean(m["flops_reduction"] for m in ratio))
    (base,) = [m for m in metrics.values() if m["regularizer"] == "none"]
    assert row.baseline_acc == pytest.approx(base["acc_trained_final"])
    assert row.acc_drop == pytest.approx(base["acc_trained_final"] - row.acc_final_mean)
    assert math.isnan(row.paper_acc)  # digits has no paper row
    # one row per regularizer × λ × ratio (+ the penalty-trained model and the baseline), failed run left out
    assert len(summary) == 4 and sorted(summary.prune_ratio.fillna(0)) == [0, 0, 0.3, 0.6]
    trained = summary[(summary.regularizer == "l1") & (summary.schedule == "train")].iloc[0]
    assert trained.acc_final_mean == pytest.approx(metrics["fx/l1-trained-s0"]["acc_trained_final"])
    md = (tables / "summary.md").read_text()
    assert "| vgg_tiny | digits | l1 | 0.001 | 0.3 | 2 |" in md and "Not included (1 runs not complete)" in md
    incomplete = pd.read_csv(tables / "incomplete.csv")
    assert list(incomplete.status) == ["failed"]


def test_kept_channels_and_histograms_match_the_models(tiny_runs, tables):
    metrics = metrics_of(tiny_runs)
    kept = pd.read_csv(tables / "kept_channels.csv")
    for run, part in kept.groupby("run"):
        assert dict(zip(part.layer, part.kept, strict=True)) == metrics[run]["kept_channels"]
        assert list(part.layer_index) == list(range(len(part)))
        assert list(part.layer) == ["features.1", "features.4", "features.8", "features.11", "features.15",
                                    "features.18"]
    gamma = pd.read_csv(tables / "gamma_hist.csv")
    counts = gamma.groupby(["run", "stage"])["count"].sum()
    # trained |γ| once per trained model: the baseline and the l1 run, not again for the runs pruned from it
    assert sorted(gamma[gamma.stage == "trained"].run.unique()) == sorted(
        r for r, m in metrics.items() if m["schedule"] == "train")
    for (run, stage), n in counts.items():
        want = sum(metrics[run]["kept_channels"].values()) if stage == "final" and "kept_channels" in metrics[run] \
            else VGG_TINY_CHANNELS
        assert n == want, (run, stage)
    assert set(gamma.stage) == {"trained", "final"} and set(gamma.bn_init) == {0.5}  # configs/model/vgg_tiny.yaml
    model = histograms.load_model(tiny_runs / "fx" / "l1-trained-s0" / "trained.pt")
    mags = pd.read_csv(tables / "magnitude_hist.csv")
    part = mags[mags.run == "fx/l1-trained-s0"]
    n_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, WEIGHT_TYPES))
    n_filters = sum(m.weight.shape[0] for m in model.modules() if isinstance(m, WEIGHT_TYPES))
    for kind, total in (("weight", n_weights), ("group", n_filters)):
        h = part[part.kind == kind]
        assert h["count"].sum() + h.zeros.iloc[0] + h.under.iloc[0] + h.over.iloc[0] == total
        assert len(h) == 100 and h.log10_left.min() == -8.0


def test_magnitudes_come_from_the_jsonl_record_or_the_trained_model(tiny_runs, tables, tmp_path):
    mags = pd.read_csv(tables / "magnitude_hist.csv")
    sources = mags.groupby("run").source.first().to_dict()
    (base,) = [r for r in sources if "none" in r]
    assert sources == {"fx/l1-trained-s0": "fx/l1-trained-s0/magnitudes.jsonl@epoch1",  # magnitude_every=1
                       base: f"{base}/trained.pt"}  # no record: computed from the model
    # the record of the last epoch describes the same weights as trained.pt
    model = histograms.load_model(tiny_runs / "fx" / "l1-trained-s0" / "trained.pt")
    want = histograms.model_magnitudes(model)
    for kind in ("weight", "group"):
        part = mags[(mags.run == "fx/l1-trained-s0") & (mags.kind == kind)]
        assert list(part["count"]) == want[kind]["counts"] and part.zeros.iloc[0] == want[kind]["zeros"]
    # lines in another shape are skipped
    run = tmp_path / "fx" / "l1-trained-s0"
    shutil.copytree(tiny_runs / "fx" / "l1-trained-s0", run)
    with open(run / "magnitudes.jsonl", "a") as f:
        f.write(json.dumps({"phase": "train", "epoch": 2, "overall": {"weight_hist": {"counts": [1, 2]}}}) + "\n")
        f.write("not json\n")
    assert [line["epoch"] for line in histograms.read_magnitudes_jsonl(run / "magnitudes.jsonl")] == [1]
    again = collect([tmp_path], tmp_path / "out", None)["magnitude_hist"]
    assert set(again.source) == {"fx/l1-trained-s0/magnitudes.jsonl@epoch1"}


def test_setting_hash_ignores_seed_lambda_ratio_and_paths_only():
    cfg = {"seed": 0, "run": {"id": "a"}, "model": {"name": "vgg19"}, "regularizer": {"lam": 1e-4},
           "schedule": {"train": {"epochs": 160}, "prune": {"ratio": 0.7}, "start_from": "runs/x-s0"},
           "dataset": {"root": "/data"}}
    same = {**cfg, "seed": 1, "run": {"id": "b"}, "regularizer": {"lam": 1e-5}, "dataset": {"root": "/other"},
            "schedule": {"train": {"epochs": 160}, "prune": {"ratio": 0.5}, "start_from": "runs/x-s1"}}
    longer = {**cfg, "schedule": {**cfg["schedule"], "train": {"epochs": 80}}}
    assert setting_hash(cfg) == setting_hash(same) != setting_hash(longer)


def test_reference_tables_are_transcribed():
    refs = load_references(REFERENCE)
    assert (REFERENCE / "README.md").is_file()

    def value(source, dataset, model, method, metric, ratio=None):
        sel = refs[(refs.source == source) & (refs.dataset == dataset) & (refs.model == model)
                   & (refs.method == method) & (refs.metric == metric)]
        if ratio is not None:
            sel = sel[sel.ratio == ratio]
        (v,) = sel.paper
        return v

    table1 = pd.read_csv(REFERENCE / "ns2017_table1.csv")
    assert len(table1) == 16 and table1.error_pct.sum() == pytest.approx(245.03)  # guards against an accidental edit
    assert value("ns2017_table1", "cifar10", "vgg19", "ns", "acc_final", 0.7) == pytest.approx(93.80)
    assert value("ns2017_table1", "cifar10", "vgg19", "ns", "params", 0.7) == pytest.approx(2.30e6)
    assert value("ns2017_table1", "cifar100", "preresnet164", "ns", "flops", 0.6) == pytest.approx(2.47e8)
    assert value("ns2017_port", "cifar10", "vgg19", "ns", "acc_pruned", 0.7) == pytest.approx(32.54)
    assert value("polarization2020_table1", "cifar100", "vgg16", "pr", "flops_reduction") == pytest.approx(0.43)
    counts = pd.read_csv(REFERENCE / "common_counts.csv")
    assert counts.set_index("model").macs.to_dict() == {"vgg16": 313.2e6, "resnet56": 125.5e6, "vgg19": 3.98e8}


def test_imagenet_resnet50_references_name_their_source():
    table = pd.read_csv(REFERENCE / "imagenet_resnet50.csv")
    assert set(table.method) == {"ns", "sss", "gdp", "resrep", "oto"} and table.source.notna().all()
    refs = load_references(REFERENCE)
    rows = refs[refs.source == "imagenet_resnet50"]
    final = rows[rows.metric == "acc_final"].groupby("method").paper.apply(sorted).to_dict()
    assert final == {"gdp": [69.58, 71.19], "ns": [70.43], "oto": [75.2], "resrep": [76.15], "sss": [71.82, 74.18]}
    one = rows.set_index(["method", "metric"]).paper
    assert one["resrep", "flops_reduction"] == pytest.approx(0.545) and one["resrep", "baseline_acc"] == 76.15
    assert one["oto", "params"] == pytest.approx(12_626_516) and one["oto", "macs"] == pytest.approx(1.57471e9)
    assert rows.ratio.isna().all()  # these methods are not pruned at a channel ratio: any of ours compares


def _summary_row(**kw) -> dict:
    row = {"model": "vgg19", "dataset": "cifar10", "regularizer": "l1", "lam": 1e-4, "schedule": "ns",
           "prune_ratio": 0.7, "setting": "s", "n_seeds": 3, "acc_final_mean": 93.5, "acc_final_std": 0.2,
           "acc_pruned_mean": 30.0, "flops_mean": 3.9e8, "params_mean": 2.3e6, "macs_unpruned_mean": 3.98e8,
           "baseline_acc": 93.6, "acc_trained_mean": 93.0, "flops_reduction_mean": 0.5}
    return {**row, **kw}


def test_collected_rows_meet_the_matching_paper_rows():
    summary = pd.DataFrame([_summary_row(), _summary_row(prune_ratio=0.5),
                            _summary_row(regularizer="none", schedule="train", prune_ratio=float("nan"),
                                         acc_final_mean=93.66, setting="b"),
                            _summary_row(model="vgg16", regularizer="polarization", prune_ratio=0.45, setting="p")])
    vs = compare(summary, load_references(REFERENCE))
    t1 = vs[(vs.source == "ns2017_table1") & (vs.metric == "acc_final")]
    assert sorted(zip(t1.method, t1.prune_ratio.fillna(0), t1["diff"].round(2), strict=True)) == [
        ("baseline", 0.0, 0.0), ("ns", 0.7, -0.3)]
    assert not len(vs[(vs.prune_ratio == 0.5) & (vs.source != "common_counts")])  # C10 VGG-19 has no 50% row
    pr = vs[vs.source == "polarization2020_table1"]
    assert set(pr.metric) == {"baseline_acc", "acc_final", "flops_reduction"} and set(pr.method) == {"pr"}
    assert pr.set_index("metric").loc["acc_final", "paper"] == pytest.approx(93.92)
    macs = vs[vs.metric == "macs_unpruned"]
    # an unpruned count is compared once per model and setting, not once per ratio
    assert sorted(zip(macs.model, macs.setting, strict=True)) == [("vgg16", "p"), ("vgg19", "b"), ("vgg19", "s")]
    top = headline(summary, vs)
    row = top[(top.model == "vgg19") & (top.prune_ratio == 0.7)].iloc[0]
    assert row.paper_source == "ns2017_table1" and row.paper_acc == pytest.approx(93.8)
    assert row.paper_acc_diff == pytest.approx(-0.3)


def test_collect_cli_writes_tables_and_notes_incomplete_runs(tiny_runs, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "collect.py"), str(tiny_runs), "--out",
                           str(tmp_path), "--no-histograms"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "5 complete runs -> 4 rows" in proc.stdout and "1 runs not complete were left out" in proc.stdout
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"runs.csv", "incomplete.csv", "summary.csv", "summary.md", "vs_paper.csv",
                     "kept_channels.csv"}
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 5 and not runs.run.str.startswith("/").any()  # paths relative to the collected root
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "collect.py"), str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: not a folder")


def test_a_proximal_update_is_its_own_method(tiny_runs, tmp_path):
    """Same penalty, other optimisation: ``update=prox`` runs are labelled ``<name>-prox``, never averaged
    with (or matched to the paper rows of) the subgradient runs."""
    run = next(p.parent for p in tiny_runs.rglob("metrics.json")
               if json.loads(p.read_text())["regularizer"] == "l1")
    shutil.copytree(run, tmp_path / "fx" / run.name)
    config = tmp_path / "fx" / run.name / "config.yaml"
    config.write_text(config.read_text().replace("update: subgradient", "update: prox"))
    runs = runs_frame(tiny_runs, tmp_path)
    assert sorted(set(runs.regularizer)) == ["l1", "l1-prox", "none"]
    assert summarize(runs).regularizer.value_counts()["l1-prox"] == 1


def test_unreadable_run_folder_is_skipped_with_a_note(tmp_path, capsys):
    (tmp_path / "exp" / "broken").mkdir(parents=True)
    (tmp_path / "exp" / "broken" / "metrics.json").write_text("{ truncated")
    runs = runs_frame(tmp_path)
    assert runs.empty and "note: skipping" in capsys.readouterr().err
    assert summarize(runs).empty
    tables = collect([tmp_path], tmp_path / "out", REFERENCE)
    assert "No complete runs" in (tmp_path / "out" / "summary.md").read_text() and tables["summary"].empty


def test_make_figures_from_tables(tables, tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from make_figures import make_figures
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    written = make_figures(tables, tmp_path)
    kinds = ["acc_vs_flops", "acc_vs_ratio", "kept_channels", "gamma_hist", "magnitudes"]
    assert sorted(p.name for p in written) == sorted(f"{k}_vgg_tiny_digits.{ext}" for k in kinds
                                                     for ext in ("png", "pdf"))
    for p in written:
        head = p.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if p.suffix == ".png" else head.startswith(b"%PDF")
        assert p.stat().st_size > 5000
