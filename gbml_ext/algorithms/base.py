"""What every meta-learner shares on top of `clone()` / `adapt()`."""
from __future__ import annotations

from typing import List, Optional, Sequence

from .. import engine
from ..data.tasks import Task

__all__ = ["MetaLearner"]


class MetaLearner:
    """Mixin giving a `clone()`/`adapt()` learner the engine's task-level methods.

    Subclasses may override `encode_task` (computed once per task, before adaptation) and
    `accumulate_meta_gradient` (how the outer gradient is formed).
    """

    def encode_task(self, task: Task) -> Task:
        return task

    def accumulate_meta_gradient(self, tasks: Sequence[Task], steps: int,
                                 loss_fn: Optional[engine.LossFn] = None
                                 ) -> List[engine.TaskOutcome]:
        return engine.accumulate_meta_gradient(self, tasks, steps, loss_fn)

    def evaluate_task(self, task: Task, steps: int,
                      loss_fn: Optional[engine.LossFn] = None) -> engine.TaskOutcome:
        return engine.run_task(self, task, steps, loss_fn, train=False)
