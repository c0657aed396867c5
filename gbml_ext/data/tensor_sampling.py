"""N-way K-shot meta-batches drawn in a handful of tensor ops, on the device the images live on.

`TensorFewShotTasks` holds one split as a single uint8 image tensor plus a class index table and
draws T tasks at once from its own `torch.Generator`:

1. classes: T rows of `ways` distinct classes (uniform random integers, rows with a repeat
   redrawn; or the `ways` smallest of uniform keys when classes are few);
2. images: for every (task, class), the `shots + queries` smallest of uniform keys over that
   class's images, i.e. distinct images, the first `shots` of them the support set;
3. one `index_select` for the support images and one for the query images, each converted to
   float once.

Rotation classes (Omniglot's 0/90/180/270 degrees) are part of the class identity, as in
`ImageClassDataset`: class `c` is base class `c // R` turned by `quarter_turns[c % R]`, and the
rotated copies are made once, when the sampler is built.

The tasks follow the same distribution as learn2learn's `Taskset` (`FewShotTasks`, the
reference: classes uniform without replacement, images uniform without replacement within a
class, the class behind label j uniform), which tests/test_task_batches.py checks with
chi-square tests. They are not the same draws: the two samplers use different generators.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from learn2learn.data import MetaDataset

from .datasets import ImageClassDataset, check_task_fits
from .tasks import Task, TaskBatch, check_task_count

__all__ = ["TensorFewShotTasks"]


class TensorFewShotTasks:
    """N-way K-shot classification tasks, a whole meta-batch per call (a `TaskSource`).

    Arguments:
        dataset: the split, an `ImageClassDataset` or the learn2learn `MetaDataset` around one
            (what the loaders in `gbml_ext.data` return).
        ways: classes per task.
        shots: support images per class.
        queries: query images per class.
        num_tasks: -1 draws fresh tasks every time; a positive number fixes a pool of that many
            tasks, drawn once from the seed, and samples tasks from the pool.
        transforms: optional callable applied to the float images of a batch, shape
            (B, C, H, W) with B = T * ways * shots (support) or T * ways * queries (query):
            normalisation or augmentation as tensor ops.
        seed: seed of this source's generator (None: a random seed).
        device: where the images are held and the tasks drawn ("cuda" when training on a GPU).

    Returns, from `sample_batch(T)`: a `TaskBatch` with support_x (T, ways*shots, C, H, W)
    float in [0, 1], support_y (T, ways*shots) long, query_x (T, ways*queries, C, H, W),
    query_y (T, ways*queries); labels 0..ways-1 grouped by class (label j's class is random).
    `sample()` is one task of `sample_batch(1)`.

    Example:
        >>> import numpy as np
        >>> ds = ImageClassDataset(np.zeros((30, 28, 28), np.uint8), [i // 5 for i in range(30)],
        ...                        list("abcdef"))
        >>> batch = TensorFewShotTasks(ds, ways=3, shots=1, queries=2, seed=0).sample_batch(4)
        >>> batch.support_x.shape, batch.query_y.shape
        (torch.Size([4, 3, 1, 28, 28]), torch.Size([4, 6]))
    """

    def __init__(self, dataset: ImageClassDataset | MetaDataset, ways: int, shots: int,
                 queries: int, num_tasks: int = -1,
                 transforms: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 seed: int | None = None, device: torch.device | str = "cpu") -> None:
        if ways < 1 or shots < 1 or queries < 1:
            raise ValueError(f"ways, shots and queries must be >= 1, got ways={ways}, "
                             f"shots={shots}, queries={queries}")
        data = dataset.dataset if isinstance(dataset, MetaDataset) else dataset
        check_task_fits(data, ways, shots + queries)
        self.ways, self.shots, self.queries = ways, shots, queries
        self.transforms, self.num_tasks = transforms, num_tasks
        self.device = torch.device(device)
        labels = data.base_labels
        turns = len(data.quarter_turns)
        counts = torch.bincount(labels, minlength=data.num_classes // turns)
        # table[b, i]: the index of the i-th image of base class b (0-padded past its count).
        order = torch.argsort(labels, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        position = torch.arange(len(labels)) - starts[labels[order]]
        table = torch.zeros(len(counts), int(counts.max()), dtype=torch.long)
        table[labels[order], position] = order
        images = data.images
        if turns > 1:  # every rotated copy once, so a draw is one gather
            images = torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in data.quarter_turns])
        classes = torch.arange(data.num_classes)
        self.images = images.contiguous().to(self.device)
        self._table = table.to(self.device)
        self._class_base = (classes // turns).to(self.device)
        self._class_offset = ((classes % turns) * len(labels)).to(self.device)
        self._class_count = counts[classes // turns].to(self.device)
        self._ragged = bool((counts < counts.max()).any())  # classes of unequal sizes
        self.num_classes = data.num_classes
        self._labels = {n: torch.arange(ways, device=self.device).repeat_interleave(n)
                        for n in {shots, queries}}
        self.generator = torch.Generator(self.device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self._pool: tuple[torch.Tensor, torch.Tensor] | None = None
        if num_tasks > 0:
            self._pool = self._draw_indices(num_tasks)

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, device=self.device)

    def _draw_classes(self, num_tasks: int) -> torch.Tensor:
        """(T, ways) distinct classes per row, uniform over ordered tuples."""
        if self.ways * self.ways > self.num_classes:  # repeats are likely: rank random keys
            return self._rand(num_tasks, self.num_classes).topk(self.ways, dim=1).indices
        classes = torch.randint(self.num_classes, (num_tasks, self.ways),
                                generator=self.generator, device=self.device)
        while True:  # redraw the rows with a repeated class (rare: ~ways²/2C of them)
            ordered = classes.sort(dim=1).values
            repeated = (ordered[:, 1:] == ordered[:, :-1]).any(dim=1)
            count = int(repeated.sum())
            if not count:
                return classes
            classes[repeated] = torch.randint(self.num_classes, (count, self.ways),
                                              generator=self.generator, device=self.device)

    def _draw_indices(self, num_tasks: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image indices of the support (T, ways*shots) and query (T, ways*queries) sets."""
        classes = self._draw_classes(num_tasks)
        per_class = self.shots + self.queries
        keys = self._rand(num_tasks, self.ways, self._table.shape[1])
        if self._ragged:
            width = torch.arange(self._table.shape[1], device=self.device)
            keys.masked_fill_(width >= self._class_count[classes].unsqueeze(-1), 2.0)
        picks = keys.topk(per_class, dim=2, largest=False).indices
        index = (self._table[self._class_base[classes].unsqueeze(-1), picks]
                 + self._class_offset[classes].unsqueeze(-1))
        return (index[:, :, :self.shots].reshape(num_tasks, -1),
                index[:, :, self.shots:].reshape(num_tasks, -1))

    def _images(self, index: torch.Tensor) -> torch.Tensor:
        flat = self.images.index_select(0, index.flatten()).float().div_(255.0)
        if self.transforms is not None:
            flat = self.transforms(flat)
        return flat.view(*index.shape, *flat.shape[1:])

    def sample_batch(self, num_tasks: int) -> TaskBatch:
        """`num_tasks` tasks as one `TaskBatch` on this source's device (see the class)."""
        num_tasks = check_task_count(num_tasks)
        if self._pool is not None:
            chosen = torch.randint(len(self._pool[0]), (num_tasks,), generator=self.generator,
                                   device=self.device)
            support, query = self._pool[0][chosen], self._pool[1][chosen]
        else:
            support, query = self._draw_indices(num_tasks)
        return TaskBatch(self._images(support),
                         self._labels[self.shots].expand(num_tasks, -1),
                         self._images(query),
                         self._labels[self.queries].expand(num_tasks, -1))

    def sample(self) -> Task:
        """One task: `sample_batch(1)[0]`."""
        return self.sample_batch(1)[0]

    def state_dict(self) -> dict[str, Any]:
        """The generator's state (the pool, if any, follows from the seed), for a checkpoint."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict()` returned."""
        self.generator.set_state(state["generator"])
