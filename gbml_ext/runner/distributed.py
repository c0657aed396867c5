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
from typing import Iterable

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "init_distributed", "all_reduce_gradients", "broadcast_parameters"]


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
