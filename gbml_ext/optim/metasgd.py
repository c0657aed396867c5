"""Meta-SGD's learned per-parameter learning rates, as a gradient transform."""
from __future__ import annotations

import torch
from torch import nn

from .transforms import ParameterSelection, TransformFactory

__all__ = ["MetaSGDTransform", "PerParameterLR"]


class PerParameterLR(nn.Module):
    """update = alpha ⊙ grad, with `alpha` a learned tensor of the parameter's shape.

    The module `MetaSGDTransform` builds for each parameter it selects (Meta-SGD, Li et al.
    2017). Called on a gradient of the parameter's shape, it returns the update, same shape.

    Arguments:
        shape: the parameter's shape, hence `alpha`'s.
        init_lr: the starting value of every entry of `alpha`.

    Example:
        >>> rate = PerParameterLR(torch.Size([2, 3]), init_lr=0.1)
        >>> rate.alpha.shape, torch.allclose(rate(torch.ones(2, 3)), torch.full((2, 3), 0.1))
        (torch.Size([2, 3]), True)
    """

    def __init__(self, shape: torch.Size, init_lr: float):
        super().__init__()
        self.alpha = nn.Parameter(torch.full(tuple(shape), float(init_lr)))

    def forward(self, grad: torch.Tensor) -> torch.Tensor:
        return self.alpha * grad


class MetaSGDTransform(TransformFactory):
    """Meta-SGD (Li et al. 2017, "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning").

    Each selected parameter gets a learned elementwise learning rate, started at `init_lr`.
    Use it with `GBML(..., lr=1.0)` so the learned rates are the whole step.

    Arguments:
        init_lr: the starting value of every learned rate.
        params: which parameters get learned rates (see `TransformFactory`).

    Example:
        >>> import gbml_ext
        >>> learner = gbml_ext.GBML(torch.nn.Linear(3, 2), transform=MetaSGDTransform(0.1), lr=1.0)
        >>> [tuple(p.shape) for p in learner.compute_update.parameters()]
        [(2, 3), (2,)]
    """

    def __init__(self, init_lr: float, params: ParameterSelection = None):
        super().__init__(params)
        self.init_lr = init_lr

    def build(self, name: str, param: torch.Tensor) -> nn.Module:
        return PerParameterLR(param.shape, self.init_lr)
