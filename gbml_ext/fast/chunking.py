"""Chunking the meta-batch under a memory budget: a wrapper of a path, `Chunked`.

A path whose tasks adapt together (`Path.batches_tasks`: the batched and compiled paths) keeps
the graph of every task of a batch alive until its backward, so its peak memory grows about
linearly with the batch: a fixed part (the meta-gradient buffers) plus a per-task part
(activations and inner-loop graphs). `Chunked(path)` is again a path: it runs the wrapped one on
consecutive chunks of the meta-batch and weighs each chunk's meta-gradient by its share of the
tasks, which gives the same meta-gradient up to float rounding, at some speed.

The runner wraps its path so when asked (`algorithm.tasks_per_chunk`,
`train.memory_budget_mb`): with a fixed chunk size it uses it; with a budget, the first call
runs one task per chunk and measures that call's peak (CUDA: allocated tensors,
`torch.cuda.max_memory_allocated`; CPU: resident memory, an upper bound), then every later call
uses `tasks_per_chunk_for_budget` of that cost. Taking the whole one-task peak as the per-task
cost counts the fixed part once per task, so the estimate errs on the side of smaller chunks.
`ChunkedMetaGradient` is the same for one learner, as a callable.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from ..data.tasks import Task
from ..engine import LossFn, TaskOutcome
from ..measure import peak_increase_since, start_peak_watch
from .paths import PATHS, Curves, Path

__all__ = ["ChunkPlan", "Chunked", "ChunkedMetaGradient", "measure_peak_bytes",
           "tasks_per_chunk_for_budget"]

MB = 2**20


def tasks_per_chunk_for_budget(task_count: int, budget_bytes: float,
                               per_task_bytes: float) -> int:
    """The chunk size for `task_count` tasks when a chunk of c tasks needs about
    c · `per_task_bytes`: the fewest chunks that fit in `budget_bytes`, none larger than it needs
    to be (32 tasks that fit 12 at a time run as 11 + 11 + 10, not 12 + 12 + 8). At least 1,
    even when one task alone is over the budget.

    Example:
        >>> tasks_per_chunk_for_budget(32, budget_bytes=1200, per_task_bytes=100)
        11
        >>> tasks_per_chunk_for_budget(32, budget_bytes=10_000, per_task_bytes=100)
        32
        >>> tasks_per_chunk_for_budget(32, budget_bytes=50, per_task_bytes=100)
        1
    """
    if task_count < 1:
        raise ValueError(f"task_count must be >= 1, got {task_count}")
    if per_task_bytes <= 0:
        return task_count
    fit = min(task_count, max(1, int(budget_bytes // per_task_bytes)))
    chunks = math.ceil(task_count / fit)
    return math.ceil(task_count / chunks)


def measure_peak_bytes(function: Callable[[], Any], device: torch.device) -> int:
    """Runs `function()` and returns its peak memory above what was in use before, in bytes
    (`gbml_ext.measure`: CUDA's allocated-tensor peak, or the CPU's peak resident memory). It
    resets the device's peak counter, so a later whole-run peak starts from here."""
    baseline = start_peak_watch(device)
    function()
    return max(0, peak_increase_since(device, baseline))


@dataclass
class ChunkPlan:
    """How a run's meta-batches are chunked: `ChunkedMetaGradient.plan`, and results.json's
    "chunking".

    Attributes:
        tasks_per_chunk: tasks adapted at once (None: the whole meta-batch).
        source: "config" (algorithm.tasks_per_chunk), "budget" (measured against
            train.memory_budget_mb) or "none".
        budget_mb: the budget (0: none).
        one_task_peak_mb: the measured peak of a one-task chunk (None: not measured).
        over_budget: one task alone needs more than the budget (chunks of 1 are used).

    Example:
        >>> import gbml_ext
        >>> step = ChunkedMetaGradient(gbml_ext.MAML(torch.nn.Linear(3, 1)), tasks_per_chunk=4)
        >>> step.plan.source, step.plan.to_dict()["tasks_per_chunk"]
        ('config', 4)
    """

    tasks_per_chunk: Optional[int]
    source: str
    budget_mb: float = 0.0
    one_task_peak_mb: Optional[float] = None
    over_budget: bool = False

    def to_dict(self) -> Dict[str, Any]:
        """The plan as plain data (results.json's "chunking")."""
        return asdict(self)


def _chunked_meta_gradient(path: Path, learner: nn.Module, tasks: Sequence[Task], steps: int,
                           loss_fn: Optional[LossFn], size: int) -> List[TaskOutcome]:
    """`path.meta_gradient` over chunks of at most `size` tasks, each weighed by its share:
    before a chunk the gradients so far are divided by its share k/T and after it multiplied
    back, so the chunk's mean gradient enters with weight k/T and no copy is kept."""
    if size >= len(tasks):
        return path.meta_gradient(learner, tasks, steps, loss_fn)
    parameters = list(learner.parameters())
    outcomes: List[TaskOutcome] = []
    for start in range(0, len(tasks), size):
        chunk = tasks[start:start + size]
        share = len(chunk) / len(tasks)
        for parameter in parameters:
            if parameter.grad is not None:
                parameter.grad.div_(share)
        outcomes.extend(path.meta_gradient(learner, chunk, steps, loss_fn))
        for parameter in parameters:
            if parameter.grad is not None:
                parameter.grad.mul_(share)
    return outcomes


class Chunked:
    """A path (`gbml_ext.fast.paths.Path`) whose meta-batches are chunked by a fixed size or a
    memory budget; evaluation's curves go to the wrapped path unchanged.

    Arguments:
        path: the wrapped path (the batched path if None).
        tasks_per_chunk: adapt at most this many tasks at once (0: no fixed size).
        budget_mb: with no fixed size, keep one chunk's peak under this many MB (0: no budget,
            all tasks at once).
        device: where the peak is measured; None: the device of the learner's first parameter.
        measure: `(function, device) -> peak bytes` (default `measure_peak_bytes`; tests pass
            a stand-in with a known cost).

    Attributes:
        plan: how the meta-batches are chunked (`ChunkPlan`; None until a budget is measured).

    Example:
        >>> import gbml_ext
        >>> maml = gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.1)
        >>> tasks = [Task(torch.randn(6, 3), torch.randn(6, 1), torch.randn(4, 3),
        ...               torch.randn(4, 1)) for _ in range(8)]
        >>> path = Chunked(PATHS["batched"], budget_mb=1.0,
        ...                measure=lambda function, device: (function(), 3 * 2**19)[1])
        >>> len(path.meta_gradient(maml, tasks, 1)), path.plan.tasks_per_chunk  # 1.5 MB a task
        (8, 1)
    """

    def __init__(self, path: Optional[Path] = None, tasks_per_chunk: int = 0,
                 budget_mb: float = 0.0, device: Optional[torch.device] = None,
                 measure: Callable[[Callable[[], Any], torch.device], int] = measure_peak_bytes):
        self.path: Path = PATHS["batched"] if path is None else path
        self.name = self.path.name
        self.batches_tasks = self.path.batches_tasks
        self.refusal = self.path.refusal
        self.budget_mb = float(budget_mb)
        self.measure = measure
        self.device = None if device is None else torch.device(device)
        self.plan: Optional[ChunkPlan] = None
        if tasks_per_chunk:
            self.plan = ChunkPlan(int(tasks_per_chunk), "config", self.budget_mb)
        elif not self.budget_mb:
            self.plan = ChunkPlan(None, "none")

    def unsupported(self, learner: nn.Module, device: torch.device | str | None,
                    training: bool) -> Optional[str]:
        """The wrapped path's answer."""
        return self.path.unsupported(learner, device, training)

    def will_compile(self, learner: nn.Module, batch: Sequence[Task], steps: int,
                     training: bool) -> bool:
        """The wrapped path's answer for the first chunk."""
        size = self.plan.tasks_per_chunk if self.plan is not None else 1
        return self.path.will_compile(learner, batch[:size or len(batch)], steps, training)

    def first_call_s(self, learner: nn.Module, training: bool = True) -> Optional[float]:
        """The wrapped path's answer."""
        return self.path.first_call_s(learner, training)

    def curves(self, learner: nn.Module, batch: Sequence[Task], steps: int,
               loss_fn: Optional[LossFn] = None) -> Curves:
        """The wrapped path's curves (evaluation draws its own chunks)."""
        return self.path.curves(learner, batch, steps, loss_fn)

    def meta_gradient(self, learner: nn.Module, batch: Sequence[Task], steps: int,
                      loss_fn: Optional[LossFn] = None) -> List[TaskOutcome]:
        """Adds the meta-gradient of `batch` to `.grad`, as the wrapped path does, a chunk at
        a time; the first call under a budget measures one task's peak (one task a chunk)."""
        if self.plan is not None or not batch:
            size = len(batch) if self.plan is None else (self.plan.tasks_per_chunk or len(batch))
            return _chunked_meta_gradient(self.path, learner, batch, steps, loss_fn, size)
        outcomes: List[TaskOutcome] = []

        def one_task_at_a_time() -> None:
            outcomes.extend(_chunked_meta_gradient(self.path, learner, batch, steps, loss_fn, 1))

        device = self.device
        if device is None:
            parameters = list(learner.parameters())
            device = parameters[0].device if parameters else torch.device("cpu")
        per_task = self.measure(one_task_at_a_time, device)
        budget = self.budget_mb * MB
        self.plan = ChunkPlan(tasks_per_chunk_for_budget(len(batch), budget, per_task),
                              "budget", self.budget_mb, per_task / MB, per_task > budget)
        return outcomes

    def __repr__(self) -> str:
        return f"Chunked({self.path!r}, {self.plan})"


class ChunkedMetaGradient:
    """A `Chunked` path bound to one learner, as a callable `(tasks, steps, loss_fn=None)`.

    Arguments:
        algorithm: the learner.
        tasks_per_chunk, budget_mb, device, measure: as for `Chunked`.
        path: the wrapped path (the batched path if None).

    Example:
        >>> import gbml_ext
        >>> maml = gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.1)
        >>> tasks = [Task(torch.randn(6, 3), torch.randn(6, 1), torch.randn(4, 3),
        ...               torch.randn(4, 1)) for _ in range(8)]
        >>> step = ChunkedMetaGradient(maml, budget_mb=1.0,
        ...                            measure=lambda function, device: (function(), 3 * 2**19)[1])
        >>> len(step(tasks, 1)), step.plan.tasks_per_chunk   # 1.5 MB a task, 1 MB budget
        (8, 1)
    """

    def __init__(self, algorithm: nn.Module, tasks_per_chunk: int = 0, budget_mb: float = 0.0,
                 device: Optional[torch.device] = None,
                 measure: Callable[[Callable[[], Any], torch.device], int] = measure_peak_bytes,
                 path: Optional[Path] = None):
        self.algorithm = algorithm
        self.chunked = Chunked(path, tasks_per_chunk, budget_mb, device, measure)

    @property
    def plan(self) -> Optional[ChunkPlan]:
        """How the meta-batches are chunked (None until a budget is measured)."""
        return self.chunked.plan

    def __call__(self, tasks: Sequence[Task], steps: int,
                 loss_fn: Optional[LossFn] = None) -> List[TaskOutcome]:
        """Adds the meta-gradient of `tasks` to `.grad`, as `batched_meta_gradient` does."""
        return self.chunked.meta_gradient(self.algorithm, tasks, steps, loss_fn)
