"""The shapes every task source produces: one few-shot task (`Task`), and a meta-batch of T tasks
as stacked tensors (`TaskBatch`), which is what the runner moves from a source to a path."""
from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Protocol, overload

import numpy as np
import torch

__all__ = ["Task", "TaskBatch", "TaskSource", "check_task_count", "sample_batch",
           "stack_samples"]

_FIELDS = ("support_x", "support_y", "query_x", "query_y")


def _check_lengths(owner: str, tensors: Mapping[str, Any], axis: int, axis_name: str) -> None:
    """Raises a `ValueError` unless each set's inputs and targets agree in length along `axis`
    (0 for a `Task`, 1, after the task axis, for a `TaskBatch`)."""
    for part in ("support", "query"):
        x, y = tensors[f"{part}_x"], tensors[f"{part}_y"]
        if len(x.shape) <= axis or len(y.shape) <= axis:
            raise ValueError(
                f"{owner}'s {part}_x and {part}_y need a{axis_name} axis, got shapes "
                f"{tuple(x.shape)} and {tuple(y.shape)}.")
        if x.shape[axis] != y.shape[axis]:
            raise ValueError(
                f"{owner} got {x.shape[axis]} {part} inputs but {y.shape[axis]} {part} targets "
                f"({part}_x {tuple(x.shape)}, {part}_y {tuple(y.shape)}): give every input "
                f"one target.")


@dataclass
class Task:
    """One few-shot task.

    Arguments:
        support_x: (n_support, *input_shape) inputs the learner adapts on.
        support_y: (n_support,) class indices, or (n_support, out) regression targets.
        query_x: (n_query, *input_shape) inputs the adapted learner is scored on.
        query_y: (n_query,) or (n_query, out) targets.

    Raises:
        ValueError: support_x and support_y (or query_x and query_y) differ in length.

    Example:
        >>> task = Task(torch.randn(5, 3), torch.arange(5),
        ...             torch.randn(10, 3), torch.arange(10) % 5)
        >>> task.to("cpu").support_x.shape
        torch.Size([5, 3])
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor

    def __post_init__(self) -> None:
        _check_lengths("Task", vars(self), 0, " leading example")

    def to(self, device: torch.device | str) -> Task:
        return Task(*(t.to(device, non_blocking=True) for t in
                      (self.support_x, self.support_y, self.query_x, self.query_y)))


@dataclass(frozen=True)
class TaskBatch(Sequence[Task]):
    """A meta-batch of T tasks of equal shapes, as four stacked tensors with a leading task axis.

    A `Sequence[Task]`, so anything that takes a list of tasks takes a TaskBatch.

    Task sources draw one with `sample_batch(T)`; the fast path (`gbml_ext.fast`) consumes the
    stacked tensors as they are, and the per-task engine iterates `Task` views of them
    (`batch[i]`, `for task in batch`), so no meta-batch is unstacked and stacked again.

    Arguments:
        support_x: (T, n_support, *input_shape).
        support_y: (T, n_support) class indices, or (T, n_support, out) regression targets.
        query_x: (T, n_query, *input_shape).
        query_y: (T, n_query) or (T, n_query, out).

    Raises:
        ValueError: the four tensors differ in T, or a task's inputs and targets differ in
            length (support_x's n_support against support_y's, and the same for the query).

    Example:
        >>> tasks = [Task(torch.randn(5, 3), torch.arange(5), torch.randn(10, 3),
        ...               torch.arange(10) % 5) for _ in range(4)]
        >>> batch = TaskBatch.stack(tasks)
        >>> len(batch), batch.support_x.shape, batch[1].query_y.shape, len(batch[1:3])
        (4, torch.Size([4, 5, 3]), torch.Size([10]), 2)
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor

    def __post_init__(self) -> None:
        sizes = {name: getattr(self, name).shape[0] if getattr(self, name).dim() else None
                 for name in _FIELDS}
        if len(set(sizes.values())) != 1 or None in sizes.values():
            raise ValueError(f"TaskBatch tensors need the same leading task axis, got {sizes}; "
                             "build one from a list of equal-shape tasks with TaskBatch.stack.")
        _check_lengths("TaskBatch", {name: getattr(self, name) for name in _FIELDS}, 1,
                       "n example axis after the task")

    @classmethod
    def stack(cls, tasks: Sequence[Task]) -> TaskBatch:
        """Stacks equal-shape tasks (a ValueError names the first task that differs)."""
        if not tasks:
            raise ValueError("TaskBatch.stack needs at least one task.")
        first = [tuple(getattr(tasks[0], f).shape) for f in _FIELDS]
        for index, task in enumerate(tasks):
            shapes = [tuple(getattr(task, f).shape) for f in _FIELDS]
            if shapes != first:
                raise ValueError(f"task {index} has support/query shapes {shapes} but task 0 has "
                                 f"{first}; a TaskBatch holds tasks of equal shapes.")
        return cls(*(torch.stack([getattr(t, f) for t in tasks]) for f in _FIELDS))

    def __len__(self) -> int:
        return self.support_x.shape[0]

    @overload
    def __getitem__(self, index: int) -> Task: ...
    @overload
    def __getitem__(self, index: slice | Sequence[int] | np.ndarray | torch.Tensor
                    ) -> TaskBatch: ...
    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray | torch.Tensor
                    ) -> Task | TaskBatch:
        """`batch[i]`: task i as a `Task` of views; `batch[a:b]`: a smaller TaskBatch of views;
        `batch[[0, 2]]` (a list, tuple, NumPy array or tensor of task indices, or a boolean
        mask of length T): a TaskBatch of those tasks, one `index_select` per tensor.

        Raises:
            TypeError: any other index (a float, a string, a nested list, ...).
            IndexError: an index outside the batch, or a mask of the wrong length.

        Example:
            >>> batch = TaskBatch(*(torch.arange(4.0).view(4, 1) for _ in range(4)))
            >>> batch[[0, 2]].support_x.flatten().tolist(), len(batch[torch.tensor([3])])
            ([0.0, 2.0], 1)
        """
        if isinstance(index, slice):
            return TaskBatch(*(t[index] for t in self.tensors()))
        if isinstance(index, (list, tuple)) or (isinstance(index, (np.ndarray, torch.Tensor))
                                                and index.ndim > 0):
            rows = self._rows(index)
            return TaskBatch(*(t.index_select(0, rows.to(t.device)) for t in self.tensors()))
        try:
            position = operator.index(index)  # type: ignore[arg-type]  # or a 0-d tensor
        except TypeError:
            raise TypeError(f"a TaskBatch is indexed by an int, a slice, or a list, tuple, "
                            f"NumPy array or tensor of task indices (or a boolean mask); got "
                            f"{type(index).__name__}.") from None
        if not -len(self) <= position < len(self):
            raise IndexError(f"task {position} is outside this batch of {len(self)} tasks.")
        return Task(*(t[position] for t in self.tensors()))

    def _rows(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """The task indices a list, tuple, array or tensor (of ints or a boolean mask) selects,
        as a 1-D LongTensor on the CPU, checked against the batch's length."""
        try:
            rows = torch.as_tensor(np.asarray(index) if isinstance(index, (list, tuple))
                                   else index).cpu()
        except (TypeError, ValueError) as error:
            raise TypeError(f"cannot index a TaskBatch by {index!r}: {error}") from None
        if rows.dtype == torch.bool:
            if rows.shape != (len(self),):
                raise IndexError(f"a boolean mask of a TaskBatch needs shape ({len(self)},), "
                                 f"got {tuple(rows.shape)}.")
            return rows.nonzero().flatten()
        if rows.dim() != 1 or rows.dtype.is_floating_point or rows.dtype.is_complex:
            if rows.numel() == 0 and rows.dim() == 1:  # [] reads as floats in NumPy
                return torch.zeros(0, dtype=torch.long)
            raise TypeError(f"a TaskBatch is indexed by a flat sequence of integer task indices "
                            f"or a boolean mask; got {rows.dim()}-D {rows.dtype}.")
        rows = rows.long()
        if len(rows) and not bool(((rows >= -len(self)) & (rows < len(self))).all()):
            raise IndexError(f"task indices {rows.tolist()} go outside this batch of "
                             f"{len(self)} tasks.")
        return torch.where(rows < 0, rows + len(self), rows)

    def __iter__(self) -> Iterator[Task]:
        return (self[i] for i in range(len(self)))

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(support_x, support_y, query_x, query_y)."""
        return self.support_x, self.support_y, self.query_x, self.query_y

    def to(self, device: torch.device | str) -> TaskBatch:
        """The batch on `device` (the same object when it is already there)."""
        if all(t.device == torch.device(device) for t in self.tensors()):
            return self
        return TaskBatch(*(t.to(device, non_blocking=True) for t in self.tensors()))

    @property
    def device(self) -> torch.device:
        return self.support_x.device


class TaskSource(Protocol):
    """Anything that draws tasks: `sample()` returns a fresh `Task`.

    Sources that can draw a whole meta-batch in a few tensor ops also define
    `sample_batch(T) -> TaskBatch` (see `sample_batch` below for the fallback). Sources take a
    `torch.Generator` or seed so that a run, and a resumed run, see the same tasks.

    Example:
        >>> class SignOfSum:  # is a 4-vector's sum positive? 2 classes, 4 + 6 examples
        ...     def __init__(self, seed=0):
        ...         self.generator = torch.Generator().manual_seed(seed)
        ...     def sample(self):
        ...         x = torch.randn(10, 4, generator=self.generator)
        ...         y = (x.sum(dim=1) > 0).long()
        ...         return Task(x[:4], y[:4], x[4:], y[4:])
        >>> batch = sample_batch(SignOfSum(), 3)
        >>> batch.support_x.shape, batch.query_y.shape
        (torch.Size([3, 4, 4]), torch.Size([3, 6]))
    """

    def sample(self) -> Task: ...


def check_task_count(num_tasks: int) -> int:
    """`num_tasks` as an int, if it is a positive whole number of tasks to draw.

    Raises:
        ValueError: zero or a negative number, naming it.
        TypeError: not a whole number.

    Example:
        >>> check_task_count(0)
        Traceback (most recent call last):
        ...
        ValueError: sample_batch needs at least one task, got 0.
    """
    try:
        count = operator.index(num_tasks)
    except TypeError:
        raise TypeError(f"sample_batch takes a whole number of tasks, got {num_tasks!r}.") from None
    if count < 1:
        raise ValueError(f"sample_batch needs at least one task, got {count}.")
    return count


def sample_batch(source: TaskSource, num_tasks: int) -> TaskBatch:
    """`num_tasks` tasks of `source` as one `TaskBatch`: its own `sample_batch` when it has one,
    else `num_tasks` calls of `sample()`, stacked.

    Example:
        >>> from gbml_ext.data.synthetic import LinearRegressionTasks
        >>> sample_batch(LinearRegressionTasks(dim=4, n_support=6), 3).support_x.shape
        torch.Size([3, 6, 4])
    """
    num_tasks = check_task_count(num_tasks)
    draw = getattr(source, "sample_batch", None)
    if draw is not None:
        return draw(num_tasks)
    return stack_samples(source, num_tasks)


def stack_samples(source: TaskSource, num_tasks: int) -> TaskBatch:
    """`num_tasks` calls of `source.sample()`, stacked into one `TaskBatch`: the meta-batch of a
    source that draws one task at a time."""
    return TaskBatch.stack([source.sample() for _ in range(check_task_count(num_tasks))])
