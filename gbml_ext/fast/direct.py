"""The fast path without `torch.vmap`, for models made of Linear layers and element-wise
activations (the synthetic rows' linear, LinNet and small MLP models).

`torch.vmap` costs a fixed ~0.3 ms of Python per call, more than the whole forward pass of a
model with a few hundred parameters, so for these models the fast path computes the stacked
forward directly: a Linear with fast weights (T, out, in) is one `baddbmm` over inputs
(T, n, in), and the default losses (cross-entropy of labels, mean squared error) reduce per
task. Anything else (convolutions, batch-norm, a custom loss) returns None here, and the caller
takes `vmap`. Tests hold both to the per-task engine (tests/test_batched.py).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import LossFn, default_loss
from ..nn.deep_linear import DeepLinear

__all__ = ["direct_forward", "direct_loss", "supports_direct"]

Params = Dict[str, torch.Tensor]
_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.LeakyReLU, nn.GELU)


def supports_direct(module: nn.Module) -> bool:
    """True when `direct_forward` can run `module`: a Linear, an element-wise activation, or
    a Sequential or `DeepLinear` of those.

    Example:
        >>> supports_direct(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)))
        True
        >>> supports_direct(nn.Conv2d(1, 2, 3))
        False
    """
    if isinstance(module, (nn.Linear, *_ELEMENTWISE)):
        return True
    if isinstance(module, nn.Sequential):
        return all(supports_direct(child) for child in module)
    if type(module) is DeepLinear:
        return supports_direct(module.layers)
    return False


def direct_forward(module: nn.Module, params: Params, x: torch.Tensor,
                   prefix: str = "") -> torch.Tensor:
    """Outputs (T, n, out) of `module` for each task's fast weights `params` (name ->
    (T, *shape)) on inputs x (T, n, in). `module` must pass `supports_direct`."""
    if isinstance(module, nn.Linear):
        weight = params[prefix + "weight"].transpose(1, 2)
        bias = params.get(prefix + "bias")
        if bias is None:
            return torch.bmm(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight)
    if isinstance(module, _ELEMENTWISE):
        return module(x)
    if type(module) is DeepLinear:
        return direct_forward(module.layers, params, x, prefix + "layers.")
    for name, child in module.named_children():
        x = direct_forward(child, params, x, f"{prefix}{name}.")
    return x


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if outputs.shape != targets.shape:
        default_loss(targets)(outputs[0], targets[0])  # raises the engine's own message
    return (outputs - targets).square().flatten(1).mean(dim=1)


def _cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    per_example = F.cross_entropy(outputs.flatten(0, 1), targets.flatten().long(),
                                  reduction="none")
    return per_example.view(targets.shape).mean(dim=1)


# The engine's default losses (and the torch functions behind them) -> their per-task forms.
_PER_TASK: Dict[Callable, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    F.mse_loss: _mse, default_loss(torch.zeros(1)): _mse,
    F.cross_entropy: _cross_entropy, default_loss(torch.zeros(1, dtype=torch.int8)): _cross_entropy,
}


def direct_loss(loss_fn: LossFn, targets: torch.Tensor
                ) -> Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """The per-task version of `loss_fn`, (T, n, ...) outputs and targets -> losses (T,), when
    `loss_fn` is one of the engine's default losses for targets like `targets`; else None.

    Example:
        >>> loss = direct_loss(F.mse_loss, torch.zeros(2, 5, 1))
        >>> loss(torch.ones(2, 5, 1), torch.zeros(2, 5, 1))
        tensor([1., 1.])
    """
    per_task = _PER_TASK.get(loss_fn)
    if per_task is _mse:
        return _mse if targets.is_floating_point() else None
    if per_task is _cross_entropy:
        return _cross_entropy if targets.dim() == 2 and not targets.is_floating_point() else None
    return None
