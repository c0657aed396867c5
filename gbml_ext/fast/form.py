"""The batched-form protocol: what a learner tells the fast path so that T tasks adapt at once.

A learner that the fast path can run has a method `batched_form(self) -> BatchedForm | str`:
the `BatchedForm` of its inner loop, or a one-line reason why it runs per task only. `GBML`
implements it (MAML, FOMAML, Meta-SGD, Meta-KFO: the update is the learner's own per-parameter
transforms), `ANIL` adds its encoding (the body's features, once per task), and Reptile or
iMAML, which form their own meta-gradient, return a reason. `gbml_ext.fast` reads nothing
else of a learner, so a new algorithm reaches the fast path by implementing this method.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from torch import nn

__all__ = ["BatchedForm", "Encoder", "FormOrReason"]

# Stacked (support_x, query_x), each (T, n, ...), -> what the adapted module takes.
Encoder = Callable[[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class BatchedForm:
    """One learner's inner loop as the fast path runs it, for every task of a chunk at once.

    Attributes:
        module: the network whose parameters adapt, a pure function of them: the fast path
            calls it as `torch.func.functional_call(module, adapted, (inputs,))` with every
            parameter stacked per task, (T, *shape) (Linear stacks run without vmap,
            `gbml_ext.fast.direct`). Parameters that are meta-learned but never adapt stay
            outside it (ANIL's body) or take a transform whose update is zero
            (`gbml_ext.optim.FrozenTransform`).
        lr: the inner step size; a step is w + (-lr · update), learn2learn's arithmetic.
        first_order: no graph through the inner gradients (FOMAML).
        adapt_transform: the transforms' parameters take their own inner step from the second
            step on, stacked per task (learn2learn's `adapt_transform`).
        allow_unused: parameters the loss does not reach keep their value.
        transform_of: for each parameter of `module`, in order, the index of its transform in
            `transforms`, or None for the plain gradient.
        transforms: gradient -> update modules (Meta-SGD's learned rates, Meta-KFO's Kronecker
            maps, a frozen parameter's zero update).
        encode: how a task's inputs are encoded once, before the inner loop, on the stacked
            tensors (ANIL: the body's features); None: the inputs as they are.
        encoder: `encode` as a module, `(support_x, query_x) -> (support, query)` on the
            stacked tensors, whose parameters are meta-learned (ANIL's body). The compiled
            path calls it through `torch.func.functional_call`, inside its graph, so those
            parameters get their meta-gradient; an `encode` without it runs on the batched path
            only.

    Example:
        >>> import gbml_ext
        >>> form = gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.1).batched_form()
        >>> form.lr, form.plain_sgd, form.encode is None, form.encoder is None
        (0.1, True, True, True)
    """

    module: nn.Module
    lr: float
    first_order: bool = False
    adapt_transform: bool = False
    allow_unused: bool = False
    transform_of: Sequence[Optional[int]] = ()
    transforms: Sequence[nn.Module] = ()
    encode: Optional[Encoder] = None
    encoder: Optional[nn.Module] = None

    @property
    def plain_sgd(self) -> bool:
        """Whether every parameter takes the plain gradient step (no transform)."""
        return all(index is None for index in self.transform_of)


# What `batched_form()` returns: the form, or why the learner runs per task only.
FormOrReason = Union[BatchedForm, str]
