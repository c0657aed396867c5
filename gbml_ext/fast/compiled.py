"""The compiled path: first-order inner steps and evaluation with an inductor-compiled loss.

torch 2.14 cannot compile a double backward ("aot_autograd does not currently support double
backward"), so MAML's second-order meta-gradient cannot be compiled. What can be compiled is
every step that keeps no graph through the inner gradients: FOMAML's meta-iterations, and the
evaluation of any plain GBML (MAML or FOMAML), which adapts first-order. Here the task loss
`(fast weights, x, y) -> (loss, outputs)` of the learner's module is compiled with
`torch.compile(dynamic=False)` once per module (one graph per input shape and grad mode), and
each task runs a first-order loop on fresh leaves: w ← w + (-lr · g), learn2learn's arithmetic.
The numbers equal the per-task engine's up to float rounding (tests/test_fast_compiled.py).

Compiling costs seconds to tens of seconds on a CPU (less when inductor's on-disk cache is warm),
paid once per module, so the path suits long runs and large evaluations, not short ones. Dynamo
keeps at most `torch._dynamo.config.cache_size_limit` graphs per function; many modules compiled
in one process beyond that fall back to eager, with dynamo's warning.

Supported: a learner whose batched form (`gbml_ext.fast.form`) has no encoding and no gradient
transform, such as `GBML` as MAML and FOMAML (Finn et al. 2017), every parameter adapting, no
batch-norm running statistics. Meta-training also needs `first_order`.
"""
from __future__ import annotations

import weakref
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.func import functional_call

from ..data.tasks import Task
from ..engine import LossFn, TaskOutcome, accuracy, default_loss
from .form import BatchedForm
from .support import BatchedPathUnsupported, batched_form_of, unsupported_reason

__all__ = ["CompiledPathUnsupported", "check_compiled", "compiled_adaptation_curves",
           "compiled_meta_gradient", "compiled_unsupported_reason"]

Params = Dict[str, torch.Tensor]
TaskLoss = Callable[[Params, torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]
_COMPILED: weakref.WeakKeyDictionary[nn.Module, Dict[object, TaskLoss]] = (
    weakref.WeakKeyDictionary())


class CompiledPathUnsupported(BatchedPathUnsupported):
    """The compiled path cannot run this algorithm (or cannot train it: second order).

    Raised by `compiled_meta_gradient`, `compiled_adaptation_curves` and
    `choose_path("compiled", ...)`; the message says why (not a plain MAML/FOMAML, a
    transform, MAML's double backward) and to use `algorithm.path = 'per-task'` or 'auto'. A
    `BatchedPathUnsupported`, hence a `ValueError`.
    """


def compiled_unsupported_reason(algorithm: nn.Module, training: bool) -> Optional[str]:
    """Why the compiled path cannot run `algorithm` (meta-training when `training`, else
    evaluation), or None when it can.

    Example:
        >>> import gbml_ext
        >>> compiled_unsupported_reason(gbml_ext.MAML(torch.nn.Linear(3, 1)), training=False)
        >>> compiled_unsupported_reason(gbml_ext.MAML(torch.nn.Linear(3, 1)), True)[:30]
        'torch 2.14 cannot compile MAML'
    """
    form = batched_form_of(algorithm)
    if isinstance(form, str) or form.encode is not None:  # per task only, or an encoding
        return (f"The compiled path runs plain GBML learners (MAML, FOMAML), not "
                f"{type(algorithm).__name__}.")
    reason = unsupported_reason(algorithm)  # batch-norm statistics, frozen parameters
    if reason is not None:
        return reason.replace("batched path", "compiled path").replace("under vmap", "")
    if not form.plain_sgd:
        return "The compiled path runs plain SGD inner steps; this learner has a transform."
    if training and not form.first_order:
        return ("torch 2.14 cannot compile MAML's double backward; meta-train first-order "
                "(algorithm.name = 'fomaml') or on the per-task path.")
    return None


def check_compiled(algorithm: nn.Module, training: bool) -> BatchedForm:
    """`algorithm`'s batched form, or a `CompiledPathUnsupported` saying why it cannot run."""
    reason = compiled_unsupported_reason(algorithm, training)
    form = batched_form_of(algorithm)
    if reason is not None or isinstance(form, str):
        raise CompiledPathUnsupported(
            f"{reason} Use algorithm.path = 'per-task' (or 'auto') instead.")
    return form


def _task_loss(module: nn.Module, loss_fn: Optional[LossFn], targets: torch.Tensor) -> TaskLoss:
    """The compiled `(params, x, y) -> (loss, outputs)` of `module`, built once per loss."""
    key: object = loss_fn if loss_fn is not None else targets.dtype  # default_loss's choice
    per_module = _COMPILED.setdefault(module, {})
    if key not in per_module:
        criterion = loss_fn or default_loss(targets)

        def task_loss(params: Params, x: torch.Tensor, y: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
            outputs = functional_call(module, params, (x,))
            return criterion(outputs, y), outputs

        per_module[key] = torch.compile(task_loss, dynamic=False)
    return per_module[key]


def _leaves(learner: BatchedForm) -> Params:
    """The meta-parameters' values as fresh leaves: no graph to the meta-parameters."""
    return {n: p.detach().requires_grad_() for n, p in learner.module.named_parameters()}


def _adapt(loss: TaskLoss, learner: BatchedForm, task: Task, steps: int) -> Params:
    """Fast weights after `steps` first-order SGD steps, as fresh leaves."""
    params = _leaves(learner)
    for _ in range(steps):
        params = _step(loss, learner, params, task)
    return params


def _step(loss: TaskLoss, learner: BatchedForm, params: Params, task: Task) -> Params:
    gradients = torch.autograd.grad(loss(params, task.support_x, task.support_y)[0],
                                    list(params.values()))
    return {n: (w + g.mul(-float(learner.lr))).detach().requires_grad_()
            for (n, w), g in zip(params.items(), gradients, strict=True)}


def compiled_meta_gradient(algorithm: nn.Module, tasks: Sequence[Task], steps: int,
                           loss_fn: Optional[LossFn] = None) -> List[TaskOutcome]:
    """Adds FOMAML's meta-gradient of the mean query loss over `tasks` to the parameters'
    `.grad`: each task's query gradient at its adapted weights. The contract and the numbers
    of `gbml_ext.engine.accumulate_meta_gradient` for a first-order GBML.

    Arguments:
        algorithm: a first-order `GBML` without transform (FOMAML).
        tasks: support (n_s, ...) and query (n_q, ...) tensors per task.
        steps: inner steps per task.
        loss_fn: `(outputs, targets) -> scalar`; cross-entropy or MSE by target dtype if None.

    Returns:
        one detached `TaskOutcome` per task.

    Example:
        >>> import gbml_ext
        >>> fomaml = gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.1, first_order=True)
        >>> tasks = [Task(torch.randn(6, 3), torch.randn(6, 1), torch.randn(4, 3),
        ...               torch.randn(4, 1))]
        >>> len(compiled_meta_gradient(fomaml, tasks, 1))   # doctest: +SKIP
        1
    """
    learner = check_compiled(algorithm, training=True)
    outcomes: List[TaskOutcome] = []
    meta_params = list(learner.module.parameters())
    for task in tasks:
        loss = _task_loss(learner.module, loss_fn, task.support_y)
        params = _adapt(loss, learner, task, steps)
        query_loss, outputs = loss(params, task.query_x, task.query_y)
        gradients = torch.autograd.grad(query_loss / len(tasks), list(params.values()))
        for param, gradient in zip(meta_params, gradients, strict=True):
            param.grad = gradient if param.grad is None else param.grad + gradient
        outcomes.append(TaskOutcome(query_loss.detach(),
                                    accuracy(outputs.detach(), task.query_y)))
    return outcomes


def compiled_adaptation_curves(algorithm: nn.Module, tasks: Sequence[Task], steps: int,
                               loss_fn: Optional[LossFn] = None) -> List[List[TaskOutcome]]:
    """Query loss and accuracy after 0..`steps` inner steps for every task (what
    `gbml_ext.engine.adaptation_curve` gives per task), with the compiled loss; the query is
    scored under no_grad.

    Arguments:
        algorithm: a `GBML` without transform (MAML or FOMAML, Finn et al. 2017).
        tasks: support (n_s, ...) and query (n_q, ...) tensors per task, or a `TaskBatch`.
        steps: the largest number of inner steps scored.
        loss_fn: `(outputs, targets) -> scalar`; cross-entropy or MSE by target dtype if None.

    Returns:
        one list of `steps + 1` detached outcomes per task; entry k is after k steps.

    Raises:
        CompiledPathUnsupported: a learner the compiled path cannot run
            (`compiled_unsupported_reason`).

    Example:
        >>> import gbml_ext
        >>> maml = gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.1)
        >>> tasks = [Task(torch.randn(6, 3), torch.randn(6, 1), torch.randn(4, 3),
        ...               torch.randn(4, 1))]
        >>> curves = compiled_adaptation_curves(maml, tasks, 2)  # doctest: +SKIP
        >>> len(curves), len(curves[0])                          # doctest: +SKIP
        (1, 3)
    """
    learner = check_compiled(algorithm, training=False)
    curves: List[List[TaskOutcome]] = []
    for task in tasks:
        loss = _task_loss(learner.module, loss_fn, task.support_y)
        params = _leaves(learner)
        curve = []
        for step in range(steps + 1):
            if step:
                params = _step(loss, learner, params, task)
            with torch.no_grad():
                query_loss, outputs = loss(params, task.query_x, task.query_y)
            curve.append(TaskOutcome(query_loss, accuracy(outputs, task.query_y)))
        curves.append(curve)
    return curves
