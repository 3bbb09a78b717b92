"""`make reproduce [PAPER=...]`: run a paper's sweeps (skipping complete runs), then collect tables and figures.

Each paper table is two sweeps: `<table>_train` (baselines and penalty training) and `<table>` (prune each
trained model and fine-tune); ns2017 has two tables, the paper's settings and the public port's. Before
each sweep this prints how many of its runs are complete and how many remain.

`--paper digits` (`make reproduce-digits`) first calibrates λ: each method's grid (in its preset) is trained at a
calibration seed and pruned at 50/70% (sweeps digits_calibration_train, digits_calibration), scripts/calibrate.py
picks λ on the validation split, then the final sweeps (digits_train, digits) run every method at its λ, the
one-stage sweep digits_oneshot the methods that choose their own pruning (OTO, Gate Decorator; λ provisional), the
one-stage sweep digits_greg GReg at each ratio (its training depends on the ratio), and the controls: multi-pass
slimming and EagleEye from the final trained models (digits_multipass, digits_eagleeye) and the scratch retraining
of every final ℓ1 run. `--paper mini` is the smoke version of the same pipeline: each grid reduced to the
calibrated λ, one seed, the calibration's trained models reused by the final sweep. `--jobs N` runs a sweep's jobs
in N local processes (one run after another in each; the digits presets use one thread per run).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from regprune.compose import compose, initialize_once, sweep_jobs

ROOT = Path(__file__).resolve().parents[1]


PAPERS = {
    "ns2017": ["ns2017_table1_train", "ns2017_table1", "ns2017_port_train", "ns2017_port"],
    "bui2020": ["bui2020_train", "bui2020"],
    "tang2023": ["tang2023_train", "tang2023"],
    "li2024": ["li2024_train", "li2024"],
    "survey": ["survey_train", "survey"],
}
# title and first paragraph of a reproduction's summary.md
HEADINGS = {
    "mini": ("Mini reproduction — a smoke run, not a result",
             "`make reproduce-mini` runs the digits pipeline with each method at its calibrated λ, one seed (n = 1, "
             "no intervals), the calibration's trained models reused: it checks that every step runs, not how well "
             "a method works. The evidence is `make reproduce-digits` (results/digits/)."),
    "digits": ("Digits benchmark: accuracy vs FLOPs",
               "`make reproduce-digits`: λ chosen on the validation split, three seeds, mean and 95% Student-t "
               "interval (results/digits/PROTOCOL.md; the reading is results/digits/README.md)."),
}


@dataclass(frozen=True)
class Calibrated:
    """A reproduction whose λ are chosen first: per-method calibration sweeps, the selection, final sweeps."""

    calibration: tuple[str, str] = ("digits_calibration_train", "digits_calibration")
    final: tuple[str, str] = ("digits_train", "digits")
    own_ratio: str = "digits_oneshot"  # one stage: methods that choose their own pruning (OTO, Gate Decorator)
    per_ratio: str = "digits_greg"  # one stage per ratio: a method whose training depends on the ratio (GReg)
    experiment: str = "digits"  # run folder of the final sweeps (the calibration's is set by its sweeps)
    smoke: bool = False  # each grid reduced to the calibrated λ, one seed (0), trained models shared
    controls: tuple[str, ...] = ("digits_multipass", "digits_eagleeye")  # sweeps after the final ones
    scratch: tuple[str, str] = ("digits/l1", "digits/scratch_l1")  # each final run of a method, and its control


CALIBRATED = {"digits": Calibrated(), "mini": Calibrated(experiment="mini", smoke=True)}


def job_config(spec: list[str]):
    """The composed config of one run (a full override list: ``sweep=...``, the job's values, extras), with its
    source run's settings as the run will see them."""
    from regprune.start_from import inherit_source

    return inherit_source(compose(spec), spec)


def job_status(spec: list[str]) -> tuple[Path, str]:
    """(run folder, status) of the run that a full override list makes."""
    from regprune.run import run_folder

    folder = run_folder(job_config(spec), overrides=spec)
    metrics = folder / "metrics.json"
    status = json.loads(metrics.read_text()).get("status", "running") if metrics.exists() else "missing"
    return folder, status


def estimate(configs: list, planned: dict[str, int] | None = None) -> tuple[str, list[str]]:
    """What runs still to do cost, without running them: epochs, image passes and training FLOPs at full width
    (forward 2 × MACs, backward twice that: 6 × MACs per image; pruned fine-tuning costs less), and the
    datasets that are not on disk. ``planned``: the epochs of source runs not made yet (scratch controls train
    as many as their source)."""
    from omegaconf import OmegaConf

    from regprune.cost import count_macs
    from regprune.run import component

    epochs = passes = flops = 0
    missing: set[str] = set()
    macs: dict[str, int] = {}
    for cfg in configs:
        dataset = component(cfg.dataset, "dataset")
        if dataset.missing():
            missing.add(dataset.missing())
        images, classes, shape = dataset.sizes()
        n = sum(phase_epochs(phase, planned or {}) for _, phase in component(cfg.schedule, "schedule").plan())
        key = json.dumps([OmegaConf.to_container(cfg.model, resolve=True), classes, shape])
        if key not in macs:
            model = component(cfg.model, "model", num_classes=classes, in_channels=shape[0])
            macs[key] = count_macs(model, shape)
        epochs, passes, flops = epochs + n, passes + n * images, flops + 6 * macs[key] * n * images
    return (f"{epochs:,} epochs, {passes:,} image passes, at most {flops:.2e} training FLOPs (full width; GPU time "
            "per run is not measured here)"), sorted(missing)


def phase_epochs(phase, planned: dict[str, int]) -> int:
    """Epochs a phase will train; a scratch phase without its own count trains as many as its source run did
    (read from the source once it is complete, else the source's ``planned`` epochs)."""
    from regprune.engine.phases.scratch import source_epochs
    from regprune.errors import UserError

    epochs = getattr(phase, "epochs", None)
    if epochs is not None or not getattr(phase, "source", None):
        return epochs or 0
    try:
        return source_epochs(Path(phase.source))
    except UserError:
        return planned.get(phase.source, 0)


def total_epochs(cfg) -> int:
    """Epochs a run trains over its whole schedule, the phases a ``start_from`` source ran included."""
    from regprune.run import component

    return sum(getattr(phase, "epochs", None) or 0 for _, phase in component(cfg.schedule, "schedule").all_phases())


def replaced(jobs: list[list[str]], values: dict[str, str]) -> list[list[str]]:
    """Jobs with the given keys set to one value (e.g. every seed to 0), duplicates removed, order kept."""
    out: list[list[str]] = []
    for job in jobs:
        job = [f"{k}={values[k]}" if k in values else f"{k}={v}" for k, v in (o.split("=", 1) for o in job)]
        if job not in out:
            out.append(job)
    return out


def run_sweep(sweep: str, extra: list[str], dry_run: bool, workers: int = 0) -> list[Path]:
    """Run a sweep's incomplete jobs through Hydra's launcher (``train.py sweep=...``), or with ``workers`` > 0
    in that many local processes."""
    specs = [[f"sweep={sweep}", *job, *extra] for job in sweep_jobs(sweep, extra)]
    if workers:
        return run_specs(f"sweep={sweep}", specs, dry_run, workers)
    status = report(f"sweep={sweep}", specs)
    if any(s != "complete" for _, s in status) and not dry_run:
        cmd = [sys.executable, str(ROOT / "train.py"), f"sweep={sweep}", *extra]
        print("[reproduce] $", " ".join(cmd[1:]), flush=True)
        done = subprocess.run(cmd, cwd=ROOT)
        if done.returncode != 0:  # the sweep printed each failed job's cause and run folder
            sys.exit(done.returncode)
        check_complete(f"sweep={sweep}", specs)
    return sorted({folder.parent for folder, _ in status})


def run_specs(label: str, specs: list[list[str]], dry_run: bool, workers: int,
              planned: dict[str, int] | None = None) -> list[Path]:
    """Run the incomplete ones of these runs (full override lists) in ``workers`` local processes."""
    status = report(label, specs, planned)
    todo = [spec for spec, (_, s) in zip(specs, status, strict=True) if s != "complete"]
    if todo and not dry_run:
        run_local(todo, max(workers, 1))
        check_complete(label, specs)
    return sorted({folder.parent for folder, _ in status})


def report(label: str, specs: list[list[str]], planned: dict[str, int] | None = None) -> list[tuple[Path, str]]:
    """Print how many of these runs are complete and what the others cost (``planned``: see ``estimate``); return
    each one's (folder, status)."""
    status = [job_status(spec) for spec in specs]
    done = sum(s == "complete" for _, s in status)
    print(f"[reproduce] {label}: {len(specs)} runs, {done} complete, {len(specs) - done} to run", flush=True)
    if done < len(specs):
        cost, missing = estimate([job_config(spec) for spec, (_, s) in zip(specs, status, strict=True)
                                  if s != "complete"], planned)
        print(f"[reproduce]   to run: {cost}", flush=True)
        for line in missing:
            print(f"[reproduce]   missing data: {line}", flush=True)
    return status


def check_complete(label: str, specs: list[list[str]]) -> None:
    left = sum(job_status(spec)[1] != "complete" for spec in specs)
    print(f"[reproduce] {label}: {len(specs) - left} of {len(specs)} complete", flush=True)
    if left:
        sys.exit(f"error: {label} left {left} run(s) incomplete")


def run_job(overrides: list[str]) -> tuple[list[str], str | None, float]:
    """One run in this process (a worker of ``run_local``): (its overrides, the error or None, seconds)."""
    from regprune.errors import UserError
    from regprune.run import run

    t0 = time.perf_counter()
    try:
        run(compose(overrides), overrides)
        return overrides, None, time.perf_counter() - t0
    except UserError as e:
        return overrides, str(e), time.perf_counter() - t0
    except Exception as e:  # a crash of one run is reported; the other runs go on
        return overrides, f"{type(e).__name__}: {e}", time.perf_counter() - t0


def run_local(jobs: list[list[str]], workers: int) -> None:
    """Run jobs in ``workers`` local processes, each taking the next job when it finishes one; a failed job is
    printed with its overrides and error, and the others go on."""
    with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        for i, (job, error, seconds) in enumerate(pool.imap_unordered(run_job, jobs), 1):
            label = " ".join(o for o in job if not o.startswith("sweep="))
            print(f"[reproduce] {i}/{len(jobs)} {'failed' if error else 'done'} in {seconds:.0f}s: {label}"
                  + (f"\n  error: {error}" if error else ""), flush=True)


def grid_methods(sweep: str) -> list[str]:
    """The experiments of a final train sweep, in order: the baseline and every method with a λ grid."""
    params = compose([f"sweep={sweep}"], hydra=True).hydra.sweeper.params
    return str(params.experiment).split(",")


def has_grid(experiment: str) -> bool:
    return "regularizer.lam" in (compose([f"experiment={experiment}"], hydra=True).hydra.sweeper.get("params") or {})


def reproduce_calibrated(name: str, plan: Calibrated, args) -> list[Path]:
    """Calibration sweeps per method → λ selection → final sweeps, then the own-ratio sweep (its λ provisional, not
    calibrated); returns the final runs' folders."""
    seeds = {"seed": "0"} if plan.smoke else {}
    extra = [*args.overrides, *([f"run.experiment={plan.experiment}"] if plan.smoke else [])]
    experiments = grid_methods(plan.final[0])
    calibrated = [e for e in experiments if has_grid(e)]
    reference = [e for e in experiments if e.endswith("/baseline")]
    for stage, sweep in enumerate(plan.calibration, 1):
        specs = []
        for experiment in (reference if stage == 1 else []) + calibrated:
            job_extra = [f"experiment={experiment}", *extra]
            jobs = replaced(sweep_jobs(sweep, job_extra), seeds)
            if plan.smoke:  # the grid reduced to the calibrated λ
                lam = compose([f"experiment={experiment}"]).regularizer.get("lam")
                jobs = [j for j in jobs if all(float(o.split("=", 1)[1]) == lam for o in j
                                               if o.startswith("regularizer.lam="))]
            specs += [[f"sweep={sweep}", *job, *job_extra] for job in jobs]
        run_specs(f"{name}: calibration stage {stage} of 2 (sweep={sweep}, one call per method)", specs,
                  args.dry_run, args.jobs)
    if not args.dry_run:
        calibration_runs = run_folder_root(plan.calibration[1], [f"experiment={calibrated[0]}", *extra])
        configs = calibration_runs / "calibrated" if plan.smoke else None  # smoke: leave the committed λ alone
        out = Path(args.tables or ROOT / "results" / name) / "calibration"
        cmd = [sys.executable, str(ROOT / "scripts" / "calibrate.py"), str(calibration_runs), "--out", str(out),
               "--methods", *(e.rpartition("/")[2] for e in calibrated), *(["--configs", str(configs)] if configs
                                                                            else [])]
        subprocess.run(cmd, cwd=ROOT, check=True)
    if args.calibrate_only:
        return []
    folders: list[Path] = []
    for stage, sweep in enumerate(plan.final, 1):
        specs = stage_specs(sweep, extra, seeds)
        folders += run_specs(f"{name}: final stage {stage} of 2 (sweep={sweep})", specs, args.dry_run, args.jobs)
    controls, planned = control_specs(plan, specs, extra, seeds)  # specs: final stage 2's runs
    specs = stage_specs(plan.own_ratio, extra, seeds)
    folders += run_specs(f"{name}: own-ratio methods, one stage (sweep={plan.own_ratio}, provisional λ)", specs,
                         args.dry_run, args.jobs)
    specs = stage_specs(plan.per_ratio, extra, seeds)
    folders += run_specs(f"{name}: one stage per ratio (sweep={plan.per_ratio}: GReg, not calibrated)", specs,
                         args.dry_run, args.jobs)
    folders += run_specs(f"{name}: controls ({', '.join(f'sweep={s}' for s in plan.controls)}, "
                         f"experiment={plan.scratch[1]})", controls, args.dry_run, args.jobs, planned)
    return folders


def stage_specs(sweep: str, extra: list[str], seeds: dict[str, str]) -> list[list[str]]:
    """The full override lists of a sweep's jobs (seeds replaced: the smoke run's single seed), extras last."""
    return [[f"sweep={sweep}", *job, *extra] for job in replaced(sweep_jobs(sweep, extra), seeds)]


def control_specs(plan: Calibrated, final: list[list[str]], extra: list[str],
                  seeds: dict[str, str]) -> tuple[list[list[str]], dict[str, int]]:
    """The runs of the controls: every job of ``plan.controls`` (seeds replaced as in the final sweeps), and the
    scratch control (``plan.scratch[1]``) of each ``final`` run (stage-2 override lists) of the method
    ``plan.scratch[0]``, same seed, that run's folder as its source; with the epochs each source is planned to
    train (the scratch control trains as many)."""
    specs = [spec for sweep in plan.controls for spec in stage_specs(sweep, extra, seeds)]
    method, control = plan.scratch
    planned = {}
    for spec in final:
        if f"experiment={method}" in spec:
            source = str(job_status(spec)[0])
            planned[source] = total_epochs(job_config(spec))
            specs.append([f"experiment={control}", *(o for o in spec if o.startswith("seed=")),
                          f"schedule.retrain.source={source}", *extra])
    return specs, planned


def run_folder_root(sweep: str, extra: list[str]) -> Path:
    """The folder that holds a sweep's runs (<run.root>/<run.experiment>)."""
    cfg = compose([f"sweep={sweep}", *extra])
    return Path(cfg.run.root) / cfg.run.experiment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--paper", default="all", choices=["all", *PAPERS, *CALIBRATED])
    ap.add_argument("--tables", default=None, help="output folder for tables (default results/tables/<paper>; "
                    "digits: results/digits; mini: outputs/mini)")
    ap.add_argument("--figures", default=None, help="output folder for figures (default results/figures/<paper>; "
                    "digits: results/digits/figures; mini: outputs/mini/figures)")
    ap.add_argument("--jobs", type=int, default=0, help="run sweeps in this many local processes "
                    "(default 0: through Hydra's launcher)")
    ap.add_argument("--dry-run", action="store_true", help="only count complete and remaining runs")
    ap.add_argument("--calibrate-only", action="store_true", help="digits/mini: stop after choosing λ")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. hydra/launcher=slurm")
    args = ap.parse_args()
    initialize_once()
    papers = list(PAPERS) if args.paper == "all" else [args.paper]
    for paper in papers:
        if paper in CALIBRATED:
            folders = reproduce_calibrated(paper, CALIBRATED[paper], args)
            default = ROOT / ("outputs" if CALIBRATED[paper].smoke else "results") / paper  # a smoke run: not committed
            tables, figures = args.tables or str(default), args.figures or str(default / "figures")
        else:
            folders = []
            for stage, sweep in enumerate(PAPERS[paper], 1):
                print(f"[reproduce] {paper}: stage {stage} of {len(PAPERS[paper])}", flush=True)
                folders += run_sweep(sweep, args.overrides, args.dry_run, args.jobs)
            tables = args.tables or str(ROOT / "results" / "tables" / paper)
            figures = args.figures or str(ROOT / "results" / "figures" / paper)
        if args.dry_run or args.calibrate_only:
            continue
        heading, preface = HEADINGS.get(paper, (f"{paper}: accuracy vs FLOPs", ""))
        subprocess.run([sys.executable, str(ROOT / "scripts" / "collect.py"), *map(str, sorted(set(folders))),
                        "--out", tables, "--heading", heading, "--preface", preface], cwd=ROOT, check=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_figures.py"), "--tables", tables,
                        "--out", figures], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
