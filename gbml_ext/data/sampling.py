"""N-way K-shot task sampling over a learn2learn `MetaDataset`, with an optional private seed.

Determinism: learn2learn's task transforms (`NWays`, `KShots`, `RemapLabels`) draw from Python's
global `random` module. A `FewShotTasks` built with `seed=None` therefore follows the global
`random` state (which the experiment runner checkpoints and restores). A `FewShotTasks` built with
an integer `seed` keeps a private `random` state of its own, swapped in around each draw, so its
task stream depends only on the seed and the number of tasks drawn so far; `state_dict()` and
`load_state_dict()` carry that private state across a checkpoint.
"""
from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from typing import Any

import torch
from learn2learn.data import MetaDataset, Taskset
from learn2learn.data.transforms import ConsecutiveLabels, KShots, LoadData, NWays, RemapLabels

from .datasets import check_task_fits
from .tasks import Task, TaskBatch, stack_samples

__all__ = ["FewShotTasks"]


class FewShotTasks:
    """N-way K-shot classification tasks drawn from a learn2learn `MetaDataset` (a `TaskSource`).

    Each task picks `ways` classes, `shots + queries` distinct images per class, relabels the
    classes 0..ways-1 in random order, and splits every class into `shots` support and `queries`
    query images. See the module docstring for how `seed` affects determinism.

    Arguments:
        dataset: learn2learn `MetaDataset` whose items are (image (C, H, W) float tensor, label).
        ways: classes per task.
        shots: support images per class.
        queries: query images per class.
        num_tasks: -1 draws a fresh task every time; a positive number fixes a pool of that many
            tasks (learn2learn's `Taskset(num_tasks=...)`, formerly `TaskDataset`) and samples
            from the pool.
        transforms: optional callable applied to each image (C, H, W) of a task after sampling,
            e.g. normalisation or augmentation.
        seed: None follows Python's global `random`; an int gives this source a private stream.

    Returns, from `sample()`: a `Task` with support_x (ways*shots, C, H, W) float, support_y
    (ways*shots,) long, query_x (ways*queries, C, H, W) float, query_y (ways*queries,) long;
    labels in 0..ways-1, grouped by class.

    Example:
        >>> import numpy as np
        >>> from gbml_ext.data.datasets import ImageClassDataset
        >>> ds = ImageClassDataset(np.zeros((30, 28, 28), np.uint8), [i // 5 for i in range(30)],
        ...                        list("abcdef"))
        >>> task = FewShotTasks(ds.meta_dataset(), ways=3, shots=1, queries=2, seed=0).sample()
        >>> task.support_x.shape, task.query_y.shape
        (torch.Size([3, 1, 28, 28]), torch.Size([6]))
    """

    def __init__(self, dataset: MetaDataset, ways: int, shots: int, queries: int,
                 num_tasks: int = -1,
                 transforms: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 seed: int | None = None) -> None:
        if ways < 1 or shots < 1 or queries < 1:
            raise ValueError(f"ways, shots and queries must be >= 1, got ways={ways}, "
                             f"shots={shots}, queries={queries}")
        self.dataset = dataset
        self.ways, self.shots, self.queries = ways, shots, queries
        self.transforms, self.num_tasks = transforms, num_tasks
        check_task_fits(dataset.dataset, ways, shots + queries)
        # Taskset is learn2learn's current name for TaskDataset, which now only adds a
        # deprecation warning on top of it.
        self._tasks = Taskset(dataset, task_transforms=[
            NWays(dataset, ways),
            KShots(dataset, shots + queries),
            LoadData(dataset),
            RemapLabels(dataset),
            ConsecutiveLabels(dataset),
        ], num_tasks=num_tasks)
        self._random_state = None if seed is None else random.Random(seed).getstate()
        if num_tasks > 0:
            # learn2learn would draw pool task i on its first use; drawing the whole pool now
            # makes it depend on the seed alone, so a run resumed from `state_dict()` sees the
            # same pool as the original run.
            with self._private_random():
                for index in range(num_tasks):
                    self._tasks.sampled_descriptions[index] = self._tasks.sample_task_description()

    @contextlib.contextmanager
    def _private_random(self) -> Iterator[None]:
        """Swap this source's private `random` state in for the duration (no-op without seed)."""
        if self._random_state is None:
            yield
            return
        outside_state = random.getstate()
        random.setstate(self._random_state)
        try:
            yield
        finally:
            self._random_state = random.getstate()
            random.setstate(outside_state)

    def sample(self) -> Task:
        """Draw one task (see the class docstring for its shapes)."""
        with self._private_random():
            x, y = self._tasks.sample()
        y = torch.as_tensor(y, dtype=torch.long)
        # learn2learn keeps each class contiguous but in random class order: sorting by label
        # makes every row of the (ways, shots + queries) view one class.
        order = torch.argsort(y, stable=True)
        per_class = self.shots + self.queries
        x = x[order].reshape(self.ways, per_class, *x.shape[1:])
        y = y[order].reshape(self.ways, per_class)
        if self.transforms is not None:
            x = torch.stack([torch.stack([self.transforms(image) for image in row]) for row in x])
        s = self.shots
        return Task(x[:, :s].reshape(-1, *x.shape[2:]).float(), y[:, :s].reshape(-1),
                    x[:, s:].reshape(-1, *x.shape[2:]).float(), y[:, s:].reshape(-1))

    def sample_batch(self, num_tasks: int) -> TaskBatch:
        """`num_tasks` draws of `sample()`, stacked: the same tasks in the same order as calling
        `sample()` that often (learn2learn's `Taskset` draws one image at a time)."""
        return stack_samples(self, num_tasks)

    def state_dict(self) -> dict[str, Any]:
        """The private `random` state (None for an unseeded source), for a checkpoint."""
        return {"random_state": self._random_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict()` returned."""
        self._random_state = state["random_state"]
