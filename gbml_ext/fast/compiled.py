"""The compiled path: a meta-batch's whole meta-step (or evaluation) as one compiled graph.

`gbml_ext.fast.functional_step` writes the step as one pure function of the meta-parameters
and the stacked tasks: `torch.func.grad` of the mean over `vmap` of each task's query loss after
inner steps taken with `torch.func.grad`. Autograd keeps no graph, so `torch.compile` takes all
of it (`fullgraph=True`), MAML's second order included: MAML, FOMAML, Meta-SGD, Meta-KFO (linear
or not, PSD, adapted transform), ANIL with any of these heads (the body inside the graph),
LinNet heads, frozen layers (`FrozenTransform`), batch-norm on the batch's statistics. The
numbers are the per-task engine's up to float rounding (tests/test_compiled_step.py).

Compiling costs seconds to minutes on a CPU, paid on the first call for each learner, tensor
shapes, steps and mode (meta-gradient or curves), then taken from the cache
(`gbml_ext.fast.compile_cache`); inductor also keeps what it compiled on disk
(`TORCHINDUCTOR_CACHE_DIR`, else torch's default), which a later process reuses.
`needs_compiling` says whether a call will compile and `first_call_seconds` how long the
latest first call took (compiling included). A learner this path cannot run (no batched
form: Reptile, iMAML, learn2learn's MAML; a module dynamo cannot trace) is refused with a
`CompiledPathUnsupported` naming the reason and the path to use.

Unlike the per-task path, a parameter the query loss never reaches gets a zero meta-gradient,
not `.grad = None`.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..data.tasks import Task
from ..engine import LossFn, TaskOutcome, accuracy, default_loss
from .compile_cache import (
    cache_key,
    cached_entry,
    call_timed,
    entry_of,
    first_call_seconds,
    forget,
    is_compiled,
)
from .form import BatchedForm
from .functional_step import curves_function, meta_gradient_function
from .meta import _outcomes
from .support import (
    BatchedPathUnsupported,
    batched_form_of,
    check_equal_shapes,
    reason_of,
    stack_tasks,
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
    return _reason(algorithm, batched_form_of(algorithm))


def _reason(algorithm: nn.Module, form: Union[BatchedForm, str]) -> Optional[str]:
    reason = reason_of(algorithm, form)
    if reason is not None:
        return reason.replace("batched path", "compiled path")
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
    form = batched_form_of(algorithm)  # asked once: building it walks the learner
    reason = _reason(algorithm, form)
    if reason is not None or isinstance(form, str):
        raise CompiledPathUnsupported(f"{reason} {_HINT}")
    return form


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
    key = cache_key(_kind(training), form, steps, loss_fn, stack_tasks(tasks))
    return not is_compiled(algorithm, key)


def _kind(training: bool) -> str:
    return "meta-gradient" if training else "curves"


def _function(kind: str, form: BatchedForm, steps: int, loss_fn: Optional[LossFn],
              targets: torch.Tensor) -> Callable:
    """The step's pure function (`gbml_ext.fast.functional_step`)."""
    build = meta_gradient_function if kind == _kind(True) else curves_function
    return build(form, steps, loss_fn or default_loss(targets))


Named = List[List[Tuple[str, nn.Parameter]]]


def _named_parameters(form: BatchedForm) -> Named:
    """The meta-parameters by module, in the order of `meta_inputs`: the module's, each
    transform's, the encoder's (empty without one)."""
    modules = [form.module, *form.transforms, form.encoder]
    return [[] if m is None else list(m.named_parameters()) for m in modules]


def _inputs(named: Named) -> Tuple[Any, ...]:
    """`meta_inputs(form)` from `_named_parameters(form)`: detached, without walking again."""
    values = [{name: p.detach() for name, p in pairs} for pairs in named]
    return values[0], values[1:-1], values[-1]


def _run(algorithm: nn.Module, tasks: Sequence[Task], steps: int, loss_fn: Optional[LossFn],
         kind: str, eager: bool) -> Tuple[Named, Tuple[torch.Tensor, ...], Any]:
    """The meta-parameters (`_named_parameters`), the stacked tensors and what the step's
    function returns on them, compiled (cached; compiling on the first call) unless `eager`.
    A step torch.compile cannot trace is refused in one line; anything else, an interrupt
    included, propagates as it is."""
    found = batched_form_of(algorithm)
    form = check_compiled(algorithm) if isinstance(found, str) else found  # str: raises
    check_equal_shapes(tasks)
    tensors = stack_tasks(tasks)
    named = _named_parameters(form)
    args = (*_inputs(named), *tensors)
    if eager:
        check_compiled(algorithm)
        return named, tensors, _function(kind, form, steps, loss_fn, tensors[1])(*args)
    key = cache_key(kind, form, steps, loss_fn, tensors)
    entry = entry_of(algorithm, key)
    if entry is None:  # the key holds all the checks read (`structure`): check once per key
        check_compiled(algorithm)
        entry = cached_entry(algorithm, key,
                             lambda: _function(kind, form, steps, loss_fn, tensors[1]))
    try:
        return named, tensors, call_timed(algorithm, entry, args)
    except torch._dynamo.exc.TorchDynamoException as error:
        if entry.first_call_s is not None:
            raise
        forget(algorithm, key)
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CompiledPathUnsupported(
            f"torch.compile cannot trace {type(algorithm).__name__}'s {kind} ({first_line}). "
            f"Use algorithm.path = 'batched' or 'per-task' instead.") from None


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
    with torch.enable_grad():
        named, tensors, (gradients, losses, outputs) = _run(algorithm, tasks, steps, loss_fn,
                                                           _kind(True), eager)
    _accumulate(named, gradients)
    return _outcomes(losses, outputs, tensors[3])


def _accumulate(named: Named, gradients: Tuple) -> None:
    """Adds each meta-parameter's gradient to its `.grad`."""
    d_theta, d_psi, d_phi = gradients
    for pairs, gradient_of in zip(named, [d_theta, *d_psi, d_phi], strict=True):
        for name, param in pairs:
            gradient = gradient_of[name]
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
    with torch.no_grad():
        _, tensors, (losses, outputs) = _run(algorithm, tasks, steps, loss_fn, _kind(False),
                                             eager)
    targets = tensors[3].unsqueeze(1).expand(-1, steps + 1, *tensors[3].shape[1:])
    accuracies = accuracy(outputs, targets)
    return [[TaskOutcome(losses[i, k], None if accuracies is None else accuracies[i, k])
             for k in range(steps + 1)] for i in range(len(losses))]
