"""Data-parallel meta-training with torch.distributed (launched by torchrun).

Each rank adapts to its own share of the meta-batch, drawn from its own task stream; the
meta-gradients are averaged with one all-reduce per outer step, so every rank applies the same
update and the result equals one process running the whole meta-batch. Only rank 0 logs,
evaluates and writes checkpoints.

One node, 4 processes (gloo on CPU, NCCL on GPUs):
    torchrun --standalone --nproc_per_node=4 -m gbml_ext.runner CONFIG
Several nodes: run on every node
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
        -m gbml_ext.runner CONFIG
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, TypeVar

import torch
import torch.distributed as dist

from .errors import RunError

__all__ = ["DistributedContext", "agree", "all_reduce_gradients", "broadcast_parameters",
           "init_distributed", "on_rank0"]

T = TypeVar("T")


@dataclass
class DistributedContext:
    """Where this process stands: `rank` of `world_size`; `is_main` for rank 0."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistributedContext:
    """Joins the process group that torchrun describes in the environment; a no-op alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistributedContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                              local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def all_reduce_gradients(parameters: Iterable[torch.nn.Parameter], world_size: int) -> None:
    """Averages `.grad` over ranks in a single all-reduce of one flat buffer."""
    params = [p for p in parameters if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size
    offset = 0
    for p, g in zip(params, grads, strict=True):
        p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
        offset += g.numel()


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Copies rank 0's parameters to every rank, so all start from the same meta-parameters."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def agree(values: Sequence[float], context: DistributedContext,
          device: torch.device | str = "cpu",
          error: Optional[Exception] = None) -> List[float]:
    """The largest of each of `values` over every process, in one all-reduce; alone, `values`
    as given. Every process calls it at the same point, so a flag that one process raises (a
    signal it received, rank 0's clock past a limit) reaches all of them together, and none is
    left waiting in a collective that another process will never join.

    Arguments:
        values: this process's numbers (flags as 0.0 / 1.0).
        context: the processes (`init_distributed`).
        device: where the collective runs (a GPU for NCCL).
        error: what this process's own work since the last collective raised (rank 0's
            through `on_rank0`; any rank's meta-step): raised again there, while every other
            process raises a `RunError` that points to it.

    Example:
        >>> agree([0.0, 15.0], DistributedContext())
        [0.0, 15.0]
    """
    if not context.enabled:
        if error is not None:
            raise error
        return [float(v) for v in values]
    flags = torch.tensor([float(error is not None), *map(float, values)], dtype=torch.float64,
                         device=device)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    failed, *agreed = flags.tolist()
    if error is not None:
        raise error
    if failed:
        raise RunError(f"another process of this run stopped with an error (its own message "
                       f"says why); rank {context.rank} stops with it.")
    return agreed


def on_rank0(context: DistributedContext, action: Callable[..., T],
             *args: Any) -> Tuple[Optional[T], Optional[Exception]]:
    """Runs `action(*args)` on rank 0 only: (its result, None), or (None, its error) when other
    processes wait for rank 0 (pass the error to `agree`); the others get (None, None).

    Example:
        >>> on_rank0(DistributedContext(), max, 2, 3)
        (3, None)
    """
    if not context.is_main:
        return None, None
    if not context.enabled:
        return action(*args), None
    try:
        return action(*args), None
    except Exception as error:
        return None, error
