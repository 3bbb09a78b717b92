"""One run across several processes with torch.distributed: ``torchrun --nproc_per_node=N train.py ...`` or
Slurm tasks (``hydra/launcher=slurm hydra.launcher.tasks_per_node=N``).

Every rank runs the same plan on the same model. ``DistributedDataParallel`` all-reduces the gradients, so
the penalties, applied after backward / after the optimizer step on identical gradients and weights, keep
the weights (γ included) bit-identical across ranks. What a single rank decides (pruning masks, the
checkpoint to resume from, whether the run folder may be used) is decided by rank 0 and broadcast
(``on_main``); only rank 0 writes the run folder and talks to loggers. The helpers here are no-ops in a
single process, so the engine calls them unconditionally.
"""

from __future__ import annotations

import io
import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from .errors import UserError

BACKENDS = ("auto", "gloo", "nccl")
T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank ``rank`` of ``size`` (``local_rank`` on its node)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


SINGLE = World()  # a run in one process


def world_from_env(env: dict[str, str] | None = None) -> World:
    """The world torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK), else the Slurm tasks of the job step
    (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID), else a single process."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        return World(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    if int(env.get("SLURM_NTASKS", 1)) > 1 and "SLURM_PROCID" in env:
        return World(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)))
    return SINGLE


def start(backend: str, timeout_s: float, device: torch.device) -> World:
    """Join the job's process group (nothing to do in a single process). A collective that waits longer than
    ``timeout_s`` (a rank died or hangs) raises instead of hanging."""
    world = world_from_env()
    if world.size == 1 or dist.is_initialized():
        return world
    if "MASTER_ADDR" not in os.environ:  # Slurm tasks without torchrun: submitit knows the first node
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=world.rank, world_size=world.size, timeout=timedelta(seconds=timeout_s),
                            device_id=device if device.type == "cuda" else None)
    if "TORCHELASTIC_RUN_ID" in os.environ:  # (under Slurm, submitit handles SIGTERM: preemption and requeue)
        signal.signal(signal.SIGTERM, stopped_by_launcher)
    return world


def stopped_by_launcher(signum: int, frame) -> None:
    """torchrun stops every rank with SIGTERM once one has failed: fail like a broken collective does (the run
    records its failure and keeps its checkpoint) instead of dying mid-write."""
    raise UserError(f"a process of this run stopped (this one received {signal.Signals(signum).name} from the "
                    "launcher); resume=auto continues from the last checkpoint")


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def on_main(decide: Callable[[], T]) -> T:
    """``decide()`` run on rank 0 and its result (or its UserError) given to every rank."""
    if not active():
        return decide()
    outcome = None
    if is_main():
        try:
            outcome = (decide(), None)
        except UserError as e:
            outcome = (None, e)
    result, error = broadcast(outcome)
    if error is not None:
        raise error
    return result


def broadcast(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (pickled by ``torch.save``, so tensors inside travel too)."""
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    data = b""
    if is_main():
        buf = io.BytesIO()
        torch.save(obj, buf)
        data = buf.getvalue()
    size = torch.tensor([len(data)], device=device)
    dist.broadcast(size, src=0)
    payload = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device) if is_main() else \
        torch.empty(int(size.item()), dtype=torch.uint8, device=device)
    dist.broadcast(payload, src=0)
    return torch.load(io.BytesIO(payload.cpu().numpy().tobytes()), weights_only=False)  # from rank 0 of this job


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over ranks (``t`` itself in a single process)."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def sync_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BN running statistics): each rank updated its own from its share of
    the last batch, so after it the ranks evaluate identically."""
    if active():
        for b in model.buffers():
            dist.broadcast(b, src=0)


def data_parallel(model: nn.Module, device: torch.device, sync_bn: bool) -> nn.Module:
    """``model`` wrapped in DDP (its BNs turned into SyncBatchNorm in place with ``sync_bn``: γ, β and the
    running statistics stay the same tensors, and compaction rebuilds plain BNs)."""
    if sync_bn:
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces the children in place (the root is no BN)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def shard_positions(n: int, batch_size: int, rank: int, world: int) -> torch.Tensor:
    """Positions (into an epoch's order of ``n`` images) that rank ``rank`` of ``world`` reads: its contiguous
    ``batch_size // world`` share of every global batch of ``batch_size``, and of a last partial batch an equal
    share too (the last ``n % batch_size % world`` images of the epoch are left out so every rank's share is
    equal; DDP averages the ranks' gradients, so equal shares make it the global batch's mean)."""
    per = batch_size // world
    full = n // batch_size
    body = (torch.arange(full) * batch_size + rank * per)[:, None] + torch.arange(per)
    last = (n - full * batch_size) // world
    tail = full * batch_size + rank * last + torch.arange(last)
    return torch.cat([body.flatten(), tail])


def peer_failed(e: BaseException) -> bool:
    """Whether ``e`` is a collective's failure: another rank died (gloo: the connection is reset) or stalled past
    the process group's timeout."""
    return active() and (isinstance(e, dist.DistError) or isinstance(e, RuntimeError) and bool(
        re.search(r"gloo|NCCL|[Cc]onnection (reset|closed)|timed out|[Tt]imeout", str(e))))
