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
from itertools import product
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PAPERS = {
    "ns2017": ["ns2017_table1_train", "ns2017_table1", "ns2017_port_train", "ns2017_port"],
    "bui2020": ["bui2020_train", "bui2020"],
    "tang2023": ["tang2023_train", "tang2023"],
    "li2024": ["li2024_train", "li2024"],
    "survey": ["survey_train", "survey"],
    "mini": ["mini_train", "mini"],
}
# title and first paragraph of a paper's summary.md
HEADINGS = {
    "mini": ("Mini reproduction — a smoke run, not a result",
             "`make reproduce-mini` checks the whole pipeline on real data in a few minutes: short training, one "
             "seed, 450 test images (one image = 0.22 points). Its numbers say that every step runs, not how "
             "well a method works."),
}


def compose(overrides: list[str], hydra: bool = False):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from regprune.config import register_schema

    if not GlobalHydra.instance().is_initialized():  # once per process: every run of every sweep is composed
        register_schema()
        initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3")
    return hydra_compose("config", overrides=overrides, return_hydra_config=hydra)


def sweep_jobs(sweep: str, extra: list[str]) -> list[list[str]]:
    """Every job of a sweep config: the cartesian product of its hydra.sweeper.params."""
    params = compose([f"sweep={sweep}", *extra], hydra=True).hydra.sweeper.params
    return [[f"{k}={v}" for k, v in zip(params, values, strict=True)]
            for values in product(*[str(v).split(",") for v in params.values()])]


def job_status(sweep: str, job: list[str], extra: list[str]) -> tuple[Path, str]:
    from regprune.run import run_folder

    folder = run_folder(compose([f"sweep={sweep}", *job, *extra]))
    metrics = folder / "metrics.json"
    status = json.loads(metrics.read_text()).get("status", "running") if metrics.exists() else "missing"
    return folder, status


def run_sweep(sweep: str, extra: list[str], dry_run: bool) -> list[Path]:
    jobs = sweep_jobs(sweep, extra)
    status = [job_status(sweep, job, extra) for job in jobs]
    done = sum(s == "complete" for _, s in status)
    print(f"[reproduce] sweep={sweep}: {len(jobs)} runs, {done} complete, {len(jobs) - done} to run", flush=True)
    if done < len(jobs) and not dry_run:
        cmd = [sys.executable, str(ROOT / "train.py"), f"sweep={sweep}", *extra]
        print("[reproduce] $", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
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
        heading, preface = HEADINGS.get(paper, (f"{paper}: accuracy vs FLOPs", ""))
        subprocess.run([sys.executable, str(ROOT / "scripts" / "collect.py"), *map(str, sorted(set(folders))),
                        "--out", tables, "--heading", heading, "--preface", preface], cwd=ROOT, check=True)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_figures.py"), "--tables", tables,
                        "--out", figures], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
