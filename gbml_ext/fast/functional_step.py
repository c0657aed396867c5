"""The whole meta-step as one pure function, for `torch.compile` (`gbml_ext.fast.compiled`).

Every tensor is an argument: the meta-parameters θ (the module's), ψ (each transform's), φ (the
encoder's, ANIL's body) and the stacked tasks. A task adapts with `torch.func.grad`; `vmap`
runs all tasks; the meta-gradient is `torch.func.grad` of the mean query loss over them. With
no graph kept by autograd, the whole of it goes to `torch.compile(fullgraph=True)`, MAML's
second order included. Only the learner's `BatchedForm` (`gbml_ext.fast.form`) is read.

One inner step is learn2learn's `GBML.adapt`, as on the per-task and batched paths:

    step 1:   θ₁ = θ₀ + (−lr · T_ψ₀(g₀)),  g₀ = ∇_θ L(θ₀)
    step k≥2: with adapt_transform, ψ_{k−1} = ψ_{k−2} + (−lr · ∇_ψ L(θ_{k−1})), the gradient
              reaching ψ_{k−2} through the last step only, θ_{k−1} = θ_{k−2} − lr·T_ψ(g_{k−2});
              then θ_k = θ_{k−1} + (−lr · T_ψ_{k−1}(g_{k−1})).

`first_order` detaches ∇_ψ, and g unless the transform adapts (learn2learn keeps g's graph
then). The functions here run eagerly just as well, which is how the tests check them.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch.func import functional_call, grad

from ..engine import LossFn
from .form import BatchedForm
from .norms import ExactNorms

__all__ = ["MetaGradientFn", "MetaInputs", "curves_function", "meta_gradient_function",
           "meta_inputs"]

Params = Dict[str, torch.Tensor]
# (θ, [ψ per transform], φ): the meta-parameters as the pure functions take them.
MetaInputs = Tuple[Params, List[Params], Params]
# (θ, ψ, φ, support_x, support_y, query_x, query_y) -> (gradients, losses (T,), outputs).
MetaGradientFn = Callable[..., Tuple[MetaInputs, torch.Tensor, torch.Tensor]]
# The state of one task's inner loop: θ, ψ, and (θ before the last step, the gradient it took).
_State = Tuple[Params, List[Params], Optional[Tuple[Params, Params]]]


def meta_inputs(form: BatchedForm) -> MetaInputs:
    """The form's meta-parameters, detached, in the order the pure functions take them.

    Example:
        >>> import gbml_ext
        >>> theta, psi, phi = meta_inputs(gbml_ext.MAML(torch.nn.Linear(3, 1)).batched_form())
        >>> sorted(theta), psi, phi
        (['bias', 'weight'], [], {})
    """
    def values(module: Optional[torch.nn.Module]) -> Params:
        return {} if module is None else {n: p.detach() for n, p in module.named_parameters()}

    return (values(form.module), [values(t) for t in form.transforms], values(form.encoder))


def _detached(params: Params) -> Params:
    return {name: value.detach() for name, value in params.items()}


class _InnerLoop:
    """One task's inner loop under a form: pure functions of θ, ψ and the task's tensors."""

    def __init__(self, form: BatchedForm, loss_fn: LossFn, meta_graph: bool):
        self.form = form
        self.loss_fn = loss_fn
        self.names = [name for name, _ in form.module.named_parameters()]
        self.lr = float(form.lr)
        # What learn2learn keeps a graph through (meta_graph False: nothing to keep).
        self.detach_model = meta_graph and form.first_order and not form.adapt_transform
        self.detach_transform = meta_graph and form.first_order

    def loss(self, theta: Params, x: torch.Tensor, y: torch.Tensor
             ) -> Tuple[torch.Tensor, torch.Tensor]:
        outputs = functional_call(self.form.module, theta, (x,))
        return self.loss_fn(outputs, y), outputs

    def updated(self, theta: Params, psi: List[Params], gradients: Params) -> Params:
        """θ + (−lr · T_ψ(g)) for every parameter: learn2learn's DifferentiableSGD."""
        new = {}
        for name, index in zip(self.names, self.form.transform_of):
            gradient = gradients[name]
            if index is not None:
                gradient = functional_call(self.form.transforms[index], psi[index], (gradient,))
            new[name] = theta[name] + gradient.mul(-self.lr)
        return new

    def step(self, state: _State, x: torch.Tensor, y: torch.Tensor) -> _State:
        theta, psi, previous = state
        if self.form.adapt_transform and previous is not None:
            before, last_gradients = previous

            def support_loss(base: Params, transform: List[Params]) -> torch.Tensor:
                return self.loss(self.updated(base, transform, last_gradients), x, y)[0]

            # ∂L/∂θ_{k−2} through θ_{k−1} = θ_{k−2} + c is ∂L/∂θ_{k−1}, the model's gradient.
            gradients, psi_gradients = grad(support_loss, argnums=(0, 1))(before, psi)
            if self.detach_transform:
                psi_gradients = [_detached(g) for g in psi_gradients]
            psi = [{n: p[n] + g[n].mul(-self.lr) for n in p} for p, g in zip(psi, psi_gradients)]
        else:
            gradients = grad(lambda weights: self.loss(weights, x, y)[0])(theta)
        if self.detach_model:
            gradients = _detached(gradients)
        return self.updated(theta, psi, gradients), psi, (theta, gradients)


def _encoded(form: BatchedForm, phi: Params, support_x: torch.Tensor, query_x: torch.Tensor
             ) -> Tuple[torch.Tensor, torch.Tensor]:
    if form.encoder is None:
        return support_x, query_x
    return functional_call(form.encoder, phi, (support_x, query_x))


def meta_gradient_function(form: BatchedForm, steps: int, loss_fn: LossFn) -> MetaGradientFn:
    """The meta-gradient of the mean query loss of T stacked tasks, as one pure function.

    Arguments:
        form: the learner's batched form.
        steps: inner steps per task.
        loss_fn: `(outputs, targets) -> scalar` for one task (it runs under vmap).

    Returns:
        `fn(θ, ψ, φ, support_x, support_y, query_x, query_y) -> ((∇θ, ∇ψ, ∇φ), losses, outputs)`,
        with θ, ψ, φ as `meta_inputs` gives them and the tasks stacked (T, n, ...).

    Example:
        >>> import gbml_ext
        >>> form = gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.1).batched_form()
        >>> fn = meta_gradient_function(form, 1, torch.nn.functional.mse_loss)
        >>> x, y = torch.randn(4, 5, 3), torch.randn(4, 5, 1)
        >>> (d_theta, _, _), losses, outputs = fn(*meta_inputs(form), x, y, x, y)
        >>> d_theta["weight"].shape, losses.shape
        (torch.Size([1, 3]), torch.Size([4]))
    """
    inner = _InnerLoop(form, loss_fn, meta_graph=True)

    def task(theta: Params, psi: List[Params], support_x: torch.Tensor,
             support_y: torch.Tensor, query_x: torch.Tensor, query_y: torch.Tensor
             ) -> Tuple[torch.Tensor, torch.Tensor]:
        state: _State = (theta, psi, None)
        for _ in range(steps):
            state = inner.step(state, support_x, support_y)
        return inner.loss(state[0], query_x, query_y)

    def mean_loss(theta: Params, psi: List[Params], phi: Params, support_x: torch.Tensor,
                  support_y: torch.Tensor, query_x: torch.Tensor, query_y: torch.Tensor
                  ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        support_x, query_x = _encoded(form, phi, support_x, query_x)
        losses, outputs = torch.vmap(task, in_dims=(None, None, 0, 0, 0, 0))(
            theta, psi, support_x, support_y, query_x, query_y)
        return (losses / losses.shape[0]).sum(), (losses, outputs)

    def meta_gradient(*args: Any) -> Tuple[MetaInputs, torch.Tensor, torch.Tensor]:
        with ExactNorms():  # second derivatives of batch- and layer-norm under vmap
            gradients, (losses, outputs) = grad(mean_loss, argnums=(0, 1, 2),
                                                has_aux=True)(*args)
        return gradients, losses, outputs

    return meta_gradient


def curves_function(form: BatchedForm, steps: int, loss_fn: LossFn
                    ) -> Callable[..., Tuple[torch.Tensor, torch.Tensor]]:
    """Query losses and outputs of T stacked tasks after 0..`steps` inner steps, one pure
    function; the steps keep no graph to the meta-parameters (an evaluation's).

    Returns:
        `fn(θ, ψ, φ, support_x, support_y, query_x, query_y) -> (losses (T, steps + 1),
        outputs (T, steps + 1, n_q, ...))`.

    Example:
        >>> import gbml_ext
        >>> form = gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.1).batched_form()
        >>> fn = curves_function(form, 2, torch.nn.functional.mse_loss)
        >>> x, y = torch.randn(4, 5, 3), torch.randn(4, 5, 1)
        >>> fn(*meta_inputs(form), x, y, x, y)[0].shape
        torch.Size([4, 3])
    """
    inner = _InnerLoop(form, loss_fn, meta_graph=False)

    def task(theta: Params, psi: List[Params], support_x: torch.Tensor,
             support_y: torch.Tensor, query_x: torch.Tensor, query_y: torch.Tensor
             ) -> Tuple[torch.Tensor, torch.Tensor]:
        state: _State = (theta, psi, None)
        losses, outputs = [], []
        for step in range(steps + 1):
            if step:
                state = inner.step(state, support_x, support_y)
            loss, output = inner.loss(state[0], query_x, query_y)
            losses.append(loss)
            outputs.append(output)
        return torch.stack(losses), torch.stack(outputs)

    def curves(theta: Params, psi: List[Params], phi: Params, support_x: torch.Tensor,
               support_y: torch.Tensor, query_x: torch.Tensor, query_y: torch.Tensor
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        support_x, query_x = _encoded(form, phi, support_x, query_x)
        return torch.vmap(task, in_dims=(None, None, 0, 0, 0, 0))(
            theta, psi, support_x, support_y, query_x, query_y)

    return curves
