"""Plain `torch.func`: the inner loop written by hand, with no meta-learning library.

Per task: the head's parameters as a dict, `steps` times the support loss of
`torch.func.functional_call(head, params, x)`, its gradient by `torch.autograd.grad` with
`create_graph=True` (False for FOMAML), and the step w + (-lr * update); then the query loss,
divided by the meta-batch, goes `backward()`. ANIL runs its body once over support and query;
KFO's update is the learner's own Kronecker transform of the gradient.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn
from torch.func import functional_call

from gbml_ext.data.tasks import Task
from gbml_ext.engine import default_loss

from ..configs import BenchmarkConfig
from .common import MetaIteration, Parts, Peer, split_learner

__all__ = ["PEERS", "adapt_functionally"]


def adapt_functionally(parts: Parts, support_x: torch.Tensor, support_y: torch.Tensor,
                       steps: int) -> Dict[str, torch.Tensor]:
    """The head's fast weights after `steps` differentiable SGD steps on the support set."""
    loss_fn = default_loss(support_y)
    params: Dict[str, torch.Tensor] = dict(parts.head.named_parameters())
    for _ in range(steps):
        loss = loss_fn(functional_call(parts.head, params, (support_x,)), support_y)
        gradients = torch.autograd.grad(loss, list(params.values()),
                                        create_graph=not parts.first_order)
        params = {name: parts.step(name, weight, gradient)
                  for (name, weight), gradient in zip(params.items(), gradients, strict=True)}
    return params


def _torch_func(config: BenchmarkConfig, learner: nn.Module, tasks: Sequence[Task]
                ) -> Tuple[nn.Module, MetaIteration]:
    parts = split_learner(learner)

    def meta_iteration() -> None:
        for task in tasks:
            support_x, query_x = parts.encode(task)
            params = adapt_functionally(parts, support_x, task.support_y, config.steps)
            outputs = functional_call(parts.head, params, (query_x,))
            (default_loss(task.query_y)(outputs, task.query_y) / len(tasks)).backward()

    return learner, meta_iteration


PEERS: List[Peer] = [Peer("torch.func", _torch_func, version=torch.__version__)]
