"""The report that ends a sweep: where each run went, and each failed job's cause first.

``hydra/launcher=sequential`` (the default for ``-m``), ``local`` and ``slurm`` are Hydra's basic launcher and
hydra-submitit-launcher's local and Slurm launchers with this report added (``Reporting``; the classes live in
``hydra_plugins.regprune_launchers``, where Hydra accepts launchers). A job that fails returns its error to the
launcher (``regprune.cli.execute`` re-raises it in a multirun), so every job runs, and the sweep then prints one
``error:`` line per failed job (cause, job, run folder) and exits 2 instead of a traceback.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus

from .errors import UserError


def swept(job_overrides: Sequence[Sequence[str]]) -> list[list[str]]:
    """Each job's overrides that differ between jobs (all of them for a single job)."""
    if len(job_overrides) < 2:
        return [list(o) for o in job_overrides]
    common = set(job_overrides[0]).intersection(*job_overrides[1:])
    return [[o for o in job if o not in common] for job in job_overrides]


def job_folder(result: JobReturn) -> Path | None:
    """The run folder of a job (computed again from its config where the job failed before reporting it)."""
    if result.status == JobStatus.COMPLETED and isinstance(result._return_value, dict):
        return Path(result._return_value["run_dir"])
    try:
        from .run import run_folder
        from .start_from import inherit_source

        return run_folder(inherit_source(result.cfg, result.overrides), overrides=result.overrides)
    except Exception:  # the job's config itself is what failed
        return None


def cause(error: BaseException) -> str:
    if isinstance(error, UserError):
        return str(error)
    return f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"


def report(results: Sequence[JobReturn], job_overrides: Sequence[Sequence[str]], first: int) -> None:
    """Print each failed job's cause, job and run folder (stderr), then where every run went (stdout);
    exit 2 if a job failed."""
    labels = [" ".join(o) for o in swept(job_overrides)]
    folders = [job_folder(r) for r in results]
    failed = [i for i, r in enumerate(results) if r.status != JobStatus.COMPLETED]
    for i in failed:
        error = results[i]._return_value
        print(f"error: job #{first + i} ({labels[i]}) failed: {cause(error)}; run folder: "
              f"{folders[i] or 'not created'}", file=sys.stderr)
    for i in failed:
        error = results[i]._return_value
        if not isinstance(error, UserError) and error.__traceback__ is not None:
            traceback.print_exception(error, file=sys.stderr)
    roots = {f.parent for f in folders if f is not None}
    where = f" in {roots.pop()}" if len(roots) == 1 else ""
    print(f"[sweep] {len(results)} runs{where}, {len(results) - len(failed)} complete, {len(failed)} failed:",
          flush=True)
    for i, folder in enumerate(folders):
        print(f"  #{first + i} {'failed  ' if i in failed else 'complete'} {folder or '(no folder)'}", flush=True)
    if failed:
        sys.exit(UserError.exit_code)


def died(error: Exception) -> str:
    """The last line a submitit job wrote to stderr before dying without a result (killed, out of memory)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip() and not ln.startswith("---")]
    return lines[-1] if lines else type(error).__name__


class Reporting:
    """Mixin: run the jobs with the parent launcher, then report (and exit 2 on a failed job)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        try:
            results = super().launch(job_overrides, initial_job_idx)
        except Exception as e:  # submitit: a job ended without returning (it was killed, or ran out of memory)
            if type(e).__module__.startswith("submitit"):
                print(f"error: a job of the sweep died without a result: {died(e)} ({str(e).splitlines()[0]})",
                      file=sys.stderr)
                sys.exit(UserError.exit_code)
            raise
        report(results, job_overrides, initial_job_idx)
        return results
