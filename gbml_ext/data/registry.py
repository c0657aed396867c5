"""The vision datasets by name: one canonical spelling each, a few accepted aliases, and
`build_task_sources`, which loads a dataset by name and returns one task source per split: a
`TensorFewShotTasks` (whole meta-batches in a few tensor ops, the default) or learn2learn's
`Taskset` behind `FewShotTasks` (`sampler="learn2learn"`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from learn2learn.data import MetaDataset

from ..registry import Registry
from .cifarfs import load_cifar_fs
from .datasets import SPLIT_NAMES
from .fc100 import load_fc100
from .mini_imagenet import load_mini_imagenet
from .omniglot import load_omniglot
from .sampling import FewShotTasks
from .tensor_sampling import TensorFewShotTasks

__all__ = ["DATASETS", "SAMPLERS", "build_task_sources", "canonical_dataset_name",
           "dataset_names"]

# data.sampler -> the task source class of a split.
SAMPLERS: Registry[type[TensorFewShotTasks] | type[FewShotTasks]] = Registry("data.sampler")
SAMPLERS.register("tensor", TensorFewShotTasks, doc="a meta-batch in a few tensor ops")
SAMPLERS.register("learn2learn", FewShotTasks, doc="learn2learn's Taskset, one task at a time")

# Dataset name -> its loader, `(root, splits=..., **options) -> {split: MetaDataset}`, with
# the other spellings met in configs and papers as aliases.
DATASETS: Registry[Callable[..., dict[str, MetaDataset]]] = Registry("dataset")
DATASETS.register("omniglot", load_omniglot, doc="Omniglot (Lake et al. 2015)")
DATASETS.register("mini-imagenet", load_mini_imagenet,
                  aliases=("mini_imagenet", "miniimagenet"), doc="mini-ImageNet")
DATASETS.register("cifar-fs", load_cifar_fs, aliases=("cifar_fs", "cifarfs"), doc="CIFAR-FS")
DATASETS.register("fc100", load_fc100, doc="FC100")

_T = TypeVar("_T")


def dataset_names() -> tuple[str, ...]:
    """The canonical dataset names (aliases are accepted too, see `canonical_dataset_name`).

    Example:
        >>> dataset_names()
        ('omniglot', 'mini-imagenet', 'cifar-fs', 'fc100')
    """
    return tuple(DATASETS.names())


def canonical_dataset_name(name: str) -> str:
    """The canonical spelling of a dataset name or alias.

    Arguments:
        name: a canonical name ("omniglot", "mini-imagenet", "cifar-fs", "fc100") or an alias
            ("cifarfs", "cifar_fs", "mini_imagenet", "miniimagenet").

    Raises:
        gbml_ext.registry.UnknownName: (a ValueError) naming the valid names, for any other
            name.

    Example:
        >>> canonical_dataset_name("cifarfs"), canonical_dataset_name("fc100")
        ('cifar-fs', 'fc100')
    """
    return DATASETS.canonical(name)


def _split_seed(seed: int | Mapping[str, int] | None, split: str) -> int | None:
    if seed is None or isinstance(seed, Mapping):
        return None if seed is None else seed[split]
    return seed + SPLIT_NAMES.index(split)


def _for_split(value: _T | Mapping[str, _T], split: str) -> _T:
    return value[split] if isinstance(value, Mapping) else value


def build_task_sources(name: str, root: str | Path, ways: int, shots: int, queries: int, *,
                       num_tasks: int | Mapping[str, int] = -1,
                       transforms: Callable[[torch.Tensor], torch.Tensor]
                       | Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
                       seed: int | Mapping[str, int] | None = None,
                       splits: Sequence[str] = SPLIT_NAMES, sampler: str = "tensor",
                       device: torch.device | str = "cpu",
                       **loader_options: Any) -> dict[str, TensorFewShotTasks | FewShotTasks]:
    """Load a few-shot dataset by name and return one task source per split.

    Arguments:
        name: "omniglot", "mini-imagenet", "cifar-fs" or "fc100", or an alias of one.
        root: data folder (or archive, for Omniglot) given to the dataset's loader.
        ways, shots, queries: task shape, see `FewShotTasks`.
        num_tasks, transforms: one value for all splits, or a mapping split -> value. A
            transform takes one image (C, H, W) with sampler "learn2learn", and a batch of
            images (B, C, H, W) with "tensor".
        seed: None (global `random`); a mapping split -> seed; or a base seed, where split i
            gets `seed + i` so the splits draw independent streams.
        splits: which of "train", "validation", "test" to build.
        sampler: "tensor" (`TensorFewShotTasks`: the split as one image tensor on `device`,
            meta-batches drawn in a few tensor ops) or "learn2learn" (`FewShotTasks`: learn2learn's
            `Taskset`, one image at a time; the reference, and the sampler of older runs).
        device: where a "tensor" sampler holds its images and draws its tasks.
        **loader_options: passed to the loader, e.g. rotations=False, split="vinyals",
            split_dir=..., cache_dir=...

    Example:
        >>> sources = build_task_sources("omniglot", "data/", 5, 1, 15)  # doctest: +SKIP
        >>> sources["train"].sample().support_x.shape  # doctest: +SKIP
        torch.Size([5, 1, 28, 28])
    """
    sampler_class = SAMPLERS[sampler]
    load = DATASETS[name]
    datasets = load(root, splits=tuple(splits), **loader_options)
    extra = {"device": device} if sampler == "tensor" else {}
    return {split: sampler_class(datasets[split], ways, shots, queries,
                                     num_tasks=_for_split(num_tasks, split),
                                     transforms=_for_split(transforms, split),
                                     seed=_split_seed(seed, split), **extra)
            for split in splits}
