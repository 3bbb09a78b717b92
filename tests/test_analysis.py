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
from regprune.analysis.collect import collect
from regprune.analysis.magnitudes import WEIGHT_TYPES
from regprune.analysis.reference import compare, headline, load_references
from regprune.analysis.runs import runs_frame
from regprune.analysis.settings import effective_config, setting_hash
from regprune.analysis.summary import summarize

REFERENCE = ROOT / "results" / "reference"
VGG_TINY_CHANNELS = 32 + 32 + 64 + 64 + 128 + 128


@pytest.fixture(scope="session")
def tables(tiny_runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tables")
    collect([tiny_runs], out, REFERENCE)
    return out


def metrics_of(root: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(root)): json.loads(p.read_text()) for p in root.rglob("metrics.json")}


def pruned(metrics: dict, regularizer: str, ratio: float, trained_seed: int, seed: int) -> dict:
    """The metrics of the run pruning ``<regularizer>-trained-s<trained_seed>`` at ``ratio`` with ``seed``."""
    (m,) = [m for m in metrics.values() if m["status"] == "complete" and m["regularizer"] == regularizer
            and m.get("prune_ratio") == ratio and m["seed"] == seed
            and m["started_from"].endswith(f"{regularizer}-trained-s{trained_seed}")]
    return m


def half_width(values: list[float]) -> float:
    """95% t half-width by hand: t(n − 1) · s / √n; t(1) = 12.706205 from the printed table."""
    assert len(values) == 2
    return 12.706205 * statistics.stdev(values) / math.sqrt(2)


def test_runs_frame_lists_every_run_and_its_status(tiny_runs):
    runs = runs_frame(tiny_runs)
    assert len(runs) == 13
    assert sorted(runs.status) == ["complete"] * 12 + ["failed"]
    failed = runs[runs.status == "failed"].iloc[0]
    assert failed.run.startswith("fx/doomed-s0-") and "pruning would leave 0 channel" in failed.reason
    l1 = runs[(runs.schedule == "ns") & (runs.regularizer == "l1") & (runs.status == "complete")]
    # ratio, seed and start_from are not in the hash, nor the ignored schedule.train.epochs=160 of the 60% run
    assert len(l1) == 4 and l1.setting.nunique() == 1
    assert list(l1.train_epochs) == [1] * 4  # the epochs the source run trained (its history.csv), not 160
    second = l1[(l1.seed == 1) & l1.started_from.str.endswith("l1-trained-s0")].iloc[0]
    assert second.train_seed == 0  # its model is the one trained with seed 0


def test_summary_counts_one_replicate_per_trained_model(tiny_runs, tables):
    summary = pd.read_csv(tables / "summary.csv")
    metrics = metrics_of(tiny_runs)
    kept = [pruned(metrics, "l1", 0.3, s, s) for s in (0, 1)]
    row = summary[(summary.regularizer == "l1") & (summary.prune_ratio == 0.3)].iloc[0]
    assert row.n == 2 and row.seeds == "0 1" and row.acc_finetuned_final_n == 2
    accs = [m["acc_finetuned_final"] for m in kept]
    assert row.acc_final_mean == pytest.approx(statistics.mean(accs))
    assert row.acc_final_std == pytest.approx(statistics.stdev(accs))
    assert row.acc_final_ci == pytest.approx(half_width(accs), rel=1e-6)
    assert row.acc_pruned_mean == pytest.approx(statistics.mean(m["acc_pruned"] for m in kept))
    assert row.flops_mean == pytest.approx(statistics.mean(m["flops"] for m in kept))
    assert row.pruned_masked_gap_max == 0  # masked and compacted models agree
    (dup,) = pd.read_csv(tables / "duplicates.csv").itertuples()
    second = pruned(metrics, "l1", 0.3, 0, 1)
    assert (dup.train_seed, dup.seed) == (0, 1) and dup.run.endswith(second["run_id"])
    assert dup.duplicate_of.endswith(kept[0]["run_id"])
    assert dup.acc_final_diff == pytest.approx(second["acc_finetuned_final"] - kept[0]["acc_finetuned_final"])
    sixty = summary[summary.prune_ratio == 0.6].iloc[0]
    assert sixty.n == 1 and math.isnan(sixty.acc_final_ci)  # one seed: no interval
    # a row per method × λ × ratio (+ the penalty-trained models and the baseline), failed run left out
    assert len(summary) == 6 and sorted(summary.prune_ratio.fillna(0)) == [0, 0, 0, 0.3, 0.3, 0.6]
    assert list(summary.method[:2]) == ["no penalty (baseline)", "ℓ1 (NS)"] and set(summary.setting_label.fillna(
        "")) == {""}
    assert summary.paper_acc.isna().all()  # digits has no paper row
    assert list(pd.read_csv(tables / "incomplete.csv").status) == ["failed"]


def test_paired_comparisons_with_l1_and_with_the_baseline(tiny_runs, tables):
    summary = pd.read_csv(tables / "summary.csv")
    metrics = metrics_of(tiny_runs)
    row = summary[(summary.regularizer == "tl1") & (summary.prune_ratio == 0.3)].iloc[0]
    tl1 = [pruned(metrics, "tl1", 0.3, s, s) for s in (0, 1)]
    l1 = [pruned(metrics, "l1", 0.3, s, s) for s in (0, 1)]
    for metric, key in (("acc_pruned", "acc_pruned"), ("acc_final", "acc_finetuned_final")):
        d = [a[key] - b[key] for a, b in zip(tl1, l1, strict=True)]
        assert row[f"ref_{metric}_n"] == 2 and row[f"ref_{metric}_diff"] == pytest.approx(statistics.mean(d))
        assert row[f"ref_{metric}_ci"] == pytest.approx(half_width(d), rel=1e-6, abs=1e-9)
        assert row[f"ref_{metric}_sig"] == (abs(statistics.mean(d)) > half_width(d))
    assert row.reference == "l1" and row.ref_lam == pytest.approx(1e-3)
    assert summary[summary.regularizer == "l1"].ref_setting.isna().all()  # no pairing with itself
    base = {m["seed"]: m["acc_trained_final"] for m in metrics.values() if m["regularizer"] == "none"}
    drop = [base[m["seed"]] - m["acc_finetuned_final"] for m in tl1]
    assert row.drop_n == 2 and row.drop_diff == pytest.approx(statistics.mean(drop))
    assert row.baseline_acc == pytest.approx(statistics.mean(base.values())) and row.baseline_n == 2


def test_summary_markdown_states_n_intervals_and_what_was_left_out(tables):
    md = (tables / "summary.md").read_text()
    assert "95% Student-t interval over n training seeds" in md and "n = 1: the single value, no interval" in md
    assert "| ℓ1 (NS) | 0.001 | 30% | 2 | " in md and "| ℓ1 (NS) | 0.001 | 60% | 1 | " in md
    accuracy = md.split("### Accuracy (%)")[1].split("###")[0]
    header = accuracy.strip().splitlines()[0]
    assert header.startswith("| method | λ | ratio | n | trained | right after pruning | masked − compacted (max) |")
    assert "setting" not in header  # every method has one setting here: no column for it
    assert "### Paired with ℓ1 (NS)" in md and "* = the interval excludes 0" in md
    assert "## Runs not averaged (1)" in md and "training seed 0" in md
    assert "Not included (1 runs not complete)" in md and "runs were recorded from a" in md
    assert "latency" not in md.split("###")[-1]  # machine-dependent figures are in machine/timing.md


def test_machine_dependent_figures_are_kept_apart(tiny_runs, tables):
    machine_cols = {"latency_ms", "latency_ms_unpruned", "wall_time_s", "git_commit", "device_name", "host"}
    for name in ("runs", "summary", "duplicates", "kept_channels"):
        columns = set(pd.read_csv(tables / f"{name}.csv").columns)
        assert not {c for c in columns if any(c.startswith(m) for m in machine_cols)}, name
    runs = pd.read_csv(tables / "runs.csv")
    assert set(runs.device) == {"cpu"} and runs.threads.notna().all()  # these can change results: kept
    provenance = pd.read_csv(tables / "machine" / "provenance.csv")
    assert sorted(provenance.run) == sorted(runs.run) and provenance.git_commit.notna().all()
    timing = pd.read_csv(tables / "machine" / "timing.csv")
    with_latency = timing[timing.latency_ms_n > 0]
    assert set(with_latency.prune_ratio.dropna()) == {0.3, 0.6}  # pruned runs measure latency, trained ones not
    assert (with_latency.latency_ms_median > 0).all()
    assert "Latency and wall time (machine-dependent)" in (tables / "machine" / "timing.md").read_text()


def test_settings_of_one_method_are_labelled_by_what_differs(tiny_runs, tmp_path):
    """Two settings of one method (here: another learning rate) are two rows, each labelled by the key that
    differs, never merged; the labels reach the Markdown."""
    for seed in (0, 1):
        copy = tmp_path / "fx" / f"l1-lr-trained-s{seed}"
        shutil.copytree(tiny_runs / "fx" / f"l1-trained-s{seed}", copy)
        config = copy / "config.yaml"
        config.write_text(config.read_text().replace("lr: 0.05", "lr: 0.1", 1))
    out = tmp_path / "tables"
    summary = collect([tiny_runs, tmp_path / "fx"], out, None, histograms=False)["summary"]
    trained = summary[(summary.regularizer == "l1") & (summary.schedule == "train")]
    assert sorted(trained.setting_label) == ["optimizer.lr=0.05", "optimizer.lr=0.1"] and set(trained.n) == {2}
    assert "| ℓ1 (NS) | 0.001 | optimizer.lr=0.1 | – | 2 |" in (out / "summary.md").read_text()


def test_setting_hash_ignores_what_does_not_change_results():
    cfg = {"seed": 0, "run": {"id": "a"}, "model": {"name": "vgg19"}, "regularizer": {"lam": 1e-4},
           "schedule": {"train": {"epochs": 160}, "prune": {"ratio": 0.7}, "start_from": "runs/x-s0"},
           "dataset": {"root": "/data", "eval_batch_size": 1000}}
    same = {**cfg, "seed": 1, "run": {"id": "b"}, "regularizer": {"lam": 1e-5}, "threads": 2,
            "dataset": {"root": "/other", "eval_batch_size": 500},
            "schedule": {"train": {"epochs": 160}, "prune": {"ratio": 0.5}, "start_from": "runs/x-s1"}}
    longer = {**cfg, "schedule": {**cfg["schedule"], "train": {"epochs": 80}}}
    h = lambda c, source=None: setting_hash(effective_config(c, source))  # noqa: E731
    assert h(cfg) == h(same) != h(longer)
    # a run that starts from a trained model did not train: the source's training section counts, not its own
    source = {"schedule": {"train": {"epochs": 80}}}
    assert h(cfg, source) == h(longer, source) == h(longer) != h(cfg)
    # phases after stop_after did not run (the first stage of a two-stage sweep): their settings do not count
    stage = {"schedule": {"name": "ns", "stop_after": "train", "train": {"epochs": 80}, "prune": {"ratio": 0.7},
                          "finetune": {"epochs": 160}}}
    other = {"schedule": {**stage["schedule"], "finetune": {"epochs": 20}}}
    assert h(stage) == h(other) == h({"schedule": {"name": "ns", "train": {"epochs": 80}}})
    assert h(stage) != h({"schedule": {**other["schedule"], "stop_after": "prune"}})
    # GReg's selection ratio is the pruning ratio (its own column): one setting over the ratios
    greg = {"regularizer": {"name": "greg", "ratio": 0.3, "delta": 0.01}, "schedule": {"prune": {"ratio": 0.3}}}
    assert h(greg) == h({"regularizer": {"name": "greg", "ratio": 0.7, "delta": 0.01},
                         "schedule": {"prune": {"ratio": 0.7}}}) != h({**greg, "regularizer": {"ratio": 0.3}})


def test_scratch_control_is_a_column_of_the_run_it_controls(tiny_runs, tmp_path):
    metrics = metrics_of(tiny_runs)
    target = pruned(metrics, "l1", 0.3, 0, 0)
    source = Path(target["run_dir"])
    for name, of, acc in (("scratch-a", target["run_id"], 55.5), ("scratch-b", "no-such-run", 60.0)):
        copy = tmp_path / "fx" / name
        shutil.copytree(source, copy)
        m = json.loads((copy / "metrics.json").read_text())
        m.update(run_id=name, scratch_of=of, acc_finetuned_final=acc)
        (copy / "metrics.json").write_text(json.dumps(m))
    out = tmp_path / "tables"
    summary = collect([tiny_runs, tmp_path], out, None, histograms=False)["summary"]
    row = summary[(summary.regularizer == "l1") & (summary.prune_ratio == 0.3)].iloc[0]
    assert row.acc_scratch_n == 1 and row.acc_scratch_mean == 55.5 and row.n == 2  # controls are no replicates
    assert len(summary) == 6  # no row of their own
    md = (out / "summary.md").read_text()
    header = md.split("### Accuracy (%)")[1].strip().splitlines()[0]
    assert "| fine-tuned | scratch |" in header and "55.50 (n=1)" in md
    assert "scratch control of `no-such-run`, which is not among the collected runs" in md

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
    for (run, stage), part in gamma.groupby(["run", "stage"]):  # exact zeros, counted per model
        model = tiny_runs / run / ("trained.pt" if stage == "trained" else "model.pt")
        assert part.zeros.iloc[0] == int((histograms.gate_gammas(histograms.load_model(model)) == 0).sum())
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
    assert sources.pop("fx/l1-trained-s0") == "fx/l1-trained-s0/magnitudes.jsonl@epoch1"  # magnitude_every=1
    assert len(sources) == 5 and all(source == f"{run}/trained.pt" for run, source in sources.items())  # no record

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
           "prune_ratio": 0.7, "setting": "s", "n": 3, "acc_final_mean": 93.5, "acc_final_ci": 0.5,
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
    assert "12 complete runs -> 6 rows" in proc.stdout and "1 runs not complete were left out" in proc.stdout
    assert "1 runs share a trained model with another run of their row and were not averaged" in proc.stdout
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"runs.csv", "incomplete.csv", "summary.csv", "summary.md", "duplicates.csv", "vs_paper.csv",
                     "kept_channels.csv", "machine"}
    assert {p.name for p in (tmp_path / "machine").iterdir()} == {"timing.csv", "timing.md", "provenance.csv"}
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 12 and not runs.run.str.startswith("/").any()  # paths relative to the collected root
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "collect.py"), str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: not a folder")


def test_analysis_outputs_default_to_ignored_folders():
    """Plain analysis commands never touch committed results: their defaults are git-ignored folders, and so
    are the machine-dependent files next to committed tables."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import collect as collect_script
        import make_figures
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    out = collect_script.arguments().parse_args(["runs"]).out
    figures = make_figures.arguments().parse_args([])
    assert figures.tables == out
    paths = [out / "summary.md", figures.out / "acc_vs_flops_x.png", ROOT / "results" / "digits" / "machine" /
             "timing.md"]
    for path in paths:
        check = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT)
        assert check.returncode == 0, f"{path} is not ignored by git"
    assert subprocess.run(["git", "check-ignore", "-q", str(ROOT / "results" / "digits" / "summary.md")],
                          cwd=ROOT).returncode == 1


def test_a_proximal_update_is_its_own_method(tiny_runs, tmp_path):
    """Same penalty, other optimisation: ``update=prox`` runs are labelled ``<name>-prox``, never averaged
    with (or matched to the paper rows of) the subgradient runs."""
    run = next(p.parent for p in tiny_runs.rglob("metrics.json")
               if json.loads(p.read_text())["regularizer"] == "l1")
    shutil.copytree(run, tmp_path / "fx" / run.name)
    config = tmp_path / "fx" / run.name / "config.yaml"
    config.write_text(config.read_text().replace("update: subgradient", "update: prox"))
    runs = runs_frame(tiny_runs, tmp_path)
    assert sorted(set(runs.regularizer)) == ["l1", "l1-prox", "none", "tl1"]
    assert summarize(runs)[0].regularizer.value_counts()["l1-prox"] == 1


def test_unreadable_run_folder_is_skipped_with_a_note(tmp_path, capsys):
    (tmp_path / "exp" / "broken").mkdir(parents=True)
    (tmp_path / "exp" / "broken" / "metrics.json").write_text("{ truncated")
    runs = runs_frame(tmp_path)
    assert runs.empty and "note: skipping" in capsys.readouterr().err
    assert summarize(runs)[0].empty
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


def test_method_colours_are_stable_and_distinct():
    from regprune.analysis import labels

    listed = list(labels.LABELS)
    assert len({labels.color(m) for m in listed}) == len(listed)  # one colour per listed method
    assert labels.color("tl1-prox") == labels.color("tl1") and labels.style("tl1-prox")["ls"] == "--"
    assert labels.color("none") == "black" and labels.label("tp_ns") == "peer: Torch-Pruning NS"
    unknown = labels.color("a_new_method")
    assert unknown in labels.PALETTE and unknown == labels.color("a_new_method")  # a checksum, not hash()
    assert sorted(["tl1", "none", "l1-prox", "l1"], key=labels.order) == ["none", "l1", "l1-prox", "tl1"]


def test_every_figure_panel_has_axis_labels_and_the_method_colour(tables):
    import matplotlib

    matplotlib.use("Agg")
    from regprune.analysis import labels, plots

    summary = pd.read_csv(tables / "summary.csv")
    summary["setting_label"] = summary.setting_label.astype(object).fillna("")
    gamma = pd.read_csv(tables / "gamma_hist.csv")
    figures = {"acc_vs_flops": plots.acc_vs_flops(summary, "vgg_tiny", "digits"),
               "acc_vs_ratio": plots.acc_vs_ratio(summary, "vgg_tiny", "digits"),
               "gamma": plots.gamma_histograms(gamma, "vgg_tiny", "digits"),
               "kept": plots.kept_channels(pd.read_csv(tables / "kept_channels.csv"), "vgg_tiny", "digits")}
    for name, fig in figures.items():
        axes = [ax for ax in fig.axes if ax.get_visible()]
        assert axes and all(ax.get_xlabel() and ax.get_ylabel() for ax in axes), name
    ratio_panels = {ax.get_title(): ax for ax in figures["acc_vs_ratio"].axes if ax.get_visible()}
    assert sorted(ratio_panels) == ["Tℓ1 λ=0.001", "ℓ1 (NS) λ=0.001"]
    tl1 = [line for line in ratio_panels["Tℓ1 λ=0.001"].get_lines() if line.get_label() == "right after pruning"]
    assert tl1 and matplotlib.colors.same_color(tl1[0].get_color(), labels.color("tl1"))
    for fig in figures.values():
        plots.plt.close(fig)


def test_validation_columns_sit_next_to_test_ones_and_missing_keys_show_as_missing(tiny_runs, tmp_path):
    """Runs that record val_acc_* (a validation split) get a validation table; a run lacking a key counts as
    missing for that figure (n of the cell), never as 0."""
    metrics = metrics_of(tiny_runs)
    for (ratio, seed), values in {(0.3, 0): {"val_acc_pruned": 50.0, "val_acc_finetuned_final": 70.0},
                                  (0.3, 1): {"val_acc_pruned": 60.0}}.items():
        m = pruned(metrics, "l1", ratio, seed, seed)
        copy = tmp_path / "fx" / Path(m["run_dir"]).name
        shutil.copytree(m["run_dir"], copy)
        recorded = {k: v for k, v in m.items() if not k.startswith("val_acc_")}  # only the values set here
        (copy / "metrics.json").write_text(json.dumps({**recorded, **values}))
    for name in ("l1-trained-s0", "l1-trained-s1"):  # the sources the copies started from
        shutil.copytree(tiny_runs / "fx" / name, tmp_path / "fx" / name)
    out = tmp_path / "tables"
    summary = collect([tmp_path], out, None, histograms=False)["summary"]
    row = summary[summary.prune_ratio == 0.3].iloc[0]
    assert row.n == 2 and row.val_acc_pruned_n == 2 and row.val_acc_pruned_mean == 55.0
    assert row.val_acc_finetuned_final_n == 1 and row.val_acc_finetuned_final_mean == 70.0
    md = (out / "summary.md").read_text()
    validation = md.split("### Validation accuracy (%)")[1].split("###")[0]
    assert "| right after pruning | fine-tuned |" in validation and "70.00 (n=1)" in validation
    assert "55.00 ± 63.53" in validation  # 12.706205 · 7.0711 / √2
    assert "| – | – |" in validation  # the penalty-trained models record neither
