"""Training in several processes under `torchrun`: DistributedDataParallel on PyTorch's own engine.

torchrun starts the processes and sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR; seqtool
never launches processes itself. Without torchrun (WORLD_SIZE unset or 1) every method here is a
no-op, so the single-process path is the same code with a cluster of one.

Each rank computes the loss on its own shard of every global batch and DDP averages the gradients,
so N ranks with a global batch B take the same steps as one process with batch B. Control flow
that depends on the wall clock or on signals (the time budget, the LR schedule under max_time,
Ctrl-C) is decided by rank 0 and broadcast each step, so no rank ever waits for a collective the
others have skipped. Only rank 0 writes files and draws progress.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from seqtool.errors import SeqtoolError


def launched_rank() -> int:
    """This process's rank as set by torchrun (0 when not launched by it); reads no torch state."""
    return int(os.environ.get("RANK", "0"))


def launcher_prefix() -> list[str]:
    """How this process was started, for the resume command printed after an interruption."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return ["seqtool"]
    per_node = os.environ.get("LOCAL_WORLD_SIZE", str(world_size))
    return ["torchrun", f"--nproc-per-node={per_node}", "-m", "seqtool"]


def backend(device: torch.device) -> str:
    """The process group's engines: gloo on the CPU, and for a CUDA run NCCL on the GPUs beside
    it. NCCL alone refuses CPU tensors, and the control values broadcast each step (elapsed
    time, stop flags) and the gathered checkpoint state are CPU tensors."""
    return "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"


@dataclass
class Cluster:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    # ---- set-up ------------------------------------------------------------------------------

    @classmethod
    def from_environment(cls, device: torch.device) -> Cluster:
        """Join the process group torchrun prepared (`backend` says which engine serves which device)."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        cluster = cls(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
        if not dist.is_initialized():
            dist.init_process_group(backend(device))
        return cluster

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process: rank-local CUDA index; CPU and MPS stay as they are."""
        if self.distributed and device.type == "cuda" and device.index is None:
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            # DDP's reducer sits in reference cycles that keep the process group alive; left to
            # the interpreter's shutdown, gloo's threads die with it and abort the process now
            # and then. Collect them while the interpreter is whole, then tear the group down.
            gc.collect()
            dist.destroy_process_group()

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to train: DDP around the model when distributed (gradients averaged in
        buckets during backward), the model itself otherwise."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [model_device(model).index] if model_device(model).type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    # ---- sharding ----------------------------------------------------------------------------

    def check_divides(self, batch_size: int) -> None:
        if batch_size % self.world_size:
            raise SeqtoolError(
                f"training.batch_size={batch_size} is the global batch and must divide evenly among {self.world_size} processes"
            )

    def own_rows(self, rows: np.ndarray) -> tuple[np.ndarray, float]:
        """This rank's contiguous part of a global batch, and the factor that turns the mean loss
        over that part into its share of the global mean (after DDP averages over ranks)."""
        if not self.distributed:
            return rows, 1.0
        mine = np.array_split(rows, self.world_size)[self.rank]
        return mine, len(mine) * self.world_size / len(rows)

    def usable_batches(self, num_rows: int, batch_size: int) -> int:
        """Batches per epoch: every batch must give each rank at least one row, so a final
        partial batch smaller than the number of ranks is dropped."""
        full, rest = divmod(num_rows, batch_size)
        return max(1, full + (rest >= self.world_size if rest else 0))

    # ---- collectives (no-ops in a single process) -------------------------------------------

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """Average a tensor over ranks (the logged loss is the global batch's loss)."""
        if not self.distributed:
            return value
        value = value.detach().clone()
        dist.all_reduce(value)
        return value / self.world_size

    def from_main(self, values: list[float]) -> list[float]:
        """Rank 0's values on every rank: elapsed time, stop flags, validation loss."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.broadcast(tensor, src=0)
        return tensor.tolist()

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's object on rank 0 (None elsewhere); `[obj]` in a single process."""
        if not self.distributed:
            return [obj]
        gathered: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, gathered, dst=0)
        return gathered

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
