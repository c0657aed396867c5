"""Meta-SGD: GBML with a learned learning rate for every weight."""
from __future__ import annotations

from typing import Any, Callable, Optional

from torch import nn

from ..optim.metasgd import MetaSGDTransform
from .gbml import GBML
from .spec import register_algorithm
from .update import check_lr

__all__ = ["MetaSGD"]


class MetaSGD(GBML):
    """Meta-SGD (Li et al. 2017): θ' = θ − α ⊙ ∇L, with α meta-learned and started at `lr`.

    A `GBML` with a `MetaSGDTransform(lr)` and a fixed outer step of 1.0, so the learned rates
    are the whole step (`self.lr` is therefore 1.0; the rates live in `compute_update`).

    Arguments:
        module: the model.
        lr: starting value of every learned rate, a positive finite number.
        first_order: drop second-order terms (the rates still get meta-gradients).

    Raises:
        ValueError: `lr` is not a positive finite number.

    Example:
        >>> import torch
        >>> meta_sgd = MetaSGD(torch.nn.Linear(3, 2), lr=0.1)
        >>> isinstance(meta_sgd, GBML), type(meta_sgd.clone()).__name__
        (True, 'MetaSGD')
    """

    def __init__(self, module: nn.Module, lr: float = 0.1, first_order: bool = False):
        check_lr(lr, "MetaSGD")
        super().__init__(module, transform=MetaSGDTransform(lr), lr=1.0,
                         first_order=first_order)


@register_algorithm("metasgd", doc="Meta-SGD (Li et al. 2017): a learned rate per weight",
                    no_transform="Meta-SGD is itself a transform: set algorithm.transform = "
                                 "'none'.")
def build_metasgd(config: Any, model: nn.Module, transform: Optional[Callable]) -> MetaSGD:
    return MetaSGD(model, lr=config.inner_lr)
