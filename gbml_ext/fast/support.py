"""What the fast path can run, and how it stacks a list of tasks into tensors.

The fast path (`gbml_ext.fast`) adapts all tasks of a chunk in the same tensor ops. It runs
any learner whose `batched_form()` gives a `BatchedForm` (`gbml_ext.fast.form`): `GBML` and its
subclasses, with any transform and with or without `adapt_transform`, and ANIL over such a
head. Everything else is refused here with a `BatchedPathUnsupported` that names the learner's
reason and the per-task path.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from ..data.tasks import Task, TaskBatch
from .form import BatchedForm, FormOrReason

__all__ = ["PER_TASK_HINT", "BatchedPathUnsupported", "batched_form_of", "check_equal_shapes",
           "check_supported", "reason_of", "stack_tasks", "unsupported_reason"]

PER_TASK_HINT = ("Use the per-task path instead: algorithm.path = 'per-task' in a config, or "
                 "gbml_ext.engine.accumulate_meta_gradient(algorithm, tasks, steps).")


class BatchedPathUnsupported(ValueError):
    """The batched path cannot reproduce the per-task path for this algorithm or these tasks.

    Raised by `check_supported`, `choose_path("batched", ...)` and the batched entry points
    (`batched_meta_gradient`, `batched_adaptation_curves`) before anything runs. The message
    gives the reason (a learner without a batched form such as Reptile or iMAML, batch-norm
    with running statistics, frozen parameters, tasks of unequal shapes) and how to take the
    per-task path instead. A `ValueError`.
    """


def batched_form_of(algorithm: nn.Module) -> FormOrReason:
    """`algorithm.batched_form()`, or a reason for a module that has no such method."""
    method = getattr(algorithm, "batched_form", None)
    if method is None:
        return (f"The batched path runs learners that describe their inner loop with "
                f"batched_form() (gbml_ext.fast.form); {type(algorithm).__name__} does not.")
    return method()


def reason_of(algorithm: nn.Module, form: FormOrReason) -> Optional[str]:
    """Why the batched path cannot run `algorithm` whose `batched_form_of` is `form`, or None
    (`unsupported_reason` without asking for the form again)."""
    if isinstance(form, str):
        return form
    for module in algorithm.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            return ("Batch-norm with running statistics updates buffers in place, which cannot "
                    "run per task under vmap; build it with track_running_stats=False (as CNN4 "
                    "does).")
    frozen = [name for name, p in algorithm.named_parameters() if not p.requires_grad]
    if frozen:
        return f"Parameters {frozen} do not require grad; the batched path adapts every parameter."
    return None


def unsupported_reason(algorithm: nn.Module) -> Optional[str]:
    """Why the batched path cannot run `algorithm`, or None when it can: the reason its
    `batched_form()` gives, batch-norm with running statistics, or frozen parameters.

    Arguments:
        algorithm: any meta-learner.

    Example:
        >>> import gbml_ext
        >>> unsupported_reason(gbml_ext.MAML(torch.nn.Linear(3, 1))) is None
        True
        >>> unsupported_reason(gbml_ext.Reptile(torch.nn.Linear(3, 1)))[:22]
        'Reptile forms its own '
    """
    return reason_of(algorithm, batched_form_of(algorithm))


def check_supported(algorithm: nn.Module) -> BatchedForm:
    """Returns the algorithm's `BatchedForm`, or raises why the batched path cannot run it.

    Arguments:
        algorithm: any meta-learner.

    Returns:
        the `BatchedForm` the fast path runs the learner through (`gbml_ext.fast.form`).

    Raises:
        BatchedPathUnsupported: the reason `unsupported_reason` gives, followed by how to take
            the per-task path instead.

    Example:
        >>> import gbml_ext
        >>> check_supported(gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.1)).lr
        0.1
        >>> check_supported(gbml_ext.Reptile(torch.nn.Linear(3, 1)))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gbml_ext.fast.support.BatchedPathUnsupported: Reptile forms its own meta-gradient ...
    """
    form = batched_form_of(algorithm)
    reason = reason_of(algorithm, form)
    if reason is not None or isinstance(form, str):
        raise BatchedPathUnsupported(f"{reason} {PER_TASK_HINT}")
    return form


def check_equal_shapes(tasks: Sequence[Task]) -> None:
    """Raises `BatchedPathUnsupported` unless all tasks share shapes and dtypes (a `TaskBatch`
    always does)."""
    if isinstance(tasks, TaskBatch):
        return
    def shapes(task: Task) -> Tuple[Tuple[Tuple[int, ...], torch.dtype], ...]:
        return tuple((tuple(t.shape), t.dtype) for t in
                     (task.support_x, task.support_y, task.query_x, task.query_y))

    first = shapes(tasks[0])
    for index, task in enumerate(tasks[1:], start=1):
        if shapes(task) != first:
            raise BatchedPathUnsupported(
                f"Task {index} has shapes {shapes(task)} but task 0 has {first}; the batched "
                f"path stacks tasks, so all must share support/query shapes. " + PER_TASK_HINT)


def stack_tasks(tasks: Sequence[Task]) -> Tuple[torch.Tensor, ...]:
    """(support_x, support_y, query_x, query_y), each (T, n, ...): a `TaskBatch`'s own tensors
    as they are, or a list of tasks stacked."""
    if isinstance(tasks, TaskBatch):
        return tasks.tensors()
    return TaskBatch.stack(tasks).tensors()

