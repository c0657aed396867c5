"""A transform that keeps selected parameters fixed in the inner loop.

The frozen parameters are still meta-learned (the query loss reaches them through the forward
pass), but the inner loop does not move them: the LinNet ablation "do the head's extra layers
adapt?" uses it.
"""
from __future__ import annotations

import torch
from torch import nn

from .transforms import TransformFactory

__all__ = ["FrozenTransform", "NoUpdate"]


class NoUpdate(nn.Module):
    """update = 0: the parameter keeps its meta-learned value during adaptation.

    The module `FrozenTransform` builds for each parameter it selects. Called on a gradient of
    any shape, it returns zeros of that shape (and dtype and device).

    Example:
        >>> NoUpdate()(torch.ones(2, 3)).eq(0).all().item()
        True
    """

    def forward(self, grad: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(grad)


class FrozenTransform(TransformFactory):
    """Selected parameters take no inner-loop step; the others take plain gradient steps.

    Arguments:
        params: which parameters stay fixed (see `TransformFactory`).

    Example:
        >>> import gbml_ext
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
        >>> learner = gbml_ext.GBML(model, transform=FrozenTransform(["0.weight", "0.bias"]))
        >>> learner = learner.clone()
        >>> before = learner.module[0].weight.clone()
        >>> learner.adapt(learner(torch.randn(4, 3)).pow(2).mean())
        >>> torch.equal(before, learner.module[0].weight)
        True
    """

    def build(self, name: str, param: torch.Tensor) -> nn.Module:
        return NoUpdate()
