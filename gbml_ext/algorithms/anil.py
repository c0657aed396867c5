"""ANIL: adapt only the head; the body is meta-learned but frozen during adaptation."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Tuple

import torch
from torch import nn

from ..data.tasks import Task
from ..fast.form import FormOrReason
from .base import MetaLearner, per_task_reason
from .gbml import GBML
from .spec import register_algorithm
from .update import check_lr

__all__ = ["ANIL", "ANILHead", "StackedEncoder"]


def _head_in_features(head: nn.Module) -> Optional[int]:
    """The feature size the head declares (its first `in_features`), or None if it has none."""
    for module in head.modules():
        in_features = getattr(module, "in_features", None)
        if isinstance(in_features, int):
            return in_features
    return None


class ANILHead(GBML):
    """The `GBML` over ANIL's head: `ANIL.clone()` returns one, and it takes body features.

    Calling it on anything but features (batch, in_features), e.g. on raw images, raises a
    `ValueError` that says to encode the task first, instead of a bare shape error deep in the
    head. The check is two integer comparisons per call.

    Arguments:
        module: the head, (batch, features) -> (batch, ways).
        *args, **kwargs: as for `GBML`.

    Example:
        >>> head = ANILHead(torch.nn.Linear(16, 5), lr=0.5)
        >>> head.in_features, head.clone()(torch.randn(3, 16)).shape
        (16, torch.Size([3, 5]))
    """

    def __init__(self, module: nn.Module, *args: Any, **kwargs: Any):
        super().__init__(module, *args, **kwargs)
        self.in_features = _head_in_features(module)

    def clone(self, *args: Any, **kwargs: Any) -> "ANILHead":
        learner = super().clone(*args, **kwargs)
        learner.in_features = self.in_features
        return learner

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() != 2 or (self.in_features is not None
                                   and features.shape[1] != self.in_features):
            expected = "features" if self.in_features is None else self.in_features
            raise ValueError(
                f"ANIL's learner adapts the head only and takes body features (batch, "
                f"{expected}), got shape {tuple(features.shape)}. Call task = "
                f"anil.encode_task(task) first and use its support_x/query_x, or use "
                f"gbml_ext.engine.run_task(anil, task, steps)."
            )
        return self.module(features)


class ANIL(MetaLearner, nn.Module):
    """Almost No Inner Loop (Raghu et al. 2020, "Rapid Learning or Feature Reuse?").

    The body maps inputs to features once per task; only the head is adapted, with any GBML
    transform (so `transform=KroneckerTransform()` gives ANIL-KFO, and a `gbml_ext.nn.linnet`
    head gives ANIL+LinNet). The body still gets meta-gradients through the query loss.

    Support and query go through the body in one pass, as in learn2learn's ANIL example, so
    batch-norm statistics are those of the whole task.

    `clone()` returns an `ANILHead` learner over the head, which takes body features, not raw
    inputs: encode the task first (`anil.encode_task(task)`), or let
    `gbml_ext.engine.run_task(anil, task, steps)` do both.

    Arguments:
        body: feature extractor, (batch, *input_shape) -> (batch, features).
        head: classifier, (batch, features) -> (batch, ways).
        lr, transform, first_order, adapt_transform: as for `GBML`, applied to the head.

    Raises:
        ValueError: `lr` is not a positive finite number.

    Example:
        >>> body = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU())
        >>> anil = ANIL(body, torch.nn.Linear(16, 5), lr=0.5)
        >>> task = Task(torch.randn(5, 8), torch.arange(5),
        ...             torch.randn(10, 8), torch.arange(10) % 5)
        >>> features = anil.encode_task(task)           # body features, once per task
        >>> learner = anil.clone()                      # a GBML over the head only
        >>> learner.adapt(torch.nn.functional.cross_entropy(learner(features.support_x),
        ...                                                 features.support_y))
        >>> learner(features.query_x).shape
        torch.Size([10, 5])
    """

    def __init__(self, body: nn.Module, head: nn.Module, lr: float = 0.1,
                 transform: Optional[Callable] = None, first_order: bool = False,
                 adapt_transform: bool = False):
        check_lr(lr, "ANIL")
        super().__init__()
        self.body = body
        self.head = ANILHead(head, transform=transform, lr=lr, first_order=first_order,
                             adapt_transform=adapt_transform)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def encode_task(self, task: Task) -> Task:
        """The task with support_x and query_x replaced by body features (one body pass)."""
        n_support = task.support_x.shape[0]
        features = self.body(torch.cat([task.support_x, task.query_x]))
        return Task(features[:n_support], task.support_y, features[n_support:], task.query_y)

    def clone(self, first_order: Optional[bool] = None, **kwargs: Any) -> ANILHead:
        """A learner over the head only (see `ANILHead`); arguments as for `GBML.clone`."""
        return self.head.clone(first_order=first_order, **kwargs)

    def batched_form(self) -> FormOrReason:
        """The head's batched form, with the body's features as the encoding of every task
        (`encode`, and `encoder`, a module over the body, for the compiled path)."""
        form = per_task_reason(self) or self.head.batched_form()
        if isinstance(form, str):
            return form
        encoder = StackedEncoder(self.body)
        return dataclasses.replace(form, encode=encoder, encoder=encoder)

    def encode_stacked(self, support_x: torch.Tensor, query_x: torch.Tensor
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
        """`encode_task` for T tasks at once: (T, n_s, ...), (T, n_q, ...) -> body features
        (`StackedEncoder`)."""
        return StackedEncoder(self.body)(support_x, query_x)


class StackedEncoder(nn.Module):
    """ANIL's `encode_task` for T tasks at once, as a module over the body (its only
    submodule): (T, n_s, ...), (T, n_q, ...) -> body features (T, n_s, f), (T, n_q, f).

    Support and query of a task go through together, as in `encode_task`; vmap keeps
    batch-norm statistics per task, while the shared body weights make every convolution one
    ordinary batched convolution over all T·(n_s + n_q) images. Being a module, it runs under
    `torch.func.functional_call` with the body's parameters as arguments (the compiled path).

    Arguments:
        body: the feature extractor, (batch, *input_shape) -> (batch, features).

    Example:
        >>> encoder = StackedEncoder(torch.nn.Linear(8, 16))
        >>> support, query = encoder(torch.randn(4, 5, 8), torch.randn(4, 10, 8))
        >>> support.shape, query.shape
        (torch.Size([4, 5, 16]), torch.Size([4, 10, 16]))
    """

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, support_x: torch.Tensor, query_x: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        n_support = support_x.shape[1]
        # A function, not the module: vmap names what it maps, and a module's name is its
        # repr, which torch.compile cannot trace.
        features = torch.vmap(self._body)(torch.cat([support_x, query_x], dim=1))
        return features[:, :n_support], features[:, n_support:]

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _head(model: nn.Module) -> nn.Module:
    return getattr(model, "classifier", model)


@register_algorithm("anil", adapted=_head, reads=("adapt_transform",),
                    doc="ANIL (Raghu et al. 2020): the head adapts, on body features")
def build_anil(config: Any, model: nn.Module, transform: Optional[Callable]) -> ANIL:
    body, head = getattr(model, "features", None), getattr(model, "classifier", None)
    if not (isinstance(body, nn.Module) and isinstance(head, nn.Module)):
        raise ValueError(f"ANIL needs a model with `features` (body) and `classifier` "
                         f"(head); {type(model).__name__} has not. Use a CNN4 model.")
    return ANIL(body, head, transform=transform, lr=config.inner_lr,
                adapt_transform=config.adapt_transform)
