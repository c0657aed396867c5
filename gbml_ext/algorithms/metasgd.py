"""Meta-SGD: GBML with a learned learning rate for every weight."""
from __future__ import annotations

from torch import nn

from ..optim.metasgd import MetaSGDTransform
from .gbml import GBML

__all__ = ["MetaSGD"]


def MetaSGD(module: nn.Module, lr: float = 0.1, first_order: bool = False) -> GBML:
    """Meta-SGD (Li et al. 2017): θ' = θ − α ⊙ ∇L, with α meta-learned and started at `lr`.

    Arguments:
        module: the model.
        lr: starting value of every learned rate.
        first_order: drop second-order terms (the rates still get meta-gradients).

    Example:
        >>> import torch
        >>> meta_sgd = MetaSGD(torch.nn.Linear(3, 2), lr=0.1)
    """
    return GBML(module, transform=MetaSGDTransform(lr), lr=1.0,
                first_order=first_order)
