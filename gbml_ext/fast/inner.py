"""The functional inner loop: T tasks' fast weights, stacked, adapted in the same tensor ops.

Every fast weight of T tasks is one tensor (T, *param.shape); the model runs on all tasks at
once with `torch.func.functional_call` under `torch.vmap`, and inner-loop gradients come from
one `torch.autograd.grad` of the summed task losses (tasks are independent, so the gradient of
the sum holds each task's own gradient, (T, *shape)).

One step follows learn2learn's `GBML.adapt` (which the per-task engine runs, and which mirrors
the KFO paper's code, Sha-Lab/kfo; Arnold, Iqbal & Sha, AISTATS 2021):

    step 1:   θ₁ = θ₀ − lr · T_ψ₀(∇_θ L(θ₀))
    step k≥2: ψ_{k−1} = ψ_{k−2} − lr · ∇_ψ L(θ_{k−1})    only with adapt_transform=True; the
                                                          gradient reaches ψ_{k−2} through θ_{k−1}
              θ_k = θ_{k−1} − lr · T_ψ_{k−1}(∇_θ L(θ_{k−1}))

With `adapt_transform` the transform's parameters ψ are stacked per task as well.
"""
from __future__ import annotations

from typing import Dict, List, Tuple, Union

import torch
from torch import nn
from torch.func import functional_call

from ..engine import LossFn
from .direct import direct_forward, direct_loss, supports_direct
from .form import BatchedForm
from .support import check_supported

__all__ = ["StackedLearner"]

Params = Dict[str, torch.Tensor]


class StackedLearner:
    """The adapted state of T tasks under one learner's batched form, as stacked tensors.

    Arguments:
        learner: the `BatchedForm` (`gbml_ext.fast.form`), or a learner whose `batched_form()`
            gives one; the form's module parameters (and its transforms') are the
            meta-parameters.
        task_count: T.
        loss_fn: `(outputs, targets) -> scalar` for ONE task; it runs under `torch.vmap`.
        meta_graph: keep the graph to the meta-parameters as learn2learn does (training): model
            gradients keep their graph when second-order or when the transform adapts,
            transform gradients when second-order. With False (evaluation) every step starts
            from detached tensors, so memory stays that of one step.

    Example:
        >>> import gbml_ext
        >>> maml = gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.1)
        >>> learner = StackedLearner(maml, 4, torch.nn.functional.mse_loss, meta_graph=True)
        >>> x, y = torch.randn(4, 5, 3), torch.randn(4, 5, 1)
        >>> learner.step(x, y)
        >>> learner.run(x, y)[0].shape
        torch.Size([4])
    """

    def __init__(self, learner: Union[BatchedForm, nn.Module], task_count: int, loss_fn: LossFn,
                 meta_graph: bool):
        form = learner if isinstance(learner, BatchedForm) else check_supported(learner)
        self.module = form.module
        self.lr = form.lr
        self.loss_fn = loss_fn
        self.meta_graph = meta_graph
        self.adapt_transform = form.adapt_transform
        self.allow_unused = form.allow_unused
        second_order = meta_graph and not form.first_order
        self.model_graph = second_order or (meta_graph and self.adapt_transform)
        self.transform_graph = second_order
        self.steps_taken = 0
        self.names = [name for name, _ in self.module.named_parameters()]
        # Linear stacks skip vmap's per-call cost (gbml_ext.fast.direct).
        self.direct = supports_direct(self.module)
        self.transform_of: list = list(form.transform_of)
        self.transforms: List[nn.Module] = list(form.transforms)
        self.weights = [self._start(p, task_count, True) for p in self.module.parameters()]
        # Per transform module, its parameters: (T, *shape) when they adapt, else shared.
        self.psi: List[Params] = [
            {name: self._start(p, task_count, self.adapt_transform)
             for name, p in transform.named_parameters()}
            for transform in self.transforms]

    def _start(self, param: torch.Tensor, task_count: int, stacked: bool) -> torch.Tensor:
        """A meta-parameter's starting value, expanded to (T, *shape) when `stacked`."""
        value = param if self.meta_graph else param.detach()
        if not stacked:
            return value
        value = value.expand(task_count, *param.shape)
        return value if self.meta_graph else value.requires_grad_()

    def run(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Losses (T,) and outputs (T, n, ...) of every task at its current fast weights."""
        per_task_loss = direct_loss(self.loss_fn, y) if self.direct and x.dim() == 3 else None
        if per_task_loss is not None:
            outputs = direct_forward(self.module,
                                     dict(zip(self.names, self.weights, strict=True)), x)
            return per_task_loss(outputs, y), outputs

        def task_loss(params: Params, inputs: torch.Tensor, targets: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
            outputs = functional_call(self.module, params, (inputs,))
            return self.loss_fn(outputs, targets), outputs

        return torch.vmap(task_loss)(dict(zip(self.names, self.weights, strict=True)), x, y)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One inner step of every task on its support set x (T, n, ...), y (T, n, ...)."""
        losses, _ = self.run(x, y)
        adapt_psi = self.adapt_transform and self.steps_taken > 0
        psi_keys = [(index, name) for index, params in enumerate(self.psi) if adapt_psi
                    for name in params]
        wanted = self.weights + [self.psi[index][name] for index, name in psi_keys]
        gradients = torch.autograd.grad(
            losses.sum(), wanted, create_graph=self.model_graph,
            allow_unused=self.allow_unused)
        model_gradients = gradients[:len(self.weights)]
        if adapt_psi:
            for (index, name), gradient in zip(psi_keys, gradients[len(self.weights):],
                                               strict=True):
                if gradient is None:
                    continue
                psi = self.psi[index][name]
                if not self.meta_graph:
                    psi = psi.detach()
                if not self.transform_graph:
                    gradient = gradient.detach()
                self.psi[index][name] = self._carry(psi + gradient.mul(-self.lr))
        new_weights = []
        for weight, gradient, index in zip(self.weights, model_gradients, self.transform_of,
                                           strict=True):
            if gradient is None:
                new_weights.append(weight)
                continue
            if not self.meta_graph:
                weight, gradient = weight.detach(), gradient.detach()
            update = gradient if index is None else self._transformed(index, gradient)
            # Same arithmetic as learn2learn's DifferentiableSGD: p + (-lr * update).
            new_weights.append(self._carry(weight + update.mul(-self.lr)))
        self.weights = new_weights
        self.steps_taken += 1

    def _carry(self, value: torch.Tensor) -> torch.Tensor:
        """Without a meta-graph, a new value is a fresh leaf unless it must stay attached to
        the transform parameters it was computed with (their gradient at the next step)."""
        if self.meta_graph or value.requires_grad:
            return value
        return value.requires_grad_()

    def _transformed(self, index: int, gradients: torch.Tensor) -> torch.Tensor:
        """Applies transform `index` to each task's gradient in (T, *shape)."""
        transform, params = self.transforms[index], self.psi[index]
        if self.adapt_transform:
            return torch.vmap(lambda p, g: functional_call(transform, p, (g,)))(params, gradients)
        return torch.vmap(lambda g: functional_call(transform, params, (g,)))(gradients)
