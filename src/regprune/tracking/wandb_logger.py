"""Weights & Biases sink, offline-first: W&B files live in the run folder, nothing asks for a login.

``logger=wandb`` writes ``<run_dir>/wandb/offline-run-*`` and prints its path at the end (view it without an
account with ``wandb leet <path>``; upload later with ``wandb login`` then ``wandb sync <path>``);
``logger.mode=online`` streams to the server when credentials exist and falls back to offline
otherwise. One W&B run per regprune run: the run id is the W&B id and ``resume="allow"``, so
``resume=auto`` continues the same W&B run. W&B is a mirror of the run folder: any W&B failure
(missing package, init error, a full disk) prints one warning and training continues.
"""

from __future__ import annotations

import math
import os
import struct
import sys
from pathlib import Path

import numpy as np

from .sinks import NullLogger

MODES = ("offline", "online", "disabled")

# summary key -> metrics.json keys, first present wins
SUMMARY_KEYS = {
    "final/acc": ("acc_finetuned_final", "acc_recalibrated", "acc_pruned", "acc_trained_final"),
    "final/acc_best": ("acc_finetuned_best", "acc_trained_best"),
    "final/params": ("params",),
    "final/macs": ("macs",),
    "final/flops": ("flops",),
    "final/latency_ms": ("latency_ms",),
    "final/flops_reduction": ("flops_reduction",),
    "final/params_reduction": ("params_reduction",),
    "prune/ratio": ("prune_ratio",),
    "prune/channels_pruned_ratio": ("channels_pruned_ratio",),
    "prune/acc_pruned": ("acc_pruned",),
    "prune/threshold": ("prune_threshold",),
    "train/acc_final": ("acc_trained_final",),
    "unpruned/params": ("params_unpruned",),
    "unpruned/flops": ("flops_unpruned",),
    "wall_time_s": ("wall_time_s",),
}


def summary_from_metrics(metrics: dict) -> dict:
    """The W&B summary of a finished run: the named keys above plus every other scalar metric as is."""
    out = {}
    for key, sources in SUMMARY_KEYS.items():
        value = next((metrics[s] for s in sources if metrics.get(s) is not None), None)
        if value is not None:
            out[key] = value
    for k, v in metrics.items():
        if isinstance(v, bool | int | float | str) and k not in out and not k.startswith("provenance"):
            out[k] = v
    return out


class WandbLogger(NullLogger):
    """Mirror a run into W&B. ``group``/``job_type`` override what the run passes (experiment/schedule)."""

    def __init__(self, project: str = "regprune", entity: str | None = None, mode: str = "offline",
                 group: str | None = None, job_type: str | None = None, tags: list[str] | None = None,
                 notes: str | None = None, histogram_bins: int = 64):
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: choose from {list(MODES)}")
        if not project or "/" in project:
            raise ValueError(f"project={project!r} must be a non-empty name without '/'")
        if histogram_bins < 1 or histogram_bins > 512:
            raise ValueError(f"histogram_bins={histogram_bins} must be in [1, 512] (W&B's limit)")
        self.project, self.entity, self.mode, self.group, self.job_type = project, entity, mode, group, job_type
        self.extra_tags, self.notes, self.bins = list(tags or []), notes, histogram_bins
        self.run = None
        self.step = 0
        self.warned = False

    # -- failure handling --------------------------------------------------------------------------
    def _fail(self, action: str, e: BaseException) -> None:
        """Warn once on stderr; W&B stays off for the rest of the run, local records continue."""
        if not self.warned:
            print(f"warning: W&B {action} failed ({type(e).__name__}: {e}); continuing with local records only",
                  file=sys.stderr)
            self.warned = True
        run, self.run = self.run, None
        if run is not None and action != "finish":
            try:
                run.finish(exit_code=1)
            except Exception:
                pass

    def _call(self, action: str, fn) -> None:
        if self.run is None:
            return
        try:
            fn(self.run)
        except Exception as e:
            self._fail(action, e)

    # -- NullLogger interface ----------------------------------------------------------------------
    def start(self, run_dir: Path, run_id: str, config: dict, group: str, job_type: str,
              tags: list[str]) -> None:
        if self.mode == "disabled":
            return
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            import wandb

            mode = self.mode
            if mode == "online" and not wandb.login(prompt=False, verify=False):
                print("warning: logger.mode=online but no W&B credentials (set WANDB_API_KEY or run `wandb "
                      "login`); logging offline", file=sys.stderr)
                mode = "offline"
            settings = wandb.Settings(mode=mode, silent=True, console="off", x_disable_stats=True,
                                      disable_git=True, save_code=False, login_timeout=0)
            self.run = wandb.init(project=self.project, entity=self.entity, dir=str(run_dir), id=run_id,
                                  name=run_id, resume="allow", group=self.group or group,
                                  job_type=self.job_type or job_type, tags=[*tags, *self.extra_tags],
                                  notes=self.notes, config=config, settings=settings, reinit="finish_previous")
        except Exception as e:
            self._fail("init", e)

    def log(self, metrics: dict, step: int | None = None) -> None:
        if step is not None:
            self.step = max(self.step, step)
        self._call("log", lambda run: run.log(metrics, step=self.step))

    def histogram(self, name: str, values, step: int | None = None) -> None:
        if step is not None:
            self.step = max(self.step, step)

        def log(run):
            import wandb

            v = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=np.float64).ravel()
            v = v[np.isfinite(v)]
            if v.size:
                counts, edges = np.histogram(v, bins=self.bins)
                run.log({name: wandb.Histogram(np_histogram=(counts, edges))}, step=self.step)

        self._call("histogram", log)

    def table(self, name: str, columns: list[str], rows: list[list]) -> None:
        def log(run):
            import wandb

            run.log({name: wandb.Table(columns=list(columns), data=[list(r) for r in rows])}, step=self.step)

        self._call("table", log)

    def summary(self, metrics: dict) -> None:
        def update(run):
            for k, v in summary_from_metrics(metrics).items():
                if not (isinstance(v, float) and not math.isfinite(v)):
                    run.summary[k] = v

        self._call("summary", update)

    def finish(self, status: str) -> None:
        folder = Path(self.run.dir).parent if self.run is not None and self.run.settings.mode == "offline" else None
        self._call("finish", lambda run: run.finish(exit_code=0 if status == "complete" else 1))
        self.run = None
        if folder is not None:
            print(f"W&B offline run: {folder}\n  look at it without an account: wandb leet {folder}\n"
                  f"  upload it: wandb login, then wandb sync {folder}", flush=True)


# -- reading offline runs back (tests, checks before `wandb sync`) -------------------------------------
BLOCK = 32768  # the .wandb file is a LevelDB-style log of protobuf Records in 32 KiB blocks
HEADER = 7  # ":W&B" + magic 0xBEE1 + version byte; chunk header: crc32 (4) + length (2) + type (1)


def offline_records(path: str | Path):
    """Yield the ``wandb.proto`` Records of an offline run's ``run-<id>.wandb`` file."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log")
    pos, buf = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if pos + HEADER + length > len(data):  # a file still being written ends mid-chunk
            return
        chunk, pos = data[pos + HEADER:pos + HEADER + length], pos + HEADER + length
        buf = chunk if kind in (1, 2) else buf + chunk  # 1 full, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


def read_offline_run(run_dir: str | Path) -> dict:
    """Run metadata, config, summary and history of one ``offline-run-*`` folder (or its .wandb file)."""
    import json

    path = Path(run_dir)
    files = [path] if path.is_file() else sorted(path.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {path}")
    out: dict = {"id": None, "project": None, "group": None, "job_type": None, "tags": [], "config": {},
                 "summary": {}, "history": [], "exit_code": None}

    def key(item) -> str:
        return "/".join(item.nested_key) if item.nested_key else item.key

    for record in offline_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            out.update(id=r.run_id, project=r.project, group=r.run_group, job_type=r.job_type, tags=list(r.tags))
            out["config"].update({u.key: json.loads(u.value_json) for u in r.config.update})
        elif kind == "config":
            out["config"].update({key(u): json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            out["history"].append({key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            out["summary"].update({key(u): json.loads(u.value_json) for u in record.summary.update})
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out
