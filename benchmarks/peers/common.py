"""What every peer implementation shares: the peer record and the learner taken apart.

A peer turns (config, learner, tasks) into (meta-model, meta-iteration): the meta-iteration adds
the meta-gradient of the mean query loss of the tasks to the `.grad` of the learner's
parameters, and the meta-model is the module whose gradients are zeroed before each call.

The learner is always the runner's (`benchmarks.configs.make_learner`), so every peer adapts the
same modules from the same weights. Peers that write their own inner loop take the learner
apart with `split_learner`: the body (ANIL's shared feature extractor, or None), the head that
adapts, its per-parameter gradient transforms (the Kronecker factors of KFO, or None), the
inner learning rate, and whether the step is first order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from gbml_ext.algorithms import ANIL, GBML
from gbml_ext.data.tasks import Task

from ..configs import BenchmarkConfig

__all__ = ["MetaIteration", "Parts", "Peer", "PeerUnavailable", "split_learner"]

MetaIteration = Callable[[], None]
Builder = Callable[[BenchmarkConfig, nn.Module, Sequence[Task]], Tuple[nn.Module, MetaIteration]]


def _always(config: BenchmarkConfig) -> bool:
    return True


class PeerUnavailable(RuntimeError):
    """A peer cannot run here (for example JAX without a GPU on a CUDA benchmark); the
    benchmark reports the reason and goes on without it."""


@dataclass(frozen=True)
class Peer:
    """One implementation of a meta-iteration.

    name: its column in the tables; build: (config, learner, tasks) -> (meta-model,
    meta-iteration), or `PeerUnavailable`; supports: whether it runs this config; version: the
    library's version; torch_counters: whether torch's FLOP counter and memory readings see
    its work (not JAX's).
    """

    name: str
    build: Builder
    supports: Callable[[BenchmarkConfig], bool] = _always
    version: Optional[str] = None
    torch_counters: bool = True


@dataclass
class Parts:
    """The runner's learner taken apart for a hand-written inner loop (see the module doc)."""

    body: Optional[nn.Module]
    head: nn.Module
    transforms: Dict[str, Optional[nn.Module]]
    lr: float
    first_order: bool

    @property
    def names(self) -> List[str]:
        """The head's parameter names, in `named_parameters` order."""
        return [name for name, _ in self.head.named_parameters()]

    def encode(self, task: Task) -> Tuple[torch.Tensor, torch.Tensor]:
        """(support inputs, query inputs) for the head: ANIL's one body pass over both."""
        if self.body is None:
            return task.support_x, task.query_x
        n_support = task.support_x.shape[0]
        features = self.body(torch.cat([task.support_x, task.query_x]))
        return features[:n_support], features[n_support:]

    def transform(self, name: str, gradient: torch.Tensor) -> torch.Tensor:
        """The update direction of parameter `name`: its transform of `gradient`, if any."""
        module = self.transforms.get(name)
        return gradient if module is None else module(gradient)

    def step(self, name: str, weight: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """One inner SGD step, with learn2learn's arithmetic: w + (-lr * update)."""
        return weight + self.transform(name, gradient).mul(-self.lr)


def split_learner(learner: nn.Module) -> Parts:
    """Body, head, transforms, lr and order of a runner learner (GBML or ANIL)."""
    body: Optional[nn.Module] = None
    gbml = learner
    if isinstance(learner, ANIL):
        body, gbml = learner.body, learner.head
    if not isinstance(gbml, GBML):
        raise TypeError(f"peers take a GBML or an ANIL learner, not {type(learner).__name__}")
    update = gbml.compute_update
    names = [name for name, _ in gbml.module.named_parameters()]
    transforms = {name: (None if index is None else update.transforms_modules[index])
                  for name, index in zip(names, update.transforms_indices, strict=True)}
    return Parts(body, gbml.module, transforms, float(gbml.lr), bool(gbml.first_order))
