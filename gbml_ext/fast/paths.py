"""The paths a meta-learner's tasks can take, as the entries of one registry, `PATHS`.

Every path answers the same three questions, so the runner asks `PATHS[name]` and never
dispatches on the name itself:

- `unsupported(learner, device, training)`: why it cannot run this learner on this device
  (meta-training when `training`, else evaluation), or None when it can;
- `meta_gradient(learner, batch, steps)`: adds the meta-gradient of the mean query loss over
  the batch to the parameters' `.grad` and returns one outcome per task (the contract of
  `gbml_ext.engine.accumulate_meta_gradient`);
- `curves(learner, batch, steps, loss_fn)`: the query loss and accuracy after 0..steps inner
  steps of every task (what `gbml_ext.engine.adaptation_curve` gives per task).

The entries: "per-task" (the learner's own `accumulate_meta_gradient`, one task at a time),
"batched" (`gbml_ext.fast.meta`: the tasks of a batch adapt together under vmap) and
"compiled" (`gbml_ext.fast.compiled`: torch.compile; its first call for a learner compiles,
and `first_call_s` says how long that took). Chunking the meta-batch to bound memory wraps a
path (`gbml_ext.fast.chunking.Chunked`); it is not a path of its own. Which path "auto" takes
is a rule over these entries: `gbml_ext.fast.select.choose_path`.
"""
from __future__ import annotations

import weakref
from typing import (
    Callable,
    List,
    Optional,
    Protocol,
    Sequence,
    Type,
    TypeVar,
    cast,
    runtime_checkable,
)

import torch
from torch import nn

from .. import engine
from ..data.tasks import Task
from ..engine import LossFn, TaskOutcome
from ..registry import Registry
from .compiled import (
    CompiledPathUnsupported,
    compiled_adaptation_curves,
    compiled_meta_gradient,
    compiled_unsupported_reason,
    first_call_seconds,
    needs_compiling,
)
from .meta import batched_adaptation_curves, batched_meta_gradient
from .support import BatchedPathUnsupported, unsupported_reason

__all__ = ["PATHS", "BatchedPath", "CompiledPath", "Path", "PerTaskPath", "first_call_s"]

Curves = List[List[TaskOutcome]]
_T = TypeVar("_T")


@runtime_checkable
class Path(Protocol):
    """One way to run a meta-learner's tasks (see the module doc).

    Attributes:
        name: its name in `PATHS` and in `algorithm.path`.
        batches_tasks: the tasks of a batch adapt together, so memory grows with the batch
            and chunking it (`Chunked`) bounds the peak.
        refusal: the error raised when this path is asked for a learner it cannot run.
    """

    name: str
    batches_tasks: bool
    refusal: Type[ValueError]

    def unsupported(self, learner: nn.Module, device: torch.device | str | None,
                    training: bool) -> Optional[str]:
        """Why this path cannot run `learner` on `device`, or None."""

    def meta_gradient(self, learner: nn.Module, batch: Sequence[Task], steps: int,
                      loss_fn: Optional[LossFn] = None) -> List[TaskOutcome]:
        """Adds the meta-gradient of `batch` to `.grad`; one outcome per task."""

    def curves(self, learner: nn.Module, batch: Sequence[Task], steps: int,
               loss_fn: Optional[LossFn] = None) -> Curves:
        """Outcomes after 0..`steps` inner steps, one list per task."""

    def will_compile(self, learner: nn.Module, batch: Sequence[Task], steps: int,
                     training: bool) -> bool:
        """Whether the next call on these arguments compiles first (seconds to minutes)."""

    def first_call_s(self, learner: nn.Module, training: bool = True) -> Optional[float]:
        """Seconds the first (compiling) call of meta-training (else of evaluation) took for
        `learner`; None if it compiled none."""


class _Eager:
    """What the paths that never compile share."""

    name = ""
    batches_tasks = False
    refusal: Type[ValueError] = BatchedPathUnsupported

    def will_compile(self, learner: nn.Module, batch: Sequence[Task], steps: int,
                     training: bool) -> bool:
        """Never: this path does not compile."""
        return False

    def first_call_s(self, learner: nn.Module, training: bool = True) -> Optional[float]:
        """None: this path does not compile."""
        return None

    def __repr__(self) -> str:
        return f"<path {self.name!r}>"


class PerTaskPath(_Eager):
    """One task at a time, the learner's own `accumulate_meta_gradient` (every learner).

    Example:
        >>> import gbml_ext
        >>> PATHS["per-task"].unsupported(gbml_ext.Reptile(torch.nn.Linear(3, 1)), "cpu", True)
    """

    name = "per-task"

    def unsupported(self, learner: nn.Module, device: torch.device | str | None,
                    training: bool) -> Optional[str]:
        """None for every meta-learner; a reason for a module without a meta-gradient."""
        if not hasattr(learner, "accumulate_meta_gradient"):
            return f"{type(learner).__name__} is not a meta-learner (no accumulate_meta_gradient)."
        return None

    def meta_gradient(self, learner: nn.Module, batch: Sequence[Task], steps: int,
                      loss_fn: Optional[LossFn] = None) -> List[TaskOutcome]:
        """`learner.accumulate_meta_gradient(batch, steps)`: one backward per task."""
        if loss_fn is None:
            return learner.accumulate_meta_gradient(batch, steps)  # type: ignore[operator]
        return learner.accumulate_meta_gradient(batch, steps, loss_fn)  # type: ignore[operator]

    def curves(self, learner: nn.Module, batch: Sequence[Task], steps: int,
               loss_fn: Optional[LossFn] = None) -> Curves:
        """`gbml_ext.engine.adaptation_curve` of each task."""
        algorithm = cast(engine.Algorithm, learner)  # a meta-learner: `unsupported` said so
        return [engine.adaptation_curve(algorithm, task, steps, loss_fn) for task in batch]


class BatchedPath(_Eager):
    """All tasks of a batch at once under vmap (`gbml_ext.fast.meta`).

    Example:
        >>> import gbml_ext
        >>> PATHS["batched"].unsupported(gbml_ext.MAML(torch.nn.Linear(3, 1)), "cpu", True)
        >>> PATHS["batched"].unsupported(gbml_ext.Reptile(torch.nn.Linear(3, 1)), "cpu",
        ...                              True)[:22]
        'Reptile forms its own '
    """

    name = "batched"
    batches_tasks = True

    def unsupported(self, learner: nn.Module, device: torch.device | str | None,
                    training: bool) -> Optional[str]:
        """`gbml_ext.fast.support.unsupported_reason` (the same on every device)."""
        return unsupported_reason(learner)

    def meta_gradient(self, learner: nn.Module, batch: Sequence[Task], steps: int,
                      loss_fn: Optional[LossFn] = None) -> List[TaskOutcome]:
        """`gbml_ext.fast.batched_meta_gradient`."""
        return batched_meta_gradient(learner, batch, steps, loss_fn)

    def curves(self, learner: nn.Module, batch: Sequence[Task], steps: int,
               loss_fn: Optional[LossFn] = None) -> Curves:
        """`gbml_ext.fast.batched_adaptation_curves`, the whole batch at once."""
        return batched_adaptation_curves(learner, batch, steps, loss_fn, None)


class CompiledPath:
    """The compiled path (`gbml_ext.fast.compiled`): the whole step as one compiled graph; its
    first call for a learner, shapes, steps and mode compiles.

    Example:
        >>> import gbml_ext
        >>> path = PATHS["compiled"]
        >>> maml = gbml_ext.MAML(torch.nn.Linear(3, 1))
        >>> path.first_call_s(maml) is None, path.unsupported(maml, "cpu", training=True)
        (True, None)
    """

    name = "compiled"
    batches_tasks = True
    refusal: Type[ValueError] = CompiledPathUnsupported

    def __init__(self) -> None:
        self._training: weakref.WeakKeyDictionary[nn.Module, float] = (
            weakref.WeakKeyDictionary())
        self._evaluation: weakref.WeakKeyDictionary[nn.Module, float] = (
            weakref.WeakKeyDictionary())

    def unsupported(self, learner: nn.Module, device: torch.device | str | None,
                    training: bool) -> Optional[str]:
        """`gbml_ext.fast.compiled.compiled_unsupported_reason` (the same for training and
        evaluation, on every device)."""
        return compiled_unsupported_reason(learner)

    def will_compile(self, learner: nn.Module, batch: Sequence[Task], steps: int,
                     training: bool) -> bool:
        """`gbml_ext.fast.compiled.needs_compiling`."""
        return needs_compiling(learner, batch, steps, training=training)

    def first_call_s(self, learner: nn.Module, training: bool = True) -> Optional[float]:
        """The seconds of the first compiling call of meta-training (else of evaluation) for
        `learner` in this process (`gbml_ext.fast.compiled.first_call_seconds`, kept per mode
        here; later compiles, for other shapes, leave it)."""
        return (self._training if training else self._evaluation).get(learner)

    def meta_gradient(self, learner: nn.Module, batch: Sequence[Task], steps: int,
                      loss_fn: Optional[LossFn] = None) -> List[TaskOutcome]:
        """`gbml_ext.fast.compiled_meta_gradient`."""
        return self._noting(self._training, learner,
                            lambda: compiled_meta_gradient(learner, batch, steps, loss_fn))

    def curves(self, learner: nn.Module, batch: Sequence[Task], steps: int,
               loss_fn: Optional[LossFn] = None) -> Curves:
        """`gbml_ext.fast.compiled_adaptation_curves`."""
        return self._noting(self._evaluation, learner,
                            lambda: compiled_adaptation_curves(learner, batch, steps, loss_fn))

    @staticmethod
    def _noting(seconds: weakref.WeakKeyDictionary, learner: nn.Module,
                call: Callable[[], _T]) -> _T:
        """`call()`; when it compiled (a new first call is on record) and none did before in
        this mode, its seconds go to `seconds[learner]`."""
        before = first_call_seconds(learner)
        result = call()
        after = first_call_seconds(learner)
        if after is not None and after is not before:
            seconds.setdefault(learner, after)
        return result

    def __repr__(self) -> str:
        return "<path 'compiled'>"


PATHS: Registry[Path] = Registry("algorithm.path")
PATHS.register("per-task", PerTaskPath(), doc="one task at a time (every learner)")
PATHS.register("batched", BatchedPath(), doc="the tasks of a batch together, under vmap")
PATHS.register("compiled", CompiledPath(), doc="torch.compile; the first call compiles")


def first_call_s(learner: nn.Module, training: bool = True) -> Optional[float]:
    """Seconds the first (compiling) call of meta-training (else of evaluation) took for
    `learner` in this process on a compiling path (results.json's `first_call_s` and
    `evaluation_first_call_s`), or None when no path compiled for it.

    Example:
        >>> import gbml_ext
        >>> first_call_s(gbml_ext.MAML(torch.nn.Linear(3, 1))) is None
        True
    """
    return next((s for _, path in PATHS.items()
                 if (s := path.first_call_s(learner, training)) is not None), None)

