"""A path bound to a learner, as the runner's meta-training loop calls it (`MetaStep`), saying
when the path compiles."""
from __future__ import annotations

import time
from typing import Any, Callable, List, Optional, Sequence

from torch import nn

from ..data.tasks import Task
from ..engine import LossFn, TaskOutcome
from .paths import Path

__all__ = ["MetaStep"]


class MetaStep:
    """A path bound to a learner, as the runner calls it: `step(tasks, steps)` adds the
    meta-gradient and returns the outcomes; when the path is about to compile, `say` gets a
    line before and one after (with the seconds it took).

    Arguments:
        path: an entry of `PATHS`, or a wrapper of one (`Chunked`).
        learner: the meta-learner.
        say: where the compile notices go (None: nowhere).

    Attributes:
        plan: the wrapped path's chunking plan (`Chunked.plan`), or None.

    Example:
        >>> import gbml_ext, torch
        >>> from gbml_ext.data import Task
        >>> from gbml_ext.fast import PATHS
        >>> step = MetaStep(PATHS["batched"], gbml_ext.MAML(torch.nn.Linear(3, 1)), print)
        >>> tasks = [Task(torch.randn(6, 3), torch.randn(6, 1), torch.randn(4, 3),
        ...               torch.randn(4, 1))]
        >>> len(step(tasks, 1)), step.plan
        (1, None)
    """

    def __init__(self, path: Path, learner: nn.Module,
                 say: Optional[Callable[[str], Any]] = None):
        self.path, self.learner, self.say = path, learner, say
        self._seen: set = set()  # (steps, tasks) called through: asked about once each

    @property
    def plan(self) -> Any:
        """The chunking plan of a `Chunked` path, else None."""
        return getattr(self.path, "plan", None)

    def __call__(self, tasks: Sequence[Task], steps: int,
                 loss_fn: Optional[LossFn] = None) -> List[TaskOutcome]:
        """Adds the meta-gradient of `tasks` to `.grad`; one outcome per task."""
        seen = (steps, len(tasks))
        if (self.say is None or seen in self._seen
                or not self.path.will_compile(self.learner, tasks, steps, True)):
            self._seen.add(seen)
            return self.path.meta_gradient(self.learner, tasks, steps, loss_fn)
        self.say(f"compiling the meta-step on the {self.path.name} path (its first call; "
                 f"seconds to minutes) ...")
        start = time.perf_counter()
        outcomes = self.path.meta_gradient(self.learner, tasks, steps, loss_fn)
        self.say(f"compiled and ran the first meta-step in {time.perf_counter() - start:.1f} s")
        self._seen.add(seen)
        return outcomes
