"""One inner step's machinery under `GBML.adapt`: gradients, per-parameter transforms, and the
checks that turn learn2learn's silent failures into errors that say what to do.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Iterable, List, Optional, Sequence

import learn2learn as l2l
import torch
from torch import nn

from ..optim.transforms import TransformFactory

__all__ = ["NOT_FROM_LEARNER", "ParameterUpdate", "build_parameter_update",
           "check_has_parameters", "check_lr", "reached_nodes"]

NOT_FROM_LEARNER = (
    "adapt() got a loss that was not computed from this learner's fast weights: call "
    "learner(x), not the meta-model (or another clone), and adapt on that loss."
)


def _no_transform(param: torch.Tensor, name: Optional[str] = None) -> None:
    return None


def check_lr(lr: Any, owner: str, name: str = "lr") -> None:
    """Raises a `ValueError` unless `lr` is a positive finite number.

    A number means an int or float (NumPy's included) or a one-element real tensor; a string
    such as "0.1" or a bool is refused here rather than failing at the first inner step.

    Arguments:
        lr: the learning rate to check (a number or a one-element tensor).
        owner: the class named in the message, e.g. "GBML".
        name: the argument named in the message.

    Example:
        >>> check_lr(0.1, "GBML")
        >>> check_lr(float("nan"), "GBML")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: GBML got lr=nan, but the inner-loop learning rate must be a positive ...
        >>> check_lr("0.1", "GBML")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: GBML got lr='0.1' (a str), but the inner-loop learning rate must be a ...
    """
    is_number = isinstance(lr, numbers.Real) and not isinstance(lr, bool)
    is_tensor = (isinstance(lr, torch.Tensor) and lr.numel() == 1
                 and not (lr.dtype == torch.bool or lr.dtype.is_complex))
    value = float(lr) if is_number or is_tensor else math.nan
    if not (math.isfinite(value) and value > 0):
        kind = "" if is_number or is_tensor else f" (a {type(lr).__name__})"
        raise ValueError(
            f"{owner} got {name}={lr!r}{kind}, but the inner-loop learning rate must be a "
            f"positive finite number. Pass a step size such as {name}=0.1."
        )


def check_has_parameters(module: nn.Module, owner: str) -> None:
    """Raises a `ValueError` if `module` has no parameters, so there is nothing to adapt.

    Arguments:
        module: the model the learner will adapt.
        owner: the class named in the message, e.g. "GBML".

    Example:
        >>> check_has_parameters(torch.nn.Linear(3, 1), "GBML")
        >>> check_has_parameters(torch.nn.ReLU(), "GBML")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: GBML got a module with no parameters (ReLU), so there is nothing to adapt...
    """
    if next(iter(module.parameters()), None) is None:
        raise ValueError(
            f"{owner} got a module with no parameters ({type(module).__name__}), so there is "
            f"nothing to adapt or meta-learn. Pass the model whose weights should learn, e.g. "
            f"nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))."
        )


class ParameterUpdate(l2l.optim.ParameterUpdate):
    """learn2learn's `ParameterUpdate`, raising instead of printing a traceback.

    learn2learn catches a failed `torch.autograd.grad`, prints it and then fails with an
    `UnboundLocalError`; here the `RuntimeError` propagates to `GBML.adapt`, which explains it.
    """

    def forward(self, loss: torch.Tensor, parameters: Iterable[torch.Tensor],
                create_graph: bool = False, retain_graph: bool = False,
                allow_unused: bool = False, allow_nograd: bool = False
                ) -> List[Optional[torch.Tensor]]:
        parameters = list(parameters)
        differentiable = [p for p in parameters if p.requires_grad] if allow_nograd else parameters
        found: Sequence[Optional[torch.Tensor]] = ()
        if differentiable:
            found = torch.autograd.grad(loss, differentiable, create_graph=create_graph,
                                        retain_graph=retain_graph, allow_unused=allow_unused)
            if allow_unused and all(g is None for g in found):
                raise ValueError(NOT_FROM_LEARNER)
        if allow_nograd:
            by_param = iter(found)
            gradients = [next(by_param) if p.requires_grad else None for p in parameters]
        else:
            gradients = list(found)
        updates = []
        for gradient, index in zip(gradients, self.transforms_indices, strict=True):
            if index is None or gradient is None:
                updates.append(gradient)
            else:
                updates.append(self.transforms_modules[index](gradient))
        return updates


def build_parameter_update(module: nn.Module, transform: Optional[Callable]) -> ParameterUpdate:
    """learn2learn's ParameterUpdate, but our factories also receive each parameter's name."""
    if isinstance(transform, TransformFactory):
        transform.check_names(module)
        names = dict((id(p), n) for n, p in module.named_parameters())
        factory = lambda p: transform(p, names[id(p)])  # noqa: E731
    else:
        factory = transform or _no_transform
    return ParameterUpdate(parameters=module.parameters(), transform=factory)


def reached_nodes(loss: torch.Tensor) -> set:
    """Every autograd node the loss's graph reaches (used on the error path only)."""
    seen: set = set()
    stack = [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(child for child, _ in node.next_functions)
    return seen
