"""Where training runs: the device, torchrun's processes (rank, world size, collectives), and sharding.

Launch with `torchrun --nproc_per_node N -m lmforge train ...`; torchrun's environment variables
(RANK, WORLD_SIZE, LOCAL_RANK) switch on the process group (gloo on CPU, nccl on CUDA). With one
process every collective below is the identity, so the Trainer calls them unconditionally.

Two ways to spread a step over the processes (train.parallel):
- "ddp": every process holds the whole model, gradients are all-reduced (DistributedDataParallel).
- "fsdp": every process holds 1/N of each weight, its gradient and its optimizer state (fully sharded
  data parallel, Zhao et al. 2023, "PyTorch FSDP"; ZeRO stage 3, Rajbhandari et al. 2020). A block's
  weights are all-gathered just before it runs and freed after; gradients are reduce-scattered. Here
  with FSDP2 (`torch.distributed.fsdp.fully_shard`): parameters become DTensor shards in place, so the
  optimizer is built after `shard`, and a checkpoint gathers the full tensors (`full_weights`,
  `full_optimizer_state`) so that it is an ordinary one, resumable with any number of processes either way.
"""
from __future__ import annotations

import os
from typing import Any

import torch


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """train.device -> a torch.device; "auto" is this process's GPU where there is one, else the CPU.
    "cuda" is this process's GPU too (torchrun's LOCAL_RANK): a device without an index would put every
    process on GPU 0, and torch.cuda.set_device refuses it."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name} but no CUDA device is available; use train.device=cpu or auto")
    return torch.device(f"cuda:{local_rank}") if name == "cuda" else torch.device(name)


class Dist:
    """torchrun's environment: rank, world size; init/teardown of the process group."""

    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world_size > 1
        self.is_main = self.rank == 0
        self.device = torch.device("cpu")  # where collectives put their tensors: NCCL takes only CUDA tensors

    def init(self, device: torch.device, group: bool = False) -> None:
        """Join torchrun's process group. group=True makes one for a single process too (FSDP shards over
        a group, even a group of one: the same code path, e.g. to try it on a machine with one GPU)."""
        if not (self.enabled or group):
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)  # else every rank's NCCL communicator (and object collectives) use GPU 0
        if not torch.distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"  # gloo: the CPU backend
            if self.enabled or "MASTER_ADDR" in os.environ:  # torchrun (or a launcher like it) set the rendezvous
                torch.distributed.init_process_group(backend)
            else:  # a plain `python` process: a group of one needs no rendezvous, an in-memory store will do
                torch.distributed.init_process_group(backend, store=torch.distributed.HashStore(), rank=0, world_size=1)
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


# ---------------------------------------------------------------------------------- FSDP

def shard(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Shard `model` in place with FSDP2: each module of every `blocks` list its own unit, then the root.

    fully_shard groups a module's parameters into one all-gather and must be applied bottom-up (the FSDP2
    docs); one group per transformer layer is the usual choice (torchtitan does it): a block's weights are
    gathered just for its forward and backward, so a process holds its shards plus about one block at a
    time. The root group takes what is left (embeddings, final norm, head; a tied head shares the
    embedding's group). Works for any family whose layers are in a ModuleList named
    `blocks` (gpt, the open decoders; a wrapper's `base.blocks`; an encoder-decoder's two lists).
    Returns the model (the same object, its class now also an FSDPModule)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    lists = [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] == "blocks"
             and isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise ValueError(f"train.parallel=fsdp shards each layer of a model's `blocks` list, and "
                         f"{type(model).__name__} has none; use train.parallel=ddp")
    # the training device's mesh: fully_shard's default is a CUDA mesh wherever CUDA exists, which would move
    # the weights of a CPU (gloo) run onto the GPU
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    for blocks in lists:
        for block in blocks:
            fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def _reshard(model: torch.nn.Module) -> None:
    """Put every gathered weight back to its shard. The root group keeps its weights gathered after a forward
    (the backward would gather them again at once), and after an evaluation's forward no backward comes: the
    model's parameters would be plain tensors, not the shards the optimizer holds and the state dicts read."""
    from torch.distributed.fsdp import FSDPModule

    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


def _names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The optimizer's parameters in the order torch numbers them in `optimizer.state_dict()` (group by
    group), by their names in `model`."""
    name = {id(p): n for n, p in model.named_parameters()}
    return [name[id(p)] for group in optimizer.param_groups for p in group["params"]]


def full_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A sharded model's state dict as full tensors on rank 0's CPU (every rank calls it: all-gathers);
    {} on the other ranks."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    _reshard(model)
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Full tensors (a checkpoint's, the same on every rank) into a sharded model: rank 0's are scattered.
    Missing names are allowed (a tied tensor is stored once); lmforge.train.checkpoint has checked the rest."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    _reshard(model)
    # a copy: set_model_state_dict replaces the dict's values with this rank's shards
    set_model_state_dict(model, dict(weights), options=StateDictOptions(full_state_dict=True, strict=False))


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """A sharded model's optimizer state gathered on rank 0, in the format of `optimizer.state_dict()` for
    the unsharded model (parameters numbered 0..n-1), so any run can resume it; {} on the other ranks."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    _reshard(model)
    state = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not state:
        return {}
    index = {n: i for i, n in enumerate(_names(model, optimizer))}  # torch's full state is keyed by name
    return {"state": {index[n]: s for n, s in state["state"].items()},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in state["param_groups"]]}


def load_full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """The inverse of full_optimizer_state: an `optimizer.state_dict()`-format state into the sharded one."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    _reshard(model)
    names = _names(model, optimizer)
    if len(names) != sum(len(g["params"]) for g in state["param_groups"]):
        raise ValueError(f"the optimizer state holds {sum(len(g['params']) for g in state['param_groups'])} "
                         f"parameters but the model has {len(names)}: the checkpoint is from another model")
    by_name = {"state": {names[i]: s for i, s in state["state"].items()},
               "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))
