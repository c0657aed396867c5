"""In-memory image classes: one split's images held as uint8, and the selection of a split's
classes out of a whole dataset.

Every vision loader ends here: it decodes (or unpickles) all images of a dataset into one uint8
array, names the class of each image, and `class_split_dataset` cuts out the images of one
split as an `ImageClassDataset` wrapped in learn2learn's `MetaDataset`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from learn2learn.data import MetaDataset

from .errors import DatasetError, how_to_get

__all__ = ["SPLIT_FILE_STEMS", "SPLIT_NAMES", "ImageClassDataset", "check_task_fits",
           "class_split_dataset"]

SPLIT_NAMES = ("train", "validation", "test")

# Split names as they appear in the published split files (val.json, val.csv, val.txt).
SPLIT_FILE_STEMS = {"train": "train", "validation": "val", "test": "test"}


class ImageClassDataset(torch.utils.data.Dataset):
    """Images of one split held in memory as uint8, served as float tensors in [0, 1].

    With several `quarter_turns`, every (class, rotation) pair becomes a class of its own, as in
    MAML's Omniglot: sample `j` is image `j % N` turned by `90 * quarter_turns[j // N]` degrees
    counter-clockwise, with label `label * R + j // N` (R = number of rotations).

    Arguments:
        images: (N, H, W) or (N, H, W, C) uint8 array.
        labels: (N,) ints in 0..len(class_names)-1.
        class_names: names of the unrotated classes.
        quarter_turns: rotations to apply, in multiples of 90 degrees, e.g. (0, 1, 2, 3).

    Example:
        >>> images = np.zeros((4, 28, 28), np.uint8)
        >>> ds = ImageClassDataset(images, [0, 0, 1, 1], ["a", "b"], quarter_turns=(0, 1))
        >>> len(ds), ds.num_classes, ds[5][0].shape, ds[5][1], ds.class_names[3]
        (8, 4, torch.Size([1, 28, 28]), 1, 'b@90')
    """

    def __init__(self, images: np.ndarray, labels: Sequence[int], class_names: Sequence[str],
                 quarter_turns: Sequence[int] = (0,)) -> None:
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        self.images = self.images.contiguous()
        self.base_labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.quarter_turns = tuple(int(k) for k in quarter_turns)
        turns = len(self.quarter_turns)
        self.class_names = [name if k == 0 else f"{name}@{90 * k}"
                            for name in class_names for k in self.quarter_turns]
        self.num_classes = len(self.class_names)
        self.labels = [int(label) * turns + r
                       for r in range(turns) for label in self.base_labels.tolist()]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image_index, rotation_index = index % len(self.images), index // len(self.images)
        image = self.images[image_index].float().div_(255.0)
        turns = self.quarter_turns[rotation_index]
        if turns:
            image = torch.rot90(image, turns, dims=(1, 2))
        return image, self.labels[index]

    def labels_to_indices(self) -> dict[int, list[int]]:
        """Map each label to the indices of its samples.

        Example:
            >>> ImageClassDataset(np.zeros((3, 2, 2), np.uint8), [1, 0, 1], ["a", "b"]
            ...                   ).labels_to_indices()
            {1: [0, 2], 0: [1]}
        """
        grouped: dict[int, list[int]] = {}
        for index, label in enumerate(self.labels):
            grouped.setdefault(label, []).append(index)
        return grouped

    def meta_dataset(self) -> MetaDataset:
        """Wrap in learn2learn's `MetaDataset`, handing it the label index so it never has to
        load every image to discover labels.

        Example:
            >>> ds = ImageClassDataset(np.zeros((2, 2, 2), np.uint8), [0, 1], ["a", "b"])
            >>> sorted(ds.meta_dataset().labels)
            [0, 1]
        """
        return MetaDataset(self, labels_to_indices=self.labels_to_indices())


def class_split_dataset(images: np.ndarray, image_classes: Sequence[str],
                        split_classes: Sequence[str], quarter_turns: Sequence[int], dataset: str,
                        root: str | Path) -> MetaDataset:
    """Select the images whose class is in `split_classes` and wrap them as a `MetaDataset`.

    Arguments:
        images: (N, H, W) or (N, H, W, C) uint8 array of the whole dataset.
        image_classes: (N,) class name of each image.
        split_classes: the classes of this split, in label order.
        quarter_turns: passed to `ImageClassDataset`.
        dataset, root: used to word the error when a class has no images.

    Example:
        >>> images = np.zeros((4, 2, 2), np.uint8)
        >>> md = class_split_dataset(images, ["a", "a", "b", "c"], ["a", "c"], (0,), "fc100", "/")
        >>> len(md), md.dataset.class_names
        (3, ['a', 'c'])
    """
    label_of = {name: label for label, name in enumerate(split_classes)}
    selected = [i for i, name in enumerate(image_classes) if name in label_of]
    found = {image_classes[i] for i in selected}
    missing = [name for name in split_classes if name not in found]
    if missing:
        raise DatasetError(
            f"{len(missing)} classes of the split have no images under {root}: "
            f"{', '.join(map(repr, missing[:5]))}{' ...' if len(missing) > 5 else ''}",
            "the data is incomplete or does not match the split files; "
            + how_to_get(dataset, root))
    labels = [label_of[image_classes[i]] for i in selected]
    split = ImageClassDataset(images[selected], labels, list(split_classes), quarter_turns)
    return split.meta_dataset()


def check_task_fits(dataset: ImageClassDataset, ways: int, per_class: int) -> None:
    """Raise a `DatasetError` if a split cannot supply `ways` classes of `per_class` images.

    Example:
        >>> ds = ImageClassDataset(np.zeros((4, 2, 2), np.uint8), [0, 0, 1, 1], ["a", "b"])
        >>> try:
        ...     check_task_fits(ds, ways=3, per_class=1)
        ... except DatasetError as error:
        ...     print(error.problem)
        asked for 3-way tasks but this split has only 2 classes
    """
    if ways > dataset.num_classes:
        raise DatasetError(
            f"asked for {ways}-way tasks but this split has only {dataset.num_classes} classes",
            f"use ways <= {dataset.num_classes}, or check that the split holds all its classes "
            "(an incomplete download or a wrong split file gives fewer).")
    counts = torch.bincount(dataset.base_labels, minlength=len(dataset.class_names)
                            // len(dataset.quarter_turns))
    too_small = (counts < per_class).nonzero().flatten().tolist()
    if too_small:
        label = min(too_small, key=lambda c: int(counts[c]))
        count = int(counts[label])
        name = dataset.class_names[label * len(dataset.quarter_turns)]
        raise DatasetError(
            f"shots+queries = {per_class} images per class are needed, but "
            f"{len(too_small) * len(dataset.quarter_turns)} classes have fewer (class {name!r} "
            f"has only {count})",
            f"lower shots or queries so that shots+queries <= {count}, or check that every "
            "class folder was extracted completely.")
