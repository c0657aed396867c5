"""The one inner-loop engine: adapt on the support set, score on the query set.

Every algorithm goes through `run_task`. Algorithms differ only in what `clone()` returns (which
parameters adapt and how a step is taken), in `encode_task` (ANIL computes body features once
per task) and, for Reptile, in how the meta-gradient is formed (`accumulate_meta_gradient`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch

from .data.tasks import Task

__all__ = ["TaskOutcome", "LossFn", "run_task", "adapt_learner", "score_query", "accuracy",
           "accumulate_meta_gradient", "default_loss", "adaptation_curve"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TaskOutcome:
    """The query-set result of one adapted task.

    loss: scalar query loss; differentiable w.r.t. the meta-parameters when `train=True`.
    accuracy: scalar query accuracy (classification), or None for regression.
    """

    loss: torch.Tensor
    accuracy: Optional[torch.Tensor]


def default_loss(targets: torch.Tensor) -> LossFn:
    """Cross-entropy for integer targets, mean squared error otherwise."""
    if targets.dtype in (torch.int64, torch.int32):
        return torch.nn.functional.cross_entropy
    return torch.nn.functional.mse_loss


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> Optional[torch.Tensor]:
    """Fraction of argmax predictions equal to integer targets; None for regression targets."""
    if targets.dtype not in (torch.int64, torch.int32):
        return None
    return (outputs.argmax(dim=-1) == targets).float().mean()


def adapt_learner(learner, inputs: torch.Tensor, targets: torch.Tensor, steps: int,
                  loss_fn: LossFn) -> None:
    """Takes `steps` inner-loop steps of `learner.adapt` on (inputs, targets)."""
    for _ in range(steps):
        learner.adapt(loss_fn(learner(inputs), targets))


def score_query(learner, task: Task, loss_fn: LossFn, train: bool = False) -> TaskOutcome:
    """The (adapted) learner's query loss and accuracy; detached unless `train`."""
    with torch.set_grad_enabled(train):
        outputs = learner(task.query_x)
        loss = loss_fn(outputs, task.query_y)
    return TaskOutcome(loss if train else loss.detach(), accuracy(outputs.detach(), task.query_y))


def run_task(algorithm, task: Task, steps: int, loss_fn: Optional[LossFn] = None,
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
        >>> task = Task(torch.randn(6, 4), torch.arange(6) % 3, torch.randn(9, 4), torch.arange(9) % 3)
        >>> run_task(maml, task, steps=1).loss.backward()
    """
    loss_fn = loss_fn or default_loss(task.support_y)
    with torch.set_grad_enabled(train):
        task = algorithm.encode_task(task)
    learner = algorithm.clone() if train else algorithm.clone(first_order=True)
    adapt_learner(learner, task.support_x, task.support_y, steps, loss_fn)
    return score_query(learner, task, loss_fn, train)


def accumulate_meta_gradient(algorithm, tasks: Sequence[Task], steps: int,
                             loss_fn: Optional[LossFn] = None) -> List[TaskOutcome]:
    """Adds the meta-gradient of the mean query loss over `tasks` to the parameters' `.grad`.

    One backward per task frees that task's graph before the next is built, so peak memory is
    one task's graph, not the meta-batch's.
    """
    outcomes = []
    for task in tasks:
        outcome = run_task(algorithm, task, steps, loss_fn, train=True)
        (outcome.loss / len(tasks)).backward()
        outcomes.append(TaskOutcome(outcome.loss.detach(), outcome.accuracy))
    return outcomes


def adaptation_curve(algorithm, task: Task, steps: int,
                     loss_fn: Optional[LossFn] = None) -> List[TaskOutcome]:
    """Query loss and accuracy after 0, 1, ..., `steps` inner steps on one task (no meta-graph).

    Returns `steps + 1` detached outcomes; entry k is the learner after k steps.
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
