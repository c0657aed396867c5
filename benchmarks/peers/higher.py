"""higher (Grefenstette et al. 2019): `higher.innerloop_ctx` over the head, per task.

Used only when `higher` is importable (`pip install higher==0.2.1`, the `bench` extra).

Per task: `innerloop_ctx(head, SGD(lr), copy_initial_weights=False)` gives a functional copy
and a differentiable optimizer; `diffopt.step(support loss, grad_callback=...)` per step, where
the callback applies the learner's KFO transform (if any) to the gradients; then the query loss
goes `backward()`. For FOMAML the callback also detaches the gradients: higher's own switch,
`track_higher_grads=False`, detaches the fast weights themselves, which would leave the initial
weights with no meta-gradient at all. higher still builds the double-backward graph then, since
it always differentiates with `create_graph=track_higher_grads`.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import nn

from gbml_ext.data.tasks import Task
from gbml_ext.engine import default_loss

from ..configs import BenchmarkConfig
from .common import MetaIteration, Peer, split_learner

try:
    import higher
except ImportError:  # optional: the `bench` extra
    higher = None

__all__ = ["PEERS"]


def _higher(config: BenchmarkConfig, learner: nn.Module, tasks: Sequence[Task]
            ) -> Tuple[nn.Module, MetaIteration]:
    parts = split_learner(learner)
    names = parts.names
    inner_optimizer = torch.optim.SGD(parts.head.parameters(), lr=parts.lr)

    def grad_callback(gradients: List[torch.Tensor]) -> List[torch.Tensor]:
        if parts.first_order:
            gradients = [gradient.detach() for gradient in gradients]
        return [parts.transform(name, gradient)
                for name, gradient in zip(names, gradients, strict=True)]

    def meta_iteration() -> None:
        for task in tasks:
            support_x, query_x = parts.encode(task)
            loss_fn = default_loss(task.support_y)
            with higher.innerloop_ctx(parts.head, inner_optimizer,
                                      copy_initial_weights=False) as (model, optimizer):
                for _ in range(config.steps):
                    optimizer.step(loss_fn(model(support_x), task.support_y),
                                   grad_callback=grad_callback)
                (loss_fn(model(query_x), task.query_y) / len(tasks)).backward()

    return learner, meta_iteration


PEERS: List[Peer] = [] if higher is None else [
    Peer("higher", _higher, version=getattr(higher, "__version__", None))]
