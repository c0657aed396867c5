"""Meta-gradients and adaptation curves of many tasks at once (the fast path's entry points).

Both run `StackedLearner` over chunks of tasks and give the per-task engine's numbers up to
float rounding: `batched_meta_gradient` those of `gbml_ext.engine.accumulate_meta_gradient`,
`batched_adaptation_curves` those of `gbml_ext.engine.adaptation_curve` for every task.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn

from ..data.tasks import Task
from ..engine import LossFn, TaskOutcome, accuracy, default_loss
from .inner import StackedLearner
from .support import check_equal_shapes, check_supported, stack_tasks

__all__ = ["batched_adaptation_curves", "batched_meta_gradient"]


def _outcomes(losses: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor
              ) -> List[TaskOutcome]:
    """Detached per-task outcomes from losses (T,), outputs (T, n, ...) and targets (T, n, ...),
    with the accuracy of all tasks computed in one op."""
    per_task = accuracy(outputs.detach(), targets)
    accuracies: Sequence[Optional[torch.Tensor]] = (
        [None] * len(losses) if per_task is None else per_task.unbind())
    return [TaskOutcome(loss, acc)
            for loss, acc in zip(losses.detach().unbind(), accuracies, strict=True)]


def _chunks(tasks: Sequence[Task], tasks_per_chunk: Optional[int]) -> List[Sequence[Task]]:
    """Consecutive chunks of at most `tasks_per_chunk` tasks (a TaskBatch's are TaskBatches)."""
    size = len(tasks) if tasks_per_chunk is None else max(1, int(tasks_per_chunk))
    if size >= len(tasks):
        return [tasks]
    return [tasks[start:start + size] for start in range(0, len(tasks), size)]


def batched_meta_gradient(algorithm: nn.Module, tasks: Sequence[Task], steps: int,
                          loss_fn: Optional[LossFn] = None,
                          tasks_per_chunk: Optional[int] = None) -> List[TaskOutcome]:
    """Adds the meta-gradient of the mean query loss over `tasks` to the parameters' `.grad`.

    Same contract and same numbers (up to float rounding) as
    `gbml_ext.engine.accumulate_meta_gradient`, but all tasks of a chunk adapt together
    (Finn et al. 2017 for MAML/FOMAML, Li et al. 2017 for Meta-SGD, Arnold, Iqbal & Sha 2021
    for Meta-KFO and its adapted transform, Raghu et al. 2020 for ANIL).

    Arguments:
        algorithm: a learner with a batched form (`gbml_ext.fast.form`): a `GBML` (MAML,
            FOMAML, Meta-SGD, Meta-KFO, any `adapt_transform`) or an `ANIL` over such a head.
        tasks: a `TaskBatch` (its stacked tensors are used as they are), or T tasks of
            identical shapes: support_x (n_s, *input_shape), support_y (n_s,) or (n_s, out),
            query_x (n_q, *input_shape), query_y (n_q,) or (n_q, out).
        steps: inner-loop steps per task.
        loss_fn: `(outputs, targets) -> scalar` for ONE task; it runs under `torch.vmap`, so
            it must be vmap-compatible (F.cross_entropy and F.mse_loss are). Cross-entropy or
            MSE by target dtype if None, as in the engine.
        tasks_per_chunk: adapt at most this many tasks at once (None: all). A chunk's graph is
            alive until its backward, so peak memory grows with the chunk size.

    Returns:
        one `TaskOutcome(loss detached, accuracy)` per task, in order.

    Raises:
        BatchedPathUnsupported: a learner without a batched form (Reptile, iMAML: they form
            their own meta-gradient; the reason is in the message), tasks of
            unequal shapes, batch-norm with running statistics, parameters that do not require
            grad.

    Example:
        >>> import gbml_ext
        >>> maml = gbml_ext.MAML(gbml_ext.nn.omniglot_cnn4(ways=5, hidden=8), lr=0.4)
        >>> tasks = [Task(torch.randn(5, 1, 28, 28), torch.arange(5),
        ...               torch.randn(10, 1, 28, 28), torch.arange(10) % 5) for _ in range(4)]
        >>> outcomes = batched_meta_gradient(maml, tasks, steps=1)
        >>> len(outcomes), maml.module.classifier.weight.grad.shape
        (4, torch.Size([5, 8]))
    """
    if not tasks:
        return []
    form = check_supported(algorithm)
    check_equal_shapes(tasks)
    loss_fn = loss_fn or default_loss(tasks[0].support_y)
    outcomes: List[TaskOutcome] = []
    for chunk in _chunks(tasks, tasks_per_chunk):
        support_x, support_y, query_x, query_y = stack_tasks(chunk)
        if form.encode is not None:
            support_x, query_x = form.encode(support_x, query_x)
        learner = StackedLearner(form, len(chunk), loss_fn, meta_graph=True)
        for _ in range(steps):
            learner.step(support_x, support_y)
        losses, outputs = learner.run(query_x, query_y)
        # Dividing by the whole meta-batch, not the chunk, keeps the mean over all tasks.
        (losses.sum() / len(tasks)).backward()
        outcomes.extend(_outcomes(losses, outputs, query_y))
    return outcomes


def batched_adaptation_curves(algorithm: nn.Module, tasks: Sequence[Task], steps: int,
                              loss_fn: Optional[LossFn] = None,
                              tasks_per_chunk: Optional[int] = 64) -> List[List[TaskOutcome]]:
    """Query loss and accuracy after 0, 1, ..., `steps` inner steps for every task, no meta-graph.

    The batched equivalent of calling `gbml_ext.engine.adaptation_curve` on each task: entry
    `[i][k]` is task i after k steps, detached. Every step starts from detached tensors, so
    memory is that of one step of one chunk.

    Arguments:
        algorithm, tasks, loss_fn: as for `batched_meta_gradient`.
        steps: the largest number of inner steps scored.
        tasks_per_chunk: adapt at most this many tasks at once (None: all).

    Returns:
        one list of `steps + 1` outcomes per task, in order.

    Raises:
        BatchedPathUnsupported: as for `batched_meta_gradient`.

    Example:
        >>> import gbml_ext
        >>> tasks = [Task(torch.randn(6, 3), torch.randn(6, 1), torch.randn(4, 3),
        ...               torch.randn(4, 1)) for _ in range(5)]
        >>> curves = batched_adaptation_curves(gbml_ext.MAML(torch.nn.Linear(3, 1)), tasks, 2)
        >>> len(curves), len(curves[0]), curves[0][0].accuracy is None
        (5, 3, True)
    """
    if not tasks:
        return []
    form = check_supported(algorithm)
    check_equal_shapes(tasks)
    loss_fn = loss_fn or default_loss(tasks[0].support_y)
    curves: List[List[TaskOutcome]] = []
    for chunk in _chunks(tasks, tasks_per_chunk):
        support_x, support_y, query_x, query_y = stack_tasks(chunk)
        if form.encode is not None:
            with torch.no_grad():
                support_x, query_x = form.encode(support_x, query_x)
        learner = StackedLearner(form, len(chunk), loss_fn, meta_graph=False)
        chunk_curves: List[List[TaskOutcome]] = [[] for _ in chunk]
        for step in range(steps + 1):
            if step:
                learner.step(support_x, support_y)
            with torch.no_grad():
                losses, outputs = learner.run(query_x, query_y)
            for curve, outcome in zip(chunk_curves, _outcomes(losses, outputs, query_y),
                                      strict=True):
                curve.append(outcome)
        curves.extend(chunk_curves)
    return curves
