"""`make reproduce [PAPER=...]`: run a paper's sweeps (skipping complete runs), then collect tables and figures.

Each paper table is two sweeps: `<table>_train` (baselines and penalty training) and `<table>` (prune each
trained model and fine-tune); ns2017 has two tables, the paper's settings and the public port's. Before
each sweep this prints how many of its runs are complete and how many remain.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PAPERS = {
    "ns2017": ["ns2017_table1_train", "ns2017_table1", "ns2017_port_train", "ns2017_port"],
    "bui2020": ["bui2020_train", "bui2020"],
    "tang2023": ["tang2023_train", "tang2023"],
    "li2024": ["li2024_train", "li2024"],
    "survey": ["survey_train", "survey"],
    "mini": ["mini_train", "mini", "mini_oneshot"],
}


def job_config(sweep: str, job: list[str], extra: list[str]):
    """The composed config of one job (with its source run's settings, as the job will see them) and its
    command-line overrides."""
    from regprune.compose import compose
    from regprune.start_from import inherit_source

    overrides = [f"sweep={sweep}", *job, *extra]
    return inherit_source(compose(overrides)), overrides


def job_status(sweep: str, job: list[str], extra: list[str]) -> tuple[Path, str]:
    from regprune.run import run_folder

    cfg, overrides = job_config(sweep, job, extra)
    folder = run_folder(cfg, overrides=overrides)
    metrics = folder / "metrics.json"
    status = json.loads(metrics.read_text()).get("status", "running") if metrics.exists() else "missing"
    return folder, status


def estimate(configs: list) -> tuple[str, list[str]]:
    """What runs still to do cost, without running them: epochs, image passes and training FLOPs at full width
    (forward 2 × MACs, backward twice that: 6 × MACs per image; pruned fine-tuning costs less), and the
    datasets that are not on disk."""
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
        n = sum(getattr(phase, "epochs", None) or 0 for _, phase in component(cfg.schedule, "schedule").plan())
        key = json.dumps([OmegaConf.to_container(cfg.model, resolve=True), classes, shape])
        if key not in macs:
            model = component(cfg.model, "model", num_classes=classes, in_channels=shape[0])
            macs[key] = count_macs(model, shape)
        epochs, passes, flops = epochs + n, passes + n * images, flops + 6 * macs[key] * n * images
    return (f"{epochs:,} epochs, {passes:,} image passes, at most {flops:.2e} training FLOPs (full width; GPU time "
            "per run is not measured here)"), sorted(missing)


def run_sweep(sweep: str, extra: list[str], dry_run: bool) -> list[Path]:
    from regprune.compose import sweep_jobs

    jobs = sweep_jobs(sweep, extra)
    status = [job_status(sweep, job, extra) for job in jobs]
    done = sum(s == "complete" for _, s in status)
    print(f"[reproduce] sweep={sweep}: {len(jobs)} runs, {done} complete, {len(jobs) - done} to run", flush=True)
    if done < len(jobs):
        cost, missing = estimate([job_config(sweep, job, extra)[0] for job, (_, s) in zip(jobs, status, strict=True)
                                  if s != "complete"])
        print(f"[reproduce]   to run: {cost}", flush=True)
        for line in missing:
            print(f"[reproduce]   missing data: {line}", flush=True)
    if done < len(jobs) and not dry_run:
        cmd = [sys.executable, str(ROOT / "train.py"), f"sweep={sweep}", *extra]
        print("[reproduce] $", " ".join(cmd[1:]), flush=True)
        done = subprocess.run(cmd, cwd=ROOT)
        if done.returncode != 0:  # the sweep printed each failed job's cause and run folder
            sys.exit(done.returncode)
        left = sum(job_status(sweep, job, extra)[1] != "complete" for job in jobs)
        print(f"[reproduce] sweep={sweep}: {len(jobs) - left} of {len(jobs)} complete", flush=True)
    return sorted({folder.parent for folder, _ in status})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--paper", default="all", choices=["all", *PAPERS])
    ap.add_argument("--tables", default=None, help="output folder for tables (default results/tables/<paper>)")
    ap.add_argument("--figures", default=None, help="output folder for figures (default results/figures/<paper>)")
    ap.add_argument("--dry-run", action="store_true", help="only count complete and remaining runs")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. hydra/launcher=slurm")
    args = ap.parse_args()
    from regprune.compose import initialize_once

    initialize_once()
    papers = [p for p in PAPERS if p != "mini"] if args.paper == "all" else [args.paper]
    for paper in papers:
        folders: list[Path] = []
        for stage, sweep in enumerate(PAPERS[paper], 1):
            print(f"[reproduce] {paper}: stage {stage} of {len(PAPERS[paper])}", flush=True)
            folders += run_sweep(sweep, args.overrides, args.dry_run)
        if args.dry_run:
            continue
        tables = args.tables or str(ROOT / "results" / "tables" / paper)
        figures = args.figures or str(ROOT / "results" / "figures" / paper)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "collect.py"), *map(str, sorted(set(folders))),
                        "--out", tables], cwd=ROOT, check=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_figures.py"), "--tables", tables,
                        "--out", figures], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
