"""What the fast path can run, and how it stacks a list of tasks into tensors.

The fast path (`gbml_ext.fast`) adapts all tasks of a chunk in the same tensor ops. It
reproduces the per-task engine for GBML learners (MAML, FOMAML, Meta-SGD, Meta-KFO, with or
without `adapt_transform`) and ANIL over such a head; everything else is refused here with a
`BatchedPathUnsupported` that names the per-task path.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from ..algorithms.anil import ANIL
from ..algorithms.base import MetaLearner
from ..algorithms.gbml import GBML
from ..data.tasks import Task, TaskBatch

__all__ = ["BatchedPathUnsupported", "PER_TASK_HINT", "check_equal_shapes", "check_supported",
           "encode_tasks", "stack_tasks", "unsupported_reason"]

PER_TASK_HINT = ("Use the per-task path instead: algorithm.path = 'per-task' in a config, or "
                 "gbml_ext.engine.accumulate_meta_gradient(algorithm, tasks, steps).")


class BatchedPathUnsupported(ValueError):
    """The batched path cannot reproduce the per-task path for this algorithm or these tasks."""


def unsupported_reason(algorithm: nn.Module) -> Optional[str]:
    """Why the batched path cannot run `algorithm`, or None when it can.

    Arguments:
        algorithm: any meta-learner.

    Example:
        >>> import gbml_ext
        >>> unsupported_reason(gbml_ext.MAML(torch.nn.Linear(3, 1))) is None
        True
        >>> unsupported_reason(gbml_ext.Reptile(torch.nn.Linear(3, 1)))[:22]
        'Reptile forms its own '
    """
    name = type(algorithm).__name__
    custom = getattr(type(algorithm), "accumulate_meta_gradient", None)
    if custom is not None and custom is not MetaLearner.accumulate_meta_gradient:
        return (f"{name} forms its own meta-gradient (e.g. Reptile, iMAML), which the batched "
                f"path does not reproduce.")
    if isinstance(algorithm, ANIL):
        model: nn.Module = algorithm
    elif isinstance(algorithm, GBML):
        model = algorithm
    else:
        return (f"The batched path supports GBML (MAML, FOMAML, Meta-SGD, Meta-KFO) and ANIL, "
                f"not {name}.")
    if type(algorithm).encode_task not in (MetaLearner.encode_task, ANIL.encode_task):
        return f"{name} overrides encode_task, which the batched path cannot run under vmap."
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            return ("Batch-norm with running statistics updates buffers in place, which cannot "
                    "run per task under vmap; build it with track_running_stats=False (as CNN4 "
                    "does).")
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    if frozen:
        return f"Parameters {frozen} do not require grad; the batched path adapts every parameter."
    return None


def check_supported(algorithm: nn.Module) -> GBML:
    """Returns the GBML whose module adapts (ANIL: its head), or raises why it cannot.

    Raises:
        BatchedPathUnsupported: see `unsupported_reason`.
    """
    reason = unsupported_reason(algorithm)
    if reason is not None:
        raise BatchedPathUnsupported(f"{reason} {PER_TASK_HINT}")
    learner = algorithm.head if isinstance(algorithm, ANIL) else algorithm
    assert isinstance(learner, GBML)  # unsupported_reason rules out everything else
    return learner


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


def encode_tasks(body: nn.Module, support_x: torch.Tensor, query_x: torch.Tensor
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """ANIL's body pass for all tasks at once: (T, n_s, ...), (T, n_q, ...) -> features.

    Support and query of a task go through together, as in `ANIL.encode_task`; vmap keeps
    batch-norm statistics per task, while the shared body weights make every convolution one
    ordinary batched convolution over all T·(n_s + n_q) images.
    """
    n_support = support_x.shape[1]
    features = torch.vmap(body)(torch.cat([support_x, query_x], dim=1))
    return features[:, :n_support], features[:, n_support:]
