"""GBML: learn2learn-style fast weights with an optional learned gradient transform.

One class covers MAML (no transform), FOMAML (`first_order=True`), Meta-SGD (per-parameter
learning rates) and Meta-KFO (Kronecker-factored transform).
"""
from __future__ import annotations

from typing import Callable, Optional

import learn2learn as l2l
import torch
from torch import nn

from ..optim.transforms import TransformFactory
from .base import MetaLearner

__all__ = ["GBML", "MAML"]


def _no_transform(param, name=None):
    return None


def _build_parameter_update(module: nn.Module, transform) -> l2l.optim.ParameterUpdate:
    """learn2learn's ParameterUpdate, but our factories also receive each parameter's name."""
    if isinstance(transform, TransformFactory):
        transform.check_names(module)
        names = dict((id(p), n) for n, p in module.named_parameters())
        factory = lambda p: transform(p, names[id(p)])  # noqa: E731
    else:
        factory = transform or _no_transform
    return l2l.optim.ParameterUpdate(parameters=module.parameters(), transform=factory)


class GBML(MetaLearner, l2l.algorithms.GBML):
    """Gradient-based meta-learner with fast weights: `clone()`, then `adapt(loss)`.

    Built on learn2learn's `GBML`. Each inner step computes g = ∇_θ loss, transforms it with
    the per-parameter transform T (identity when there is none) and sets θ' = θ − lr · T(g)
    differentiably, so the query loss of the adapted clone back-propagates to the module's
    meta-parameters and to the transform's.

    - `transform=None`: MAML (Finn et al. 2017, "Model-Agnostic Meta-Learning for Fast
      Adaptation of Deep Networks").
    - `first_order=True`: FOMAML, the first-order approximation of the same paper: no graph is
      kept through the inner gradients.
    - `transform=KroneckerTransform(...)`: Meta-KFO (Arnold, Iqbal & Sha, AISTATS 2021).
    - `transform=MetaSGDTransform(lr)`, `lr=1.0`: Meta-SGD (Li et al. 2017).

    Arguments:
        module: the model; takes inputs (batch, *input_shape).
        transform: a `TransformFactory` (or any callable `param -> Module | None`, as in
            learn2learn), or None for plain gradient steps.
        lr: inner-loop learning rate α.
        first_order: drop second-order terms (FOMAML).
        adapt_transform: also adapt the transform's parameters in the inner loop (from the
            second step on, as in learn2learn).
        allow_unused: allow parameters the loss does not depend on (their update is None).
        allow_nograd: skip parameters with `requires_grad=False`.

    Example:
        >>> model = torch.nn.Linear(3, 1)
        >>> maml = GBML(model, lr=0.1)
        >>> x, y = torch.randn(8, 3), torch.randn(8, 1)
        >>> learner = maml.clone()
        >>> learner.adapt(torch.nn.functional.mse_loss(learner(x), y))
        >>> torch.nn.functional.mse_loss(learner(x), y).backward()  # meta-gradient in model.weight.grad
        >>> model.weight.grad.shape
        torch.Size([1, 3])
    """

    def __init__(self, module: nn.Module, transform: Optional[Callable] = None, lr: float = 0.1,
                 first_order: bool = False, adapt_transform: bool = False,
                 allow_unused: bool = False, allow_nograd: bool = False, **kwargs):
        if "compute_update" not in kwargs:
            kwargs["compute_update"] = _build_parameter_update(module, transform)
        super().__init__(module, transform, lr=lr, adapt_transform=adapt_transform,
                         first_order=first_order, allow_unused=allow_unused,
                         allow_nograd=allow_nograd, **kwargs)

    def clone(self, first_order=None, allow_unused=None, allow_nograd=None,
              adapt_transform=None) -> "GBML":
        """Returns a learner whose `adapt` changes its own fast weights, never `self`'s.

        The clone stays in the autograd graph of `self`'s parameters, so the meta-gradient
        flows back through it.
        """
        return type(self)(
            module=l2l.clone_module(self.module),
            transform=self.transform,
            lr=self.lr,
            first_order=self.first_order if first_order is None else first_order,
            adapt_transform=self.adapt_transform if adapt_transform is None else adapt_transform,
            allow_unused=self.allow_unused if allow_unused is None else allow_unused,
            allow_nograd=self.allow_nograd if allow_nograd is None else allow_nograd,
            compute_update=l2l.clone_module(self.compute_update),
        )

    def adapt(self, loss: torch.Tensor, first_order=None, allow_nograd=None,
              allow_unused=None) -> None:
        """Takes one transformed gradient step on `loss` (a scalar), in place on the fast weights."""
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(
                f"adapt() needs a scalar loss, got {shape}. Reduce it first, for example "
                f"with loss.mean() or F.cross_entropy(..., reduction='mean')."
            )
        if not loss.requires_grad:
            raise ValueError(
                "adapt() got a loss that does not require grad: compute it from this learner's "
                "outputs (learner(x)), not from the meta-model or under torch.no_grad()."
            )
        super().adapt(loss.reshape(()), first_order=first_order, allow_nograd=allow_nograd,
                      allow_unused=allow_unused)


def MAML(module: nn.Module, lr: float = 0.1, first_order: bool = False, **kwargs) -> GBML:
    """MAML (Finn et al. 2017): `GBML` with no transform. `first_order=True` gives FOMAML.

    Example:
        >>> maml = MAML(torch.nn.Linear(3, 1), lr=0.4, first_order=True)
    """
    return GBML(module, transform=None, lr=lr, first_order=first_order, **kwargs)
