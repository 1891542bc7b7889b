"""The processes of a job: process-group set-up from torchrun or SLURM, the feature gather, and DataLoader workers
that end with the process that started them.

The paper computes the similarity matrix sharded across workers (Radford et al. 2021, Sec. 2.5): each rank embeds
its slice of the global batch, gathers every rank's features WITH gradients, and computes the loss of its own rows
against all columns. Averaging the per-rank losses gives exactly the single-process loss of the global batch.
"""

from __future__ import annotations

import ctypes
import datetime
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn

from .errors import ConfigError


@dataclass(frozen=True)
class Process:
    rank: int = 0  # global rank
    world_size: int = 1  # processes in the job
    local_rank: int = 0  # rank on this node: picks the GPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(*names: str) -> int | None:
    for name in names:
        if os.environ.get(name):
            return int(os.environ[name])
    return None


def init_process(device: str) -> Process:
    """Join the process group that torchrun (RANK/WORLD_SIZE/LOCAL_RANK) or SLURM (SLURM_PROCID/SLURM_NTASKS/
    SLURM_LOCALID, with MASTER_ADDR/MASTER_PORT set by the job script) describes; a single process otherwise."""
    world_size = _env_int("WORLD_SIZE", "SLURM_NTASKS") or 1
    if world_size == 1:
        return Process()
    rank = _env_int("RANK", "SLURM_PROCID") or 0
    local_rank = _env_int("LOCAL_RANK", "SLURM_LOCALID") or 0
    if "MASTER_ADDR" not in os.environ:
        raise ConfigError("distributed run without MASTER_ADDR: launch with torchrun, or export MASTER_ADDR and "
                         "MASTER_PORT in the SLURM script (see README, 'Training on several processes')")
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=datetime.timedelta(minutes=30))
    return Process(rank=rank, world_size=world_size, local_rank=local_rank)


def gather_with_grad(x: torch.Tensor, process: Process) -> torch.Tensor:
    """(B, D) local rows -> (world_size * B, D), rank-major. Gradients flow back to the rank that owns each row:
    the backward of this all-gather sums, on each rank, the gradients every rank's loss sends to its rows."""
    if not process.distributed:
        return x
    return torch.cat(dist_fn.all_gather(x), dim=0)


def all_reduce_mean(value: float, process: Process) -> float:
    """The mean of a Python number over ranks (for logging the global loss)."""
    if not process.distributed:
        return value
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / process.world_size


def gather_objects(value: Any, process: Process) -> list[Any]:
    """Every rank's `value` (picklable), in rank order, on every rank."""
    if not process.distributed:
        return [value]
    values: list[Any] = [None] * process.world_size
    dist.all_gather_object(values, value)
    return values


def shutdown(process: Process) -> None:
    if process.distributed and dist.is_initialized():
        dist.destroy_process_group()


def exit_with_parent(worker_id: int = 0) -> None:
    """A DataLoader `worker_init_fn`: the kernel kills this worker when the process that started it dies. Otherwise a
    `kill -9` of a run leaves its workers reading data until they next poll for their parent."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)
