"""Where training runs: the device, and torchrun's processes (rank, world size, collectives).

Launch with `torchrun --nproc_per_node N -m lmforge train ...`; torchrun's environment variables
(RANK, WORLD_SIZE, LOCAL_RANK) switch on the process group (gloo on CPU, nccl on CUDA). With one
process every collective below is the identity, so the Trainer calls them unconditionally.
"""
from __future__ import annotations

import os
from typing import Any

import torch


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """train.device -> a torch.device; "auto" is this process's GPU where there is one, else the CPU."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name} but no CUDA device is available; use train.device=cpu or auto")
    return torch.device(name)


class Dist:
    """torchrun's environment: rank, world size; init/teardown of the process group."""

    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world_size > 1
        self.is_main = self.rank == 0
        self.device = torch.device("cpu")  # where collectives put their tensors: NCCL takes only CUDA tensors

    def init(self, device: torch.device) -> None:
        if not self.enabled:
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)  # else every rank's NCCL communicator (and object collectives) use GPU 0
        if not torch.distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"  # gloo: the CPU backend
            torch.distributed.init_process_group(backend)
        if torch.distributed.get_backend() == "nccl":
            self.device = device

    def means(self, values: dict[str, float]) -> dict[str, float]:
        """Each value's mean over the ranks, in one all-reduce. Every rank passes the same keys in the same order."""
        if not self.enabled:
            return dict(values)
        t = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return {k: v / self.world_size for k, v in zip(values, t.tolist())}

    def sum(self, value: float) -> float:
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.item()

    def gather(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's `flag` on every rank: one one-element broadcast, cheap enough to make every step
        (an object broadcast pickles and sends a size first)."""
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)], dtype=torch.int32, device=self.device)
        torch.distributed.broadcast(t, src=0)
        return bool(t.item())

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()
