"""learn2learn's own MAML wrapper, run through the same engine: the reference for comparisons."""
from __future__ import annotations

from typing import Any, Callable, Optional

import learn2learn as l2l
from torch import nn

from .base import MetaLearner
from .spec import register_algorithm

__all__ = ["Learn2LearnMAML"]


class Learn2LearnMAML(MetaLearner, l2l.algorithms.MAML):
    """`learn2learn.algorithms.MAML` (Finn et al. 2017) with gbml_ext's task-level methods.

    Only the fast-weight implementation differs from `gbml_ext.GBML`: tasks, steps, loss and
    the outer loop are the same, so accuracy, time and memory compare like for like.

    Example:
        >>> import torch
        >>> reference = Learn2LearnMAML(torch.nn.Linear(3, 2), lr=0.4)
        >>> learner = reference.clone()
    """


@register_algorithm("l2l-maml", doc="learn2learn's own MAML wrapper, the reference row",
                    no_transform="learn2learn's MAML takes no transform: set "
                                 "algorithm.transform = 'none'.")
def build_l2l_maml(config: Any, model: nn.Module, transform: Optional[Callable]
                   ) -> Learn2LearnMAML:
    return Learn2LearnMAML(model, lr=config.inner_lr)
