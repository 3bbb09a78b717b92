"""λ calibration: the selection rule, reading calibration runs (validation metrics only), the written choice."""

from __future__ import annotations

import json
import sys

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, compose
from regprune.analysis.calibrate import Candidate, Rule, choose, read_calibration, selection_rows, write_choice
from regprune.errors import UserError


def cands(*rows):
    return [Candidate("tl1", lam, pruned, finetuned) for lam, pruned, finetuned in rows]


def test_best_pruned_accuracy_among_those_that_keep_the_finetuned_accuracy():
    # 0.04 prunes best but loses 2 points after fine-tuning: excluded; 0.02 is the best of the rest
    c = choose(cands((0.01, 40.0, 99.3), (0.02, 95.0, 98.6), (0.04, 99.0, 97.5)), baseline_val=99.3)
    assert (c.lam, c.eligible, c.at_edge) == (0.02, True, False)
    assert c.val_pruned == 95.0 and c.val_finetuned == 98.6 and c.baseline_val == 99.3


def test_constraint_is_inclusive_and_relative_to_the_baseline():
    rule = Rule(max_drop=1.0)
    assert choose(cands((0.01, 10.0, 99.0), (0.02, 90.0, 98.0)), 99.0, rule).lam == 0.02  # exactly 1 point
    assert choose(cands((0.01, 10.0, 99.0), (0.02, 90.0, 97.99)), 99.0, rule).lam == 0.01


def test_ties_go_to_higher_finetuned_then_smaller_lambda():
    assert choose(cands((0.01, 97.0, 98.5), (0.02, 97.0, 99.0), (0.04, 97.0, 99.0)), 99.0).lam == 0.02
    c = choose(cands((0.01, 97.0, 99.0), (0.02, 97.0, 99.0)), 99.0)
    assert c.lam == 0.01 and c.at_edge


def test_no_lambda_qualifies_takes_the_best_finetuned_and_says_so():
    c = choose(cands((0.01, 12.0, 95.0), (0.02, 99.0, 96.5), (0.04, 99.0, 90.0)), 99.5)
    assert (c.lam, c.eligible) == (0.02, False)


def test_one_method_at_a_time_and_not_empty():
    with pytest.raises(UserError, match="several methods"):
        choose([Candidate("l1", 0.01, 1, 1), Candidate("tl1", 0.01, 1, 1)], 99.0)
    with pytest.raises(UserError, match="no calibration candidates"):
        choose([], 99.0)


def write_run(folder, run_id, name, *, lam=None, ratio=None, val, test, status="complete"):
    """A calibration run folder with validation and (misleading) test accuracies."""
    run = folder / run_id
    run.mkdir(parents=True)
    metrics = {"run_id": run_id, "name": name, "status": status, "lam": lam, **val, **test}
    if ratio is not None:
        metrics["prune_ratio"] = ratio
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def calibration_runs(tmp_path, lams=(0.01, 0.02), status="complete"):
    """The baseline and tl1 at ``lams``: on the validation split the second λ is best; on the test split the
    first would be; plus a run of an older grid's λ, which must be ignored."""
    write_run(tmp_path, "base", "digits-baseline", val={"val_acc_trained_final": 99.0},
              test={"acc_trained_final": 99.5})
    for lam, v_pruned, v_ft, t_pruned in [(lams[0], 60.0, 99.0, 99.9), (lams[1], 97.0, 98.5, 50.0),
                                          (0.5, 99.9, 99.9, 99.9)]:
        write_run(tmp_path, f"p7-{lam}", "digits-tl1", lam=lam, ratio=0.7, val={"val_acc_pruned": v_pruned},
                  test={"acc_pruned": t_pruned}, status=status)
        write_run(tmp_path, f"p5-{lam}", "digits-tl1", lam=lam, ratio=0.5, val={"val_acc_finetuned_final": v_ft},
                  test={"acc_finetuned_final": 99.9})
    return sorted(tmp_path.iterdir())


def test_reads_validation_metrics_only_for_the_current_grid(tmp_path):
    candidates, baseline = read_calibration(calibration_runs(tmp_path), {"tl1": [0.01, 0.02]})
    assert baseline == 99.0
    assert candidates == {"tl1": [Candidate("tl1", 0.01, 60.0, 99.0), Candidate("tl1", 0.02, 97.0, 98.5)]}
    assert choose(candidates["tl1"], baseline).lam == 0.02  # the test split would have said 0.01


def test_incomplete_calibration_is_an_error(tmp_path):
    runs = calibration_runs(tmp_path, status="running")
    with pytest.raises(UserError, match=r"tl1 at λ=0.01 lacks a complete run pruned at \[0.7\]"):
        read_calibration(runs, {"tl1": [0.01, 0.02]})
    with pytest.raises(UserError, match=r"λ=0.04 lacks"):  # a grid value never run
        read_calibration(calibration_runs(tmp_path / "b"), {"tl1": [0.01, 0.02, 0.04]})


def test_missing_validation_metric_is_an_error(tmp_path):
    write_run(tmp_path, "base", "digits-baseline", val={}, test={"acc_trained_final": 99.5})
    with pytest.raises(UserError, match="no val_acc_trained_final"):
        read_calibration([tmp_path / "base"], {})


def test_written_choice_is_what_the_presets_compose(tmp_path):
    """The fragment the rule writes has the layout of the committed ones, which the presets compose."""
    path = write_choice(choose(cands((3.0e-5, 90.0, 99.0)), 99.0), tmp_path, "digits/tl1")
    assert OmegaConf.load(path).regularizer.lam == 3.0e-5  # a float, not the string "3e-05"
    committed = ROOT / "configs" / "_shared" / "digits" / "calibrated"
    for fragment in sorted(committed.glob("*.yaml")):
        assert compose([f"experiment=digits/{fragment.stem}"]).regularizer.lam == \
            OmegaConf.load(fragment).regularizer.lam
    assert compose(["experiment=digits/tp_ns"]).regularizer.lam == OmegaConf.load(committed / "l1.yaml").regularizer.lam


def test_selection_rows_mark_constraint_and_choice():
    candidates = {"tl1": cands((0.04, 99.0, 97.0), (0.01, 50.0, 99.0))}
    choices = {"tl1": choose(candidates["tl1"], 99.0)}
    rows = selection_rows(candidates, choices)
    assert [(r["lam"], r["meets_constraint"], r["chosen"], r["at_edge"]) for r in rows] == [
        (0.01, True, True, True), (0.04, False, False, False)]


def test_script_writes_fragments_and_tables(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import calibrate

    grid = calibrate.preset_grid("digits/tl1")
    runs = tmp_path / "runs"
    calibration_runs(runs, lams=grid[:2])
    for lam in grid[2:]:  # the rest of the grid: fine, but worse right after pruning
        for ratio, val in ((0.7, {"val_acc_pruned": 20.0}), (0.5, {"val_acc_finetuned_final": 99.0})):
            write_run(runs, f"p{ratio}-{lam}", "digits-tl1", lam=lam, ratio=ratio, val=val, test={})
    out, configs = tmp_path / "out", tmp_path / "configs"
    assert calibrate.main([str(runs), "--out", str(out), "--configs", str(configs), "--methods", "tl1"]) == 0
    assert OmegaConf.load(configs / "tl1.yaml").regularizer.lam == grid[1]
    table = (out / "selection.md").read_text()
    assert f"| tl1 | {grid[1]:g} | 97.00 | 98.50 | yes | **yes** |" in table and "| 0.5 |" not in table
    assert calibrate.main([str(tmp_path / "nowhere"), "--methods", "tl1"]) == 2
    assert calibrate.main([str(runs), "--methods", "no_such_method"]) == 2
