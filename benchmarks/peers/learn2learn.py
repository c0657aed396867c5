"""The reference: learn2learn's own wrappers, as its examples use them.

`l2l.algorithms.MAML` over the model (MAML, FOMAML), or for ANIL `l2l.algorithms.GBML` over the
head with `l2l.optim.KroneckerTransform(l2l.nn.KroneckerLinear)` when the config asks for KFO,
and the body run once per task over support and query together (learn2learn's ANIL example).
Per task: `clone()`, `adapt(loss)` per step, `backward()` of the query loss.

learn2learn's KFO factors are its own modules (they start at the identity, as gbml_ext's do),
so on ANIL-KFO the meta-gradients of the body and head equal gbml_ext's and those of the factors
land on learn2learn's factor modules instead. learn2learn creates those factors on the CPU, so
the wrapper is moved to the learner's device (tests/test_benchmark_peers.py builds every peer
on the "meta" device to hold every peer to that).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import learn2learn as l2l
from torch import nn

from gbml_ext.data.tasks import Task
from gbml_ext.engine import default_loss

from ..configs import BenchmarkConfig
from .common import MetaIteration, Peer, split_learner

__all__ = ["PEERS"]


def _learn2learn(config: BenchmarkConfig, learner: nn.Module, tasks: Sequence[Task]
                 ) -> Tuple[nn.Module, MetaIteration]:
    parts = split_learner(learner)
    if any(module is not None for module in parts.transforms.values()):
        transform = l2l.optim.KroneckerTransform(l2l.nn.KroneckerLinear, psd=False)
        head = l2l.algorithms.GBML(parts.head, lr=parts.lr, first_order=parts.first_order,
                                   transform=transform)
    else:
        head = l2l.algorithms.MAML(parts.head, lr=parts.lr, first_order=parts.first_order)
    # learn2learn builds KroneckerLinear factors with torch.eye on the CPU: move them along.
    head.to(next(parts.head.parameters()).device)
    meta_model = head if parts.body is None else nn.ModuleDict({"body": parts.body,
                                                                "head": head})

    def meta_iteration() -> None:
        for task in tasks:
            support_x, query_x = parts.encode(task)
            loss_fn = default_loss(task.support_y)
            clone = head.clone()
            for _ in range(config.steps):
                clone.adapt(loss_fn(clone(support_x), task.support_y))
            (loss_fn(clone(query_x), task.query_y) / len(tasks)).backward()

    return meta_model, meta_iteration


PEERS: List[Peer] = [Peer("learn2learn", _learn2learn, version=l2l.__version__)]
