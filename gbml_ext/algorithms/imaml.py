"""iMAML: meta-gradients through the implicit function theorem, with no graph of the inner loop."""
from __future__ import annotations

import functools
import math
import operator
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

import learn2learn as l2l
import torch
from torch import nn

from .. import engine
from ..data.tasks import Task
from .gbml import GBML
from .spec import register_algorithm

__all__ = ["IMAML", "CGResult", "conjugate_gradient"]

Vectors = List[torch.Tensor]


class CGResult(NamedTuple):
    """How one conjugate-gradient solve ended.

    residual: ‖b − A x‖ (the recursive residual) when CG stopped.
    tolerance: the residual it aimed for, max(rtol · ‖b‖, atol).
    iterations: matrix-vector products taken (at most `max_steps`).
    """

    residual: float
    tolerance: float
    iterations: int

    @property
    def converged(self) -> bool:
        return self.residual <= self.tolerance


def _dot(a: Vectors, b: Vectors) -> torch.Tensor:
    return functools.reduce(operator.add, [(x * y).sum() for x, y in zip(a, b, strict=True)])


def conjugate_gradient(apply: Callable[[Vectors], Vectors], b: Vectors, max_steps: int,
                       rtol: float = 0.0, atol: float = 0.0) -> Tuple[Vectors, CGResult]:
    """Solves A x = b for a symmetric positive-definite A given only as x ↦ A x.

    Arguments:
        apply: the matrix-vector product, on lists of tensors shaped like `b`.
        b: right-hand side, a list of tensors (e.g. one per parameter).
        max_steps: most products with A; CG starts from x = 0.
        rtol, atol: stop once ‖b − A x‖ ≤ max(rtol · ‖b‖, atol).

    Stops early, unconverged, if it meets a direction p with pᵀA p ≤ 0 (A not positive definite).

    Example:
        >>> A = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> b = torch.ones(2, dtype=torch.float64)
        >>> (x,), result = conjugate_gradient(lambda v: [A @ v[0]], [b], max_steps=2)
        >>> torch.allclose(A @ x, b), result.iterations
        (True, 2)
    """
    x = [torch.zeros_like(t) for t in b]
    r = [t.clone() for t in b]
    p = [t.clone() for t in b]
    rr = _dot(r, r)
    tolerance = max(rtol * math.sqrt(float(rr)), atol)
    steps = 0
    while steps < max_steps and math.sqrt(float(rr)) > tolerance:
        ap = apply(p)
        steps += 1
        curvature = _dot(p, ap)
        if curvature <= 0:
            break
        alpha = rr / curvature
        x = [xi + alpha * pi for xi, pi in zip(x, p, strict=True)]
        r = [ri - alpha * api for ri, api in zip(r, ap, strict=True)]
        rr_new = _dot(r, r)
        p = [ri + (rr_new / rr) * pi for ri, pi in zip(r, p, strict=True)]
        rr = rr_new
    return x, CGResult(math.sqrt(float(rr)), tolerance, steps)


class IMAML(GBML):
    """Implicit MAML (Rajeswaran, Finn, Kakade & Levine, NeurIPS 2019, "Meta-Learning with
    Implicit Gradients").

    Inner problem, per task: φ ≈ argmin_φ L_s(φ) + (λ/2)‖φ − θ‖², solved by `steps` gradient
    steps of size `lr` from φ = θ (the proximal term's gradient is λ(φ − θ)). No graph of these
    steps is kept, so memory does not grow with `steps`. If φ is the exact minimizer,
    dφ/dθ = (I + H/λ)⁻¹ with H = ∇²L_s(φ), and the task's meta-gradient is

        g = (I + H/λ)⁻¹ ∇_φ L_q(φ),

    found by conjugate gradient with Hessian-vector products of the support loss at φ (double
    backward, w.r.t. φ only). `accumulate_meta_gradient` adds the mean of g over the tasks to
    the meta-parameters' `.grad`; `last_cg_results` holds one `CGResult` per task of that call.

    Evaluation (`engine.run_task(..., train=False)`, `engine.adaptation_curve`) adapts a
    `clone()` with the same proximal steps, anchored at the parameters of the first `adapt`.
    The meta-gradient comes only from `accumulate_meta_gradient`; the batched path refuses it.

    Arguments:
        module: the model; inputs (batch, *input_shape).
        lr: inner step size α; stable for α (λ + λ_max(H)) < 2.
        lam: proximal strength λ > 0: large λ keeps φ near θ, small λ lets φ fit the support set.
        cg_steps: most CG iterations (Hessian-vector products) per task.
        cg_tol, cg_atol: CG stops once ‖residual‖ ≤ max(cg_tol · ‖∇L_q(φ)‖, cg_atol).
        allow_unused, allow_nograd: as for `GBML`.

    Example:
        >>> imaml = IMAML(torch.nn.Linear(3, 1), lr=0.1, lam=1.0, cg_steps=3)
        >>> task = Task(torch.randn(8, 3), torch.randn(8, 1), torch.randn(8, 3), torch.randn(8, 1))
        >>> outcomes = imaml.accumulate_meta_gradient([task], steps=5)
        >>> imaml.module.weight.grad.shape, len(imaml.last_cg_results)
        (torch.Size([1, 3]), 1)
    """

    def __init__(self, module: nn.Module, lr: float = 0.1, lam: float = 1.0, cg_steps: int = 5,
                 cg_tol: float = 1e-4, cg_atol: float = 0.0, **kwargs: Any):
        if kwargs.pop("transform", None) is not None:
            raise ValueError("IMAML takes plain gradient inner steps: drop the transform argument.")
        kwargs.pop("first_order", None)
        for name, value, example in (("lr", lr, 0.1), ("lam", lam, 1.0)):
            try:  # a string such as "0.1" or a bool is refused, not read as a number
                valid = not isinstance(value, (str, bool)) and math.isfinite(value) and value > 0
            except TypeError:
                valid = False
            if not valid:
                raise ValueError(f"IMAML got {name}={value!r}: pass a finite {name} > 0, "
                                 f"e.g. {name}={example}.")
        if int(cg_steps) != cg_steps or cg_steps < 1:
            raise ValueError(f"IMAML got cg_steps={cg_steps}: pass an integer cg_steps >= 1, "
                             f"e.g. cg_steps=5.")
        if not (cg_tol >= 0 and cg_atol >= 0):
            raise ValueError(f"IMAML got cg_tol={cg_tol}, cg_atol={cg_atol}: pass cg_tol >= 0 "
                             f"and cg_atol >= 0, e.g. cg_tol=1e-4, cg_atol=0.")
        super().__init__(module, transform=None, lr=lr, first_order=True, **kwargs)
        self.lam, self.cg_steps = float(lam), int(cg_steps)
        self.cg_tol, self.cg_atol = float(cg_tol), float(cg_atol)
        self.last_cg_results: List[CGResult] = []
        self._anchor: Optional[List[torch.Tensor]] = None

    def clone(self, first_order: Optional[bool] = None, allow_unused: Optional[bool] = None,
              allow_nograd: Optional[bool] = None,
              adapt_transform: Optional[bool] = None) -> "IMAML":
        """A learner whose `adapt` takes proximal steps on its own fast weights (always first
        order: `first_order` and `adapt_transform` are accepted for the engine and ignored)."""
        learner = type(self)(
            l2l.clone_module(self.module), lr=self.lr, lam=self.lam, cg_steps=self.cg_steps,
            cg_tol=self.cg_tol, cg_atol=self.cg_atol,
            allow_unused=self.allow_unused if allow_unused is None else allow_unused,
            allow_nograd=self.allow_nograd if allow_nograd is None else allow_nograd)
        learner._is_clone = True
        return learner

    def adapt(self, loss: torch.Tensor, first_order: Optional[bool] = None,
              allow_nograd: Optional[bool] = None, allow_unused: Optional[bool] = None) -> None:
        """One step on `loss` + (λ/2)‖φ − φ₀‖², φ₀ the parameters at the first `adapt`.

        The step is φ ← φ − α (∇loss(φ) + λ (φ − φ₀)); `loss` is checked as by `GBML.adapt`,
        and, as there, only a clone adapts.
        """
        self._refuse_unless_clone()
        before = [p.detach() for p in self.module.parameters()]
        if self._anchor is None:
            self._anchor = [p.clone() for p in before]
        super().adapt(loss, first_order=True, allow_nograd=allow_nograd,
                      allow_unused=allow_unused)
        pulls = [-self.lr * self.lam * (old - anchor) if p.requires_grad else None
                 for p, old, anchor in zip(self.module.parameters(), before, self._anchor,
                                           strict=True)]
        l2l.update_module(self.module, updates=pulls)

    def accumulate_meta_gradient(self, tasks: Sequence[Task], steps: int,
                                 loss_fn: Optional[engine.LossFn] = None
                                 ) -> List[engine.TaskOutcome]:
        """Adds mean over `tasks` of (I + H/λ)⁻¹ ∇L_q(φ) to `.grad`; returns detached outcomes."""
        meta_params = [p for p in self.module.parameters() if p.requires_grad]
        self.last_cg_results = []
        outcomes = []
        for task in tasks:
            task_loss_fn = loss_fn or engine.default_loss(task.support_y)
            outcome, grads = self._task_meta_gradient(self.encode_task(task), steps, task_loss_fn)
            outcomes.append(outcome)
            with torch.no_grad():
                for theta, g in zip(meta_params, grads, strict=True):
                    step = g / len(tasks)
                    theta.grad = step if theta.grad is None else theta.grad + step
        return outcomes

    def _task_meta_gradient(self, task: Task, steps: int, loss_fn: engine.LossFn
                            ) -> Tuple[engine.TaskOutcome, Vectors]:
        learner = self.clone()
        l2l.detach_module(learner.module, keep_requires_grad=True)
        for _ in range(steps):
            learner.adapt(loss_fn(learner(task.support_x), task.support_y))
            l2l.detach_module(learner.module, keep_requires_grad=True)
        phi = [p for p in learner.module.parameters() if p.requires_grad]
        query_outputs = learner(task.query_x)
        query_loss = loss_fn(query_outputs, task.query_y)
        b = _grads(query_loss, phi)
        outcome = engine.TaskOutcome(query_loss.detach(),
                                     engine.accuracy(query_outputs.detach(), task.query_y))
        del query_loss, query_outputs
        support_grads = torch.autograd.grad(loss_fn(learner(task.support_x), task.support_y),
                                            phi, create_graph=True, allow_unused=True)
        pairs = [(i, g) for i, g in enumerate(support_grads) if g is not None and g.requires_grad]

        def apply(v: Vectors) -> Vectors:  # (I + H/λ) v
            if not pairs:
                return [t.clone() for t in v]
            hv = torch.autograd.grad([g for _, g in pairs], phi, [v[i] for i, _ in pairs],
                                     retain_graph=True, allow_unused=True)
            return [t if h is None else t + h / self.lam for t, h in zip(v, hv, strict=True)]

        grads, result = conjugate_gradient(apply, b, self.cg_steps, self.cg_tol, self.cg_atol)
        self.last_cg_results.append(result)
        return outcome, [g.detach() for g in grads]


def _grads(loss: torch.Tensor, params: Vectors) -> Vectors:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]


@register_algorithm("imaml", reads=("imaml_lam", "cg_steps"),
                    doc="iMAML (Rajeswaran et al. 2019): implicit meta-gradients",
                    no_transform="iMAML takes plain proximal gradient steps: set "
                                 "algorithm.transform = 'none'.")
def build_imaml(config: Any, model: nn.Module, transform: Optional[Callable]) -> IMAML:
    return IMAML(model, lr=config.inner_lr, lam=config.imaml_lam, cg_steps=config.cg_steps)
