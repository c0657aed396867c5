"""The one inner-loop engine: adapt on the support set, score on the query set.

Every algorithm goes through `run_task`. Algorithms differ only in what `clone()` returns (which
parameters adapt and how a step is taken), in `encode_task` (ANIL computes body features once
per task) and, for Reptile, in how the meta-gradient is formed (`accumulate_meta_gradient`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Protocol, Sequence

import torch

from .data.tasks import Task

__all__ = ["Algorithm", "Learner", "LossFn", "TaskOutcome", "accumulate_meta_gradient", "accuracy",
           "adapt_learner", "adaptation_curve", "default_loss", "run_task", "score_query"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Learner(Protocol):
    """What the engine asks of a clone: called on inputs, adapted in place by a loss."""

    def __call__(self, inputs: torch.Tensor, /) -> torch.Tensor: ...

    def adapt(self, loss: torch.Tensor) -> None: ...


class Algorithm(Protocol):
    """What the engine asks of a meta-learner (GBML, ANIL, ...): clones and a task encoding."""

    def clone(self, first_order: Optional[bool] = None) -> Learner: ...

    def encode_task(self, task: Task) -> Task: ...


@dataclass
class TaskOutcome:
    """The query-set result of one adapted task.

    Attributes:
        loss: scalar query loss; differentiable w.r.t. the meta-parameters when `train=True`.
        accuracy: scalar query accuracy (classification), or None for regression.

    Example:
        >>> import gbml_ext
        >>> task = Task(torch.randn(6, 4), torch.arange(6) % 3,
        ...             torch.randn(9, 4), torch.arange(9) % 3)
        >>> outcome = run_task(gbml_ext.MAML(torch.nn.Linear(4, 3), lr=0.5), task, steps=1)
        >>> outcome.loss.shape, outcome.loss.requires_grad, outcome.accuracy.shape
        (torch.Size([]), True, torch.Size([]))
    """

    loss: torch.Tensor
    accuracy: Optional[torch.Tensor]


def _is_class_labels(targets: torch.Tensor) -> bool:
    """True for integer targets of any width or signedness (int8 ... int64, uint8)."""
    return not (targets.is_floating_point() or targets.is_complex()
                or targets.dtype == torch.bool)


def _cross_entropy_of_labels(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for integer labels narrower than int64, which torch wants as long."""
    return torch.nn.functional.cross_entropy(outputs, targets.long())


def _mean_squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """MSE that refuses to broadcast: mismatched shapes mean class labels stored as floats."""
    if outputs.shape != targets.shape:
        raise ValueError(
            f"Float targets of shape {tuple(targets.shape)} do not match the outputs' shape "
            f"{tuple(outputs.shape)}, so mean squared error would broadcast them. For "
            f"classification pass integer class labels (y.long()); for regression give the "
            f"targets the outputs' shape."
        )
    return torch.nn.functional.mse_loss(outputs, targets)


def default_loss(targets: torch.Tensor) -> LossFn:
    """Cross-entropy for integer targets (any integer dtype), mean squared error otherwise.

    The mean squared error raises a `ValueError` when the targets' shape differs from the
    outputs' (e.g. float class labels (n,) against logits (n, C)) instead of broadcasting.

    Arguments:
        targets: a task's support targets; only their dtype is looked at.

    Example:
        >>> default_loss(torch.tensor([0, 2], dtype=torch.int8))(torch.randn(2, 3),
        ...                                                     torch.tensor([0, 2])).shape
        torch.Size([])
        >>> default_loss(torch.zeros(2))(torch.randn(2, 3), torch.zeros(2))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Float targets of shape (2,) do not match the outputs' shape (2, 3), ...
    """
    if _is_class_labels(targets):
        if targets.dtype == torch.int64:
            return torch.nn.functional.cross_entropy
        return _cross_entropy_of_labels
    return _mean_squared_error


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> Optional[torch.Tensor]:
    """Fraction of argmax predictions equal to integer targets; None for regression targets.

    Arguments:
        outputs: logits (n, C), or (T, n, C) for T tasks at once.
        targets: class labels (n,) or (T, n) of any integer dtype, or float regression targets.

    Returns a scalar, or one accuracy per task (T,).

    Example:
        >>> accuracy(torch.eye(3), torch.tensor([0, 1, 1], dtype=torch.uint8))
        tensor(0.6667)
    """
    if not _is_class_labels(targets):
        return None
    return (outputs.argmax(dim=-1) == targets).float().mean(dim=-1)


def adapt_learner(learner: Learner, inputs: torch.Tensor, targets: torch.Tensor, steps: int,
                  loss_fn: LossFn) -> None:
    """Takes `steps` inner-loop steps of `learner.adapt` on (inputs, targets).

    Arguments:
        learner: a clone (`algorithm.clone()`); its fast weights change in place.
        inputs: support inputs (n, *input_shape).
        targets: support targets (n,) class indices or (n, out) regression targets.
        steps: number of inner-loop steps.
        loss_fn: `(outputs, targets) -> scalar`, e.g. `default_loss(targets)`.

    Example:
        >>> import gbml_ext
        >>> learner = gbml_ext.MAML(torch.nn.Linear(4, 1), lr=0.1).clone()
        >>> x, y = torch.randn(8, 4), torch.randn(8, 1)
        >>> before = learner.module.weight.clone()
        >>> adapt_learner(learner, x, y, steps=2, loss_fn=default_loss(y))
        >>> torch.equal(before, learner.module.weight)
        False
    """
    for _ in range(steps):
        learner.adapt(loss_fn(learner(inputs), targets))


def score_query(learner: Learner, task: Task, loss_fn: LossFn, train: bool = False) -> TaskOutcome:
    """The (adapted) learner's query loss and accuracy; detached unless `train`.

    Arguments:
        learner: a clone, usually adapted with `adapt_learner`.
        task: its query inputs (n_q, *input_shape) and targets (n_q,) or (n_q, out) are used.
        loss_fn: `(outputs, targets) -> scalar`.
        train: keep the graph to the meta-parameters (else no graph is built).

    Returns:
        a `TaskOutcome`: the scalar query loss and accuracy (None for regression targets).

    Example:
        >>> import gbml_ext
        >>> learner = gbml_ext.MAML(torch.nn.Linear(4, 3), lr=0.5).clone()
        >>> task = Task(torch.randn(6, 4), torch.arange(6) % 3,
        ...             torch.randn(9, 4), torch.arange(9) % 3)
        >>> outcome = score_query(learner, task, default_loss(task.query_y))
        >>> outcome.loss.requires_grad, outcome.accuracy.shape
        (False, torch.Size([]))
    """
    with torch.set_grad_enabled(train):
        outputs = learner(task.query_x)
        loss = loss_fn(outputs, task.query_y)
    return TaskOutcome(loss if train else loss.detach(), accuracy(outputs.detach(), task.query_y))


def run_task(algorithm: Algorithm, task: Task, steps: int, loss_fn: Optional[LossFn] = None,
             train: bool = True) -> TaskOutcome:
    """Adapts a fresh clone of `algorithm` on `task`'s support set and scores its query set.

    Arguments:
        algorithm: a meta-learner with `clone()` and `encode_task(task)` (GBML, ANIL, ...).
        task: support (n_s, ...) and query (n_q, ...) tensors.
        steps: number of inner-loop steps.
        loss_fn: `(outputs, targets) -> scalar`; cross-entropy or MSE by target dtype if None.
        train: keep the graph to the meta-parameters. With False the clone is first-order and
            the query pass runs without a graph, which is all an evaluation needs.

    Example:
        >>> import gbml_ext
        >>> maml = gbml_ext.GBML(torch.nn.Linear(4, 3), lr=0.5)
        >>> task = Task(torch.randn(6, 4), torch.arange(6) % 3,
        ...             torch.randn(9, 4), torch.arange(9) % 3)
        >>> run_task(maml, task, steps=1).loss.backward()
    """
    loss_fn = loss_fn or default_loss(task.support_y)
    with torch.set_grad_enabled(train):
        task = algorithm.encode_task(task)
    learner = algorithm.clone() if train else algorithm.clone(first_order=True)
    adapt_learner(learner, task.support_x, task.support_y, steps, loss_fn)
    return score_query(learner, task, loss_fn, train)


def accumulate_meta_gradient(algorithm: Algorithm, tasks: Sequence[Task], steps: int,
                             loss_fn: Optional[LossFn] = None) -> List[TaskOutcome]:
    """Adds the meta-gradient of the mean query loss over `tasks` to the parameters' `.grad`.

    This is MAML's meta-gradient (Finn et al. 2017) for whatever `clone()` returns. One
    backward per task frees that task's graph before the next is built, so peak memory is one
    task's graph, not the meta-batch's.

    Arguments:
        algorithm: a meta-learner with `clone()` and `encode_task(task)` (GBML, ANIL, ...).
        tasks: tasks with support (n_s, ...) and query (n_q, ...) tensors, or a `TaskBatch`.
        steps: inner-loop steps per task.
        loss_fn: `(outputs, targets) -> scalar`; cross-entropy or MSE by target dtype if None.

    Returns:
        one `TaskOutcome` per task, its loss detached.

    Example:
        >>> import gbml_ext
        >>> maml = gbml_ext.MAML(torch.nn.Linear(4, 3), lr=0.5)
        >>> tasks = [Task(torch.randn(6, 4), torch.arange(6) % 3, torch.randn(9, 4),
        ...               torch.arange(9) % 3) for _ in range(2)]
        >>> outcomes = accumulate_meta_gradient(maml, tasks, steps=1)
        >>> len(outcomes), maml.module.weight.grad.shape
        (2, torch.Size([3, 4]))
    """
    outcomes = []
    for task in tasks:
        outcome = run_task(algorithm, task, steps, loss_fn, train=True)
        (outcome.loss / len(tasks)).backward()
        outcomes.append(TaskOutcome(outcome.loss.detach(), outcome.accuracy))
    return outcomes


def adaptation_curve(algorithm: Algorithm, task: Task, steps: int,
                     loss_fn: Optional[LossFn] = None) -> List[TaskOutcome]:
    """Query loss and accuracy after 0, 1, ..., `steps` inner steps on one task (no meta-graph).

    Arguments:
        algorithm: a meta-learner with `clone()` and `encode_task(task)`.
        task: support (n_s, ...) and query (n_q, ...) tensors.
        steps: the largest number of inner steps scored.
        loss_fn: `(outputs, targets) -> scalar`; cross-entropy or MSE by target dtype if None.

    Returns:
        `steps + 1` detached `TaskOutcome`s; entry k is the learner after k steps.

    Example:
        >>> import gbml_ext
        >>> task = Task(torch.randn(6, 4), torch.randn(6, 1), torch.randn(9, 4),
        ...             torch.randn(9, 1))
        >>> curve = adaptation_curve(gbml_ext.MAML(torch.nn.Linear(4, 1), lr=0.1), task, 3)
        >>> len(curve), curve[0].loss.requires_grad, curve[-1].accuracy
        (4, False, None)
    """
    loss_fn = loss_fn or default_loss(task.support_y)
    with torch.no_grad():
        task = algorithm.encode_task(task)
    learner = algorithm.clone(first_order=True)
    curve = [score_query(learner, task, loss_fn)]
    for _ in range(steps):
        adapt_learner(learner, task.support_x, task.support_y, 1, loss_fn)
        curve.append(score_query(learner, task, loss_fn))
    return curve
