"""The compiled path: a meta-batch's whole meta-step (or evaluation) as one compiled graph.

`gbml_ext.fast.functional_step` writes the step as one pure function of the meta-parameters
and the stacked tasks: `torch.func.grad` of the mean over `vmap` of each task's query loss after
inner steps taken with `torch.func.grad`. Autograd keeps no graph, so `torch.compile` takes all
of it (`fullgraph=True`), MAML's second order included: MAML, FOMAML, Meta-SGD, Meta-KFO (linear
or not, PSD, adapted transform), ANIL with any of these heads (the body inside the graph),
LinNet heads, frozen layers (`FrozenTransform`), batch-norm on the batch's statistics. The
numbers are the per-task engine's up to float rounding (tests/test_compiled_step.py).

Compiling costs seconds to minutes on a CPU, paid on the first call for each learner, tensor
shapes, steps and mode (meta-gradient or curves), and then taken from the cache here; inductor
also keeps its kernels on disk (`TORCHINDUCTOR_CACHE_DIR`, else torch's default), so a second
process compiles faster. `needs_compiling` says whether a call will compile and
`first_call_seconds` how long the latest first call took (compiling included). A learner this
path cannot run (no batched form: Reptile, iMAML, learn2learn's MAML; a module dynamo cannot
trace) is refused with a `CompiledPathUnsupported` naming the reason and the path to use.

Unlike the per-task path, a parameter the query loss never reaches gets a zero meta-gradient,
not `.grad = None`.
"""
from __future__ import annotations

import time
import types
import weakref
from dataclasses import dataclass
from typing import Callable, Dict, Hashable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..data.tasks import Task
from ..engine import LossFn, TaskOutcome, accuracy, default_loss
from .form import BatchedForm
from .functional_step import curves_function, meta_gradient_function, meta_inputs
from .meta import _outcomes
from .support import (
    BatchedPathUnsupported,
    batched_form_of,
    check_equal_shapes,
    stack_tasks,
    unsupported_reason,
)

__all__ = ["CompiledPathUnsupported", "check_compiled", "compiled_adaptation_curves",
           "compiled_meta_gradient", "compiled_unsupported_reason", "first_call_seconds",
           "needs_compiling"]

_HINT = "Use algorithm.path = 'per-task' (or 'auto') instead."


class CompiledPathUnsupported(BatchedPathUnsupported):
    """The compiled path cannot run this learner.

    Raised by `compiled_meta_gradient`, `compiled_adaptation_curves` and
    `choose_path("compiled", ...)`; the one-line message says why (no batched form, batch-norm
    running statistics, frozen parameters, a step torch.compile cannot trace) and which path
    to use. A `BatchedPathUnsupported`, hence a `ValueError`.
    """


@dataclass
class _Entry:
    """One compiled function and how long its first call took (None: not called through)."""

    function: Callable
    first_call_s: Optional[float] = None


_CACHE: weakref.WeakKeyDictionary[nn.Module, Dict[Hashable, _Entry]] = (
    weakref.WeakKeyDictionary())
_FIRST_CALL_S: weakref.WeakKeyDictionary[nn.Module, float] = weakref.WeakKeyDictionary()


def compiled_unsupported_reason(algorithm: nn.Module) -> Optional[str]:
    """Why the compiled path cannot run `algorithm`, or None when it can (as far as can be
    told before tracing it).

    Example:
        >>> import gbml_ext
        >>> compiled_unsupported_reason(gbml_ext.MAML(torch.nn.Linear(3, 1))) is None
        True
        >>> compiled_unsupported_reason(gbml_ext.Reptile(torch.nn.Linear(3, 1)))[:22]
        'Reptile forms its own '
    """
    reason = unsupported_reason(algorithm)
    if reason is not None:
        return reason.replace("batched path", "compiled path")
    form = batched_form_of(algorithm)
    if not isinstance(form, str) and form.encode is not None and form.encoder is None:
        return (f"{type(algorithm).__name__}'s batched form encodes tasks without an encoder "
                f"module (BatchedForm.encoder), which the compiled graph needs.")
    return None


def check_compiled(algorithm: nn.Module) -> BatchedForm:
    """`algorithm`'s batched form, or a `CompiledPathUnsupported` saying why it cannot run.

    Example:
        >>> import gbml_ext
        >>> check_compiled(gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.2)).lr
        0.2
    """
    reason = compiled_unsupported_reason(algorithm)
    form = batched_form_of(algorithm)
    if reason is not None or isinstance(form, str):
        raise CompiledPathUnsupported(f"{reason} {_HINT}")
    return form


def _structure(form: BatchedForm) -> Hashable:
    """What a compiled function bakes in of a form: its settings, and its modules and
    parameters (a fresh encoder module around the same body counts as the same)."""
    roots = [form.module, *form.transforms]
    modules = [(type(m), id(m)) for root in roots for m in root.modules()]
    if form.encoder is not None:
        modules += [(type(form.encoder), 0)]
        modules += [(type(m), id(m)) for m in list(form.encoder.modules())[1:]]
    params = [(tuple(p.shape), p.dtype, p.device) for root in roots for p in root.parameters()]
    return (float(form.lr), form.first_order, form.adapt_transform, form.allow_unused,
            tuple(form.transform_of), tuple(modules), tuple(params))


def _key(kind: str, form: BatchedForm, steps: int, loss_fn: Optional[LossFn],
         tensors: Sequence[torch.Tensor]) -> Hashable:
    loss_key = loss_fn if loss_fn is not None else ("default", tensors[1].dtype)
    shapes = tuple((tuple(t.shape), t.dtype, t.device) for t in tensors)
    return (kind, int(steps), loss_key, shapes, _structure(form))


def _fresh(function: Callable) -> Callable:
    """`function` with a code object of its own: dynamo caches graphs per code object, so each
    learner and shape gets its own `recompile_limit` instead of sharing one."""
    code = function.__code__.replace()
    copy = types.FunctionType(code, function.__globals__, function.__name__,
                              function.__defaults__, function.__closure__)
    return copy


def _entry(algorithm: nn.Module, kind: str, form: BatchedForm, steps: int,
           loss_fn: Optional[LossFn], tensors: Sequence[torch.Tensor]) -> Tuple[Hashable, _Entry]:
    """The cached compiled function of these arguments (built, not yet compiled, if new)."""
    per_learner = _CACHE.setdefault(algorithm, {})
    key = _key(kind, form, steps, loss_fn, tensors)
    if key not in per_learner:
        criterion = loss_fn or default_loss(tensors[1])
        build = meta_gradient_function if kind == "meta-gradient" else curves_function
        pure = _fresh(build(form, steps, criterion))
        per_learner[key] = _Entry(torch.compile(pure, fullgraph=True, dynamic=False))
    return key, per_learner[key]


def needs_compiling(algorithm: nn.Module, tasks: Sequence[Task], steps: int,
                    loss_fn: Optional[LossFn] = None, training: bool = True) -> bool:
    """Whether the next compiled call on these arguments compiles first (a caller can say so).

    Arguments:
        algorithm, tasks, steps, loss_fn: as for `compiled_meta_gradient`.
        training: the meta-gradient's function, else the adaptation curves'.

    Example:
        >>> import gbml_ext
        >>> tasks = [Task(torch.randn(6, 3), torch.randn(6, 1), torch.randn(4, 3),
        ...               torch.randn(4, 1))]
        >>> needs_compiling(gbml_ext.MAML(torch.nn.Linear(3, 1)), tasks, 1)
        True
    """
    form = check_compiled(algorithm)
    kind = "meta-gradient" if training else "curves"
    entry = _CACHE.get(algorithm, {}).get(_key(kind, form, steps, loss_fn, stack_tasks(tasks)))
    return entry is None or entry.first_call_s is None


def first_call_seconds(algorithm: nn.Module) -> Optional[float]:
    """Seconds the latest first call of a compiled function of `algorithm` took, compiling
    included (None: nothing compiled for it yet). The steps after it run without compiling.

    Example:
        >>> import gbml_ext
        >>> first_call_seconds(gbml_ext.MAML(torch.nn.Linear(3, 1))) is None
        True
    """
    return _FIRST_CALL_S.get(algorithm)


def _call(algorithm: nn.Module, key: Hashable, entry: _Entry, kind: str, args: Tuple) -> Tuple:
    """Runs `entry`; its first call compiles, is timed, and turns a trace failure into a
    `CompiledPathUnsupported`. An interrupt propagates as it is and records nothing."""
    if entry.first_call_s is not None:
        return entry.function(*args)
    start = time.perf_counter()
    try:
        result = entry.function(*args)
    except torch._dynamo.exc.TorchDynamoException as error:
        _CACHE.get(algorithm, {}).pop(key, None)
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CompiledPathUnsupported(
            f"torch.compile cannot trace {type(algorithm).__name__}'s {kind} ({first_line}). "
            f"Use algorithm.path = 'batched' or 'per-task' instead.") from None
    entry.first_call_s = time.perf_counter() - start
    _FIRST_CALL_S[algorithm] = entry.first_call_s
    return result


def _prepare(algorithm: nn.Module, tasks: Sequence[Task], steps: int,
             loss_fn: Optional[LossFn], kind: str, eager: bool
             ) -> Tuple[BatchedForm, Tuple[torch.Tensor, ...], Callable[[Tuple], Tuple]]:
    """The form, the stacked tensors and how to run the step's function on arguments."""
    form = check_compiled(algorithm)
    check_equal_shapes(tasks)
    tensors = stack_tasks(tasks)
    if eager:
        criterion = loss_fn or default_loss(tensors[1])
        build = meta_gradient_function if kind == "meta-gradient" else curves_function
        function = build(form, steps, criterion)
        return form, tensors, lambda args: function(*args)
    key, entry = _entry(algorithm, kind, form, steps, loss_fn, tensors)
    return form, tensors, lambda args: _call(algorithm, key, entry, kind, args)


def compiled_meta_gradient(algorithm: nn.Module, tasks: Sequence[Task], steps: int,
                           loss_fn: Optional[LossFn] = None, eager: bool = False
                           ) -> List[TaskOutcome]:
    """Adds the meta-gradient of the mean query loss over `tasks` to the parameters' `.grad`,
    computed by one compiled graph (the contract of `batched_meta_gradient`; the numbers of
    `gbml_ext.engine.accumulate_meta_gradient` up to float rounding).

    Arguments:
        algorithm: a learner with a batched form (`gbml_ext.fast.form`): a `GBML` (MAML,
            FOMAML, Meta-SGD, Meta-KFO, any `adapt_transform`) or an `ANIL` over such a head.
        tasks: a `TaskBatch`, or tasks of identical shapes (stacked here).
        steps: inner steps per task.
        loss_fn: `(outputs, targets) -> scalar` for one task, traceable under vmap;
            cross-entropy or MSE by target dtype if None.
        eager: run the same function without compiling it (for debugging and tests).

    Returns:
        one detached `TaskOutcome` per task, in order.

    Raises:
        CompiledPathUnsupported: a learner this path cannot run (`compiled_unsupported_reason`,
            or a step torch.compile cannot trace); a `BatchedPathUnsupported` for tasks of
            unequal shapes.

    Example:
        >>> import gbml_ext
        >>> maml = gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.1)
        >>> tasks = [Task(torch.randn(6, 3), torch.randn(6, 1), torch.randn(4, 3),
        ...               torch.randn(4, 1))]
        >>> len(compiled_meta_gradient(maml, tasks, 1))   # doctest: +SKIP
        1
    """
    if not tasks:
        return []
    form, tensors, run = _prepare(algorithm, tasks, steps, loss_fn, "meta-gradient", eager)
    with torch.enable_grad():
        gradients, losses, outputs = run((*meta_inputs(form), *tensors))
    _accumulate(form, gradients)
    return _outcomes(losses, outputs, tensors[3])


def _accumulate(form: BatchedForm, gradients: Tuple) -> None:
    """Adds each meta-parameter's gradient to its `.grad`."""
    d_theta, d_psi, d_phi = gradients
    pairs = [(form.module, d_theta), *zip(form.transforms, d_psi)]
    if form.encoder is not None:
        pairs.append((form.encoder, d_phi))
    for module, named in pairs:
        for name, param in module.named_parameters():
            gradient = named[name]
            param.grad = gradient if param.grad is None else param.grad + gradient


def compiled_adaptation_curves(algorithm: nn.Module, tasks: Sequence[Task], steps: int,
                               loss_fn: Optional[LossFn] = None, eager: bool = False
                               ) -> List[List[TaskOutcome]]:
    """Query loss and accuracy after 0..`steps` inner steps for every task, no meta-graph,
    from one compiled graph (what `gbml_ext.engine.adaptation_curve` gives per task).

    Arguments:
        algorithm, tasks, loss_fn, eager: as for `compiled_meta_gradient`.
        steps: the largest number of inner steps scored.

    Returns:
        one list of `steps + 1` detached outcomes per task; entry k is after k steps.

    Raises:
        CompiledPathUnsupported: as for `compiled_meta_gradient`.

    Example:
        >>> import gbml_ext
        >>> maml = gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.1)
        >>> tasks = [Task(torch.randn(6, 3), torch.randn(6, 1), torch.randn(4, 3),
        ...               torch.randn(4, 1))]
        >>> curves = compiled_adaptation_curves(maml, tasks, 2, eager=True)
        >>> len(curves), len(curves[0])
        (1, 3)
    """
    if not tasks:
        return []
    form, tensors, run = _prepare(algorithm, tasks, steps, loss_fn, "curves", eager)
    with torch.no_grad():
        losses, outputs = run((*meta_inputs(form), *tensors))
    targets = tensors[3].unsqueeze(1).expand(-1, steps + 1, *tensors[3].shape[1:])
    accuracies = accuracy(outputs, targets)
    return [[TaskOutcome(losses[i, k], None if accuracies is None else accuracies[i, k])
             for k in range(steps + 1)] for i in range(len(losses))]
