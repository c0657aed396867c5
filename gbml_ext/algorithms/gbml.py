"""GBML: learn2learn-style fast weights with an optional learned gradient transform.

One class covers MAML (no transform), FOMAML (`first_order=True`), Meta-SGD (per-parameter
learning rates) and Meta-KFO (Kronecker-factored transform).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import learn2learn as l2l
import torch
from torch import nn

from ..fast.form import BatchedForm, FormOrReason
from .base import MetaLearner, per_task_reason
from .spec import register_algorithm
from .update import (
    NOT_FROM_LEARNER,
    build_parameter_update,
    check_has_parameters,
    check_lr,
    reached_nodes,
)

__all__ = ["GBML", "MAML"]

NOT_A_CLONE = (
    "adapt() was called on the meta-learner itself ({name}), which would overwrite its "
    "meta-parameters: call clone() first and adapt the clone, learner = meta_learner.clone(); "
    "learner.adapt(loss)."
)

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
        lr: inner-loop learning rate α, a positive finite number.
        first_order: drop second-order terms (FOMAML).
        adapt_transform: also adapt the transform's parameters in the inner loop (from the
            second step on, as in learn2learn).
        allow_unused: allow parameters the loss does not depend on (their update is None).
        allow_nograd: skip parameters with `requires_grad=False`.

    Raises:
        ValueError: `lr` is not a positive finite number, the module has no parameters, or
            `transform` selects parameters the module does not have (or none at all).

    Example:
        >>> model = torch.nn.Linear(3, 1)
        >>> maml = GBML(model, lr=0.1)
        >>> x, y = torch.randn(8, 3), torch.randn(8, 1)
        >>> learner = maml.clone()
        >>> learner.adapt(torch.nn.functional.mse_loss(learner(x), y))
        >>> torch.nn.functional.mse_loss(learner(x), y).backward()  # fills model.weight.grad
        >>> model.weight.grad.shape
        torch.Size([1, 3])
    """

    def __init__(self, module: nn.Module, transform: Optional[Callable] = None, lr: float = 0.1,
                 first_order: bool = False, adapt_transform: bool = False,
                 allow_unused: bool = False, allow_nograd: bool = False, **kwargs: Any):
        check_lr(lr, type(self).__name__)
        check_has_parameters(module, type(self).__name__)
        if "compute_update" not in kwargs:
            kwargs["compute_update"] = build_parameter_update(module, transform)
        super().__init__(module, transform, lr=lr, adapt_transform=adapt_transform,
                         first_order=first_order, allow_unused=allow_unused,
                         allow_nograd=allow_nograd, **kwargs)

    # True on what `clone()` returns: `adapt` refuses to step the meta-learner itself.
    _is_clone = False

    def clone(self, first_order: Optional[bool] = None, allow_unused: Optional[bool] = None,
              allow_nograd: Optional[bool] = None, adapt_transform: Optional[bool] = None
              ) -> "GBML":
        """Returns a learner whose `adapt` changes its own fast weights, never `self`'s.

        The clone stays in the autograd graph of `self`'s parameters, so the meta-gradient
        flows back through it. It has `self`'s type (a `MAML` clones to a `MAML`) but is set up
        by `GBML.__init__`, not by the subclass's constructor, so subclasses with their own
        constructor signature (MAML, MetaSGD, Reptile) clone without extra work.

        Arguments:
            first_order, allow_unused, allow_nograd, adapt_transform: override `self`'s
                setting for the clone; None keeps it.

        Example:
            >>> maml = MAML(torch.nn.Linear(3, 1), lr=0.1)
            >>> type(maml.clone(first_order=True)).__name__
            'MAML'
        """
        learner = type(self).__new__(type(self))
        GBML.__init__(
            learner,
            module=l2l.clone_module(self.module),
            transform=self.transform,
            lr=self.lr,
            first_order=self.first_order if first_order is None else first_order,
            adapt_transform=self.adapt_transform if adapt_transform is None else adapt_transform,
            allow_unused=self.allow_unused if allow_unused is None else allow_unused,
            allow_nograd=self.allow_nograd if allow_nograd is None else allow_nograd,
            compute_update=l2l.clone_module(self.compute_update),
        )
        learner._is_clone = True
        return learner

    def batched_form(self) -> FormOrReason:
        """The fast path's form of this learner: its module adapts, each parameter's update is
        its transform's (none: the gradient; Meta-SGD: learned rates; Meta-KFO: Kronecker
        maps), with `lr`, `first_order` and `adapt_transform` as set (`gbml_ext.fast.form`)."""
        reason = per_task_reason(self)
        if reason is not None:
            return reason
        update = self.compute_update
        return BatchedForm(module=self.module, lr=self.lr, first_order=bool(self.first_order),
                           adapt_transform=bool(self.adapt_transform),
                           allow_unused=bool(self.allow_unused),
                           transform_of=tuple(update.transforms_indices),
                           transforms=tuple(update.transforms_modules))

    def adapt(self, loss: torch.Tensor, first_order: Optional[bool] = None,
              allow_nograd: Optional[bool] = None, allow_unused: Optional[bool] = None) -> None:
        """Takes one transformed gradient step on `loss` (a scalar), in place on the fast weights.

        Arguments:
            loss: a scalar computed from this learner's outputs, `learner(x)`.
            first_order, allow_nograd, allow_unused: override the learner's setting for this
                step; None keeps it.

        Raises:
            ValueError: `self` is the meta-learner rather than one of its clones (call
                `clone()` first), or the loss is not a scalar, does not require grad, was not
                computed from this learner (e.g. from the meta-model), or misses some
                parameters.

        Example:
            >>> learner = GBML(torch.nn.Linear(3, 1), lr=0.1).clone()
            >>> learner.adapt(learner(torch.randn(4, 3)).pow(2).mean())
        """
        self._refuse_unless_clone()
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
        try:
            self._adapt_transform(loss, first_order, allow_unused)
            super().adapt(loss.reshape(()), first_order=first_order, allow_nograd=allow_nograd,
                          allow_unused=allow_unused)
        except RuntimeError as error:
            explained = self._explain_failed_step(error, loss)
            if explained is error:
                raise
            raise explained from None

    def _refuse_unless_clone(self) -> None:
        """Raises the `ValueError` of `adapt` on the meta-learner itself (not a clone)."""
        if not self._is_clone:
            raise ValueError(NOT_A_CLONE.format(name=type(self).__name__))

    def _adapt_transform(self, loss: torch.Tensor, first_order: Optional[bool],
                         allow_unused: Optional[bool]) -> None:
        """The transform's own inner step, from the second step on (learn2learn's semantics and
        the KFO code's `if step > 0`): ψ ← ψ − lr · ∇ψ loss, before the model's step.

        learn2learn takes this step inside `GBML.adapt`, but for a first-order clone it frees
        the graph the model's step still needs, and with no transform parameters it fails; so
        it is taken here, keeping the graph, and learn2learn's own branch is skipped."""
        if not (self.adapt_transform and getattr(self, "_params_updated", False)):
            return
        params = list(self.compute_update.parameters())
        if params:
            first = self.first_order if first_order is None else first_order
            unused = self.allow_unused if allow_unused is None else allow_unused
            gradients = torch.autograd.grad(loss, params, create_graph=not first,
                                            retain_graph=True, allow_unused=unused)
            self.diff_sgd(self.compute_update, gradients)
        self._params_updated = False

    def _explain_failed_step(self, error: RuntimeError, loss: torch.Tensor) -> Exception:
        """A clear `ValueError` for a failed inner gradient, or `error` itself if unknown."""
        text = str(error)
        named = list(self.module.named_parameters())
        if "does not require grad" in text:
            frozen = [name for name, p in named if not p.requires_grad]
            return ValueError(
                f"adapt() cannot differentiate parameters that do not require grad {frozen}. "
                f"Build the learner with allow_nograd=True to keep them fixed."
            )
        if "not have been used in the graph" in text:
            reached = reached_nodes(loss)
            unused = [name for name, p in named
                      if torch.autograd.graph.get_gradient_edge(p).node not in reached]
            if len(unused) == len(named):
                return ValueError(NOT_FROM_LEARNER)
            if unused:
                return ValueError(
                    f"adapt() got a loss that does not depend on parameters {unused}. Build the "
                    f"learner with allow_unused=True to leave them unchanged."
                )
        return error


class MAML(GBML):
    """MAML (Finn et al. 2017): `GBML` with no transform. `first_order=True` gives FOMAML.

    Arguments:
        module: the model.
        lr: inner-loop learning rate α, a positive finite number.
        first_order: drop second-order terms (FOMAML).
        **kwargs: `adapt_transform`, `allow_unused`, `allow_nograd`, as for `GBML`.

    Raises:
        ValueError: a non-None `transform` is passed (use `GBML` for that), or a bad `lr`.

    Example:
        >>> maml = MAML(torch.nn.Linear(3, 1), lr=0.4, first_order=True)
        >>> isinstance(maml, GBML), isinstance(maml.clone(), MAML)
        (True, True)
    """

    def __init__(self, module: nn.Module, lr: float = 0.1, first_order: bool = False,
                 **kwargs: Any):
        if kwargs.pop("transform", None) is not None:
            raise ValueError(
                "MAML takes plain gradient steps and has no transform. Use "
                "GBML(model, transform=..., lr=...) for a transformed step."
            )
        super().__init__(module, transform=None, lr=lr, first_order=first_order, **kwargs)


@register_algorithm("maml", reads=("adapt_transform",),
                    doc="MAML (Finn et al. 2017); with a transform, Meta-KFO")
def build_maml(config: Any, model: nn.Module, transform: Optional[Callable]) -> GBML:
    return GBML(model, transform=transform, lr=config.inner_lr,
                adapt_transform=config.adapt_transform)


@register_algorithm("fomaml", reads=("adapt_transform",),
                    doc="first-order MAML (Finn et al. 2017)")
def build_fomaml(config: Any, model: nn.Module, transform: Optional[Callable]) -> GBML:
    return GBML(model, transform=transform, lr=config.inner_lr, first_order=True,
                adapt_transform=config.adapt_transform)
