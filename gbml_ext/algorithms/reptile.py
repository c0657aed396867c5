"""Reptile: first-order meta-learning by moving the initialization towards adapted weights."""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence

import torch
from torch import nn

from .. import engine
from ..data.tasks import Task
from .gbml import GBML
from .spec import register_algorithm

__all__ = ["Reptile"]


class Reptile(GBML):
    """Reptile (Nichol, Achiam & Schulman 2018, "On First-Order Meta-Learning Algorithms").

    Each task adapts a clone with k plain SGD steps (first order, no transform) to φ. The
    meta-gradient written to `.grad` is mean(θ − φ), so an outer `torch.optim.SGD(lr=ε)`
    performs exactly the Reptile update θ ← θ + ε · mean(φ − θ). Tasks, steps and loss are the
    same as for every other algorithm.

    Arguments:
        module: the model.
        lr: inner-loop SGD learning rate, a positive finite number.
        transform: must be None: Reptile takes plain SGD steps.
        first_order: must be True: Reptile is first order by construction.
        **kwargs: `allow_unused`, `allow_nograd`, as for `GBML`.

    Raises:
        ValueError: a non-None `transform`, `first_order=False`, or a bad `lr`.

    Example:
        >>> reptile = Reptile(torch.nn.Linear(3, 1), lr=0.1)
        >>> outer = torch.optim.SGD(reptile.parameters(), lr=0.5)   # ε = 0.5
    """

    def __init__(self, module: nn.Module, lr: float = 0.1, transform: Optional[Callable] = None,
                 first_order: bool = True, **kwargs: Any):
        if transform is not None:
            raise ValueError(
                "Reptile takes plain SGD steps and ignores transforms: drop transform=, or use "
                "GBML(model, transform=..., lr=...) for a learned update."
            )
        if not first_order:
            raise ValueError(
                "Reptile is first order by construction (its meta-gradient is θ − φ): drop "
                "first_order=False, or use GBML/MAML for second-order meta-gradients."
            )
        super().__init__(module, transform=None, lr=lr, first_order=True, **kwargs)

    def accumulate_meta_gradient(self, tasks: Sequence[Task], steps: int,
                                 loss_fn: Optional[engine.LossFn] = None
                                 ) -> List[engine.TaskOutcome]:
        outcomes = []
        meta_params = list(self.module.parameters())
        for task in tasks:
            task_loss_fn = loss_fn or engine.default_loss(task.support_y)
            learner = self.clone()
            engine.adapt_learner(learner, task.support_x, task.support_y, steps, task_loss_fn)
            outcomes.append(engine.score_query(learner, task, task_loss_fn))
            with torch.no_grad():
                for theta, phi in zip(meta_params, learner.module.parameters(), strict=True):
                    step = (theta - phi) / len(tasks)
                    theta.grad = step if theta.grad is None else theta.grad + step
        return outcomes


@register_algorithm("reptile", doc="Reptile (Nichol et al. 2018); the outer sgd lr is its ε",
                    no_transform="Reptile takes plain SGD inner steps: set algorithm.transform "
                                 "= 'none'.")
def build_reptile(config: Any, model: nn.Module, transform: Optional[Callable]) -> Reptile:
    return Reptile(model, lr=config.inner_lr)
