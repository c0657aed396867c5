"""Shared machinery for the few-shot image datasets: in-memory class datasets, task sampling,
image decoding with an on-disk cache, archive extraction, and a registry by dataset name.

The dataset modules (`omniglot`, `mini_imagenet`, `cifarfs`, `fc100`) only know their own
on-disk layout; everything they have in common lives here.

Determinism: learn2learn's task transforms (`NWays`, `KShots`, `RemapLabels`) draw from Python's
global `random` module. A `FewShotTasks` built with `seed=None` therefore follows the global
`random` state (which the experiment runner checkpoints and restores). A `FewShotTasks` built with
an integer `seed` keeps a private `random` state of its own, swapped in around each draw, so its
task stream depends only on the seed and the number of tasks drawn so far; `state_dict()` and
`load_state_dict()` carry that private state across a checkpoint.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import random
import shutil
import tarfile
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from learn2learn.data import MetaDataset, Taskset
from learn2learn.data.transforms import ConsecutiveLabels, KShots, LoadData, NWays, RemapLabels
from PIL import Image

from .errors import DatasetError, how_to_get
from .tasks import Task

__all__ = [
    "SPLIT_NAMES",
    "ImageClassDataset",
    "FewShotTasks",
    "build_task_sources",
    "dataset_names",
    "class_split_dataset",
    "decode_images_cached",
    "extract_archive_once",
    "require_path",
]

SPLIT_NAMES = ("train", "validation", "test")

# Split names as they appear in the published split files (val.json, val.csv, val.txt).
SPLIT_FILE_STEMS = {"train": "train", "validation": "val", "test": "test"}

# Dataset name -> (module, loader function). Imported lazily because the dataset modules
# import this one.
_LOADERS = {
    "omniglot": ("gbml_ext.data.omniglot", "load_omniglot"),
    "mini-imagenet": ("gbml_ext.data.mini_imagenet", "load_mini_imagenet"),
    "cifar-fs": ("gbml_ext.data.cifarfs", "load_cifar_fs"),
    "fc100": ("gbml_ext.data.fc100", "load_fc100"),
}


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
                 quarter_turns: Sequence[int] = (0,)):
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

    def __getitem__(self, index: int):
        image_index, rotation_index = index % len(self.images), index // len(self.images)
        image = self.images[image_index].float().div_(255.0)
        turns = self.quarter_turns[rotation_index]
        if turns:
            image = torch.rot90(image, turns, dims=(1, 2))
        return image, self.labels[index]

    def labels_to_indices(self) -> dict[int, list[int]]:
        grouped: dict[int, list[int]] = {}
        for index, label in enumerate(self.labels):
            grouped.setdefault(label, []).append(index)
        return grouped

    def meta_dataset(self) -> MetaDataset:
        """Wrap in learn2learn's `MetaDataset`, handing it the label index so it never has to
        load every image to discover labels."""
        return MetaDataset(self, labels_to_indices=self.labels_to_indices())


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
        >>> ds = ImageClassDataset(np.zeros((30, 28, 28), np.uint8), [i // 5 for i in range(30)],
        ...                        list("abcdef"))
        >>> task = FewShotTasks(ds.meta_dataset(), ways=3, shots=1, queries=2, seed=0).sample()
        >>> task.support_x.shape, task.query_y.shape
        (torch.Size([3, 1, 28, 28]), torch.Size([6]))
    """

    def __init__(self, dataset: MetaDataset, ways: int, shots: int, queries: int,
                 num_tasks: int = -1, transforms: Callable | None = None, seed: int | None = None):
        if ways < 1 or shots < 1 or queries < 1:
            raise ValueError(f"ways, shots and queries must be >= 1, got ways={ways}, "
                             f"shots={shots}, queries={queries}")
        self.dataset = dataset
        self.ways, self.shots, self.queries = ways, shots, queries
        self.transforms, self.num_tasks = transforms, num_tasks
        self._check_task_fits(dataset, ways, shots + queries)
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

    @staticmethod
    def _check_task_fits(dataset: MetaDataset, ways: int, per_class: int) -> None:
        class_names = getattr(getattr(dataset, "dataset", None), "class_names", None)
        num_classes = len(dataset.labels)
        if ways > num_classes:
            raise DatasetError(
                f"asked for {ways}-way tasks but this split has only {num_classes} classes",
                f"use ways <= {num_classes}, or check that the split holds all its classes "
                "(an incomplete download or a wrong split file gives fewer).")
        too_small = {label: len(indices) for label, indices in dataset.labels_to_indices.items()
                     if len(indices) < per_class}
        if too_small:
            label, count = min(too_small.items(), key=lambda item: item[1])
            name = class_names[label] if class_names is not None else label
            raise DatasetError(
                f"shots+queries = {per_class} images per class are needed, but {len(too_small)} "
                f"classes have fewer (class {name!r} has only {count})",
                f"lower shots or queries so that shots+queries <= {count}, or check that every "
                "class folder was extracted completely.")

    @contextlib.contextmanager
    def _private_random(self):
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

    def state_dict(self) -> dict:
        return {"random_state": self._random_state}

    def load_state_dict(self, state: dict) -> None:
        self._random_state = state["random_state"]


def class_split_dataset(images: np.ndarray, image_classes: Sequence[str],
                        split_classes: Sequence[str], quarter_turns: Sequence[int], dataset: str,
                        root) -> MetaDataset:
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


def require_path(path: Path, what: str, dataset: str, root) -> Path:
    """Return `path` if it exists, else raise a `DatasetError` naming it and how to get the data.

    Example:
        >>> require_path(Path("/"), "root", "omniglot", "/")
        PosixPath('/')
    """
    if not path.exists():
        raise DatasetError(f"{what} not found: expected {path}", how_to_get(dataset, root))
    return path


def _decode_image(path: Path, size: tuple[int, int], mode: str, dataset: str, root) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image = image.convert(mode)
            if image.size != size:
                # Lanczos (PIL's former ANTIALIAS) is what MAML and Ravi & Larochelle resized with.
                image = image.resize(size, resample=Image.LANCZOS)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot decode image {path}: {error}",
                           "the file is damaged; re-extract or re-download it. "
                           + how_to_get(dataset, root)) from error


def decode_images_cached(files: Sequence[Path], keys: Sequence[str], size: tuple[int, int],
                         mode: str, cache_file: Path | None, dataset: str, root) -> np.ndarray:
    """Decode and resize image files to one uint8 array, reusing a `.npz` cache when it matches.

    The cache stores the decoded pixels together with `keys`; it is reused only when the keys are
    identical, so adding, removing or renaming files rebuilds it. A cache that cannot be written
    (read-only data folder) only costs a warning.

    Arguments:
        files: image paths to decode.
        keys: one stable identifier per file (its path relative to the dataset root).
        size: (width, height) to resize to.
        mode: PIL mode, "L" for grey (gives (N, H, W)) or "RGB" (gives (N, H, W, 3)).
        cache_file: where to keep the `.npz`, or None for no cache.
        dataset, root: used to word errors.

    Example:
        >>> decode_images_cached([], [], (28, 28), "L", None, "omniglot", "/data").shape
        (0, 28, 28)
    """
    keys = np.asarray(list(keys), dtype=str)
    if cache_file is not None and cache_file.exists():
        try:
            with np.load(cache_file, allow_pickle=False) as cached:
                if np.array_equal(cached["keys"], keys):
                    return cached["images"]
        except (OSError, ValueError, KeyError, EOFError):
            pass  # an unreadable cache is rebuilt below
    channels = () if mode == "L" else (len(mode),)
    images = np.empty((len(files), size[1], size[0], *channels), dtype=np.uint8)
    for i, path in enumerate(files):
        images[i] = _decode_image(Path(path), size, mode, dataset, root)
    if cache_file is not None:
        _write_npz_atomically(cache_file, images=images, keys=keys)
    return images


def _write_npz_atomically(target: Path, **arrays) -> None:
    # Written under a temporary name and renamed so that an interrupted run never leaves a
    # half-written cache that a later run would trust.
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as stream:
            np.savez(stream, **arrays)
        os.replace(temporary, target)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        warnings.warn(f"could not write image cache {target} ({error}); the next run decodes "
                      "the images again. Pass a writable cache_dir to keep the cache.")


def extract_archive_once(archive: Path, expected_top: str, destination: Path, dataset: str) -> Path:
    """Extract a .tar.gz into `destination` unless a previous extraction completed there.

    Arguments:
        archive: the .tar.gz file.
        expected_top: the folder the archive must contain at its top (e.g. "omniglot-py").
        destination: folder to extract into; `destination / expected_top` is returned.
        dataset: used to word errors.

    Example:
        >>> archive = Path("omniglot-py.tar.gz")
        >>> extract_archive_once(archive, "omniglot-py", Path(".cache"), "omniglot")  # doctest: +SKIP
        PosixPath('.cache/omniglot-py')
    """
    target = destination / expected_top
    # The marker is written last, so its presence proves the extraction finished.
    marker = destination / f".{archive.name}.extracted"
    if marker.exists() and target.is_dir():
        return target
    try:
        destination.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=destination, prefix=".extracting-"))
    except OSError as error:
        raise DatasetError(f"cannot extract {archive} into {destination}: {error}",
                           "pass cache_dir= pointing at a writable folder, or extract by hand: "
                           f"tar xzf {archive} -C <folder> and pass that folder as root."
                           ) from error
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(staging, filter="data")
        if not (staging / expected_top).is_dir():
            raise DatasetError(f"{archive} has no top-level folder {expected_top}/",
                               how_to_get(dataset, destination))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging / expected_top, target)
        marker.write_text(f"{archive.resolve()}\n")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DatasetError(f"cannot read archive {archive}: {error}",
                           "the archive is truncated or damaged; fetch it again. "
                           + how_to_get(dataset, destination)) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def dataset_names() -> tuple[str, ...]:
    """Names accepted by `build_task_sources`.

    Example:
        >>> dataset_names()
        ('omniglot', 'mini-imagenet', 'cifar-fs', 'fc100')
    """
    return tuple(_LOADERS)


def _for_split(value, split: str):
    return value[split] if isinstance(value, Mapping) else value


def build_task_sources(name: str, root, ways: int, shots: int, queries: int, *,
                       num_tasks: int | Mapping[str, int] = -1,
                       transforms: Callable | Mapping[str, Callable] | None = None,
                       seed: int | None = None, splits: Sequence[str] = SPLIT_NAMES,
                       **loader_options) -> dict[str, FewShotTasks]:
    """Load a few-shot dataset by name and return one `FewShotTasks` per split.

    Arguments:
        name: "omniglot", "mini-imagenet", "cifar-fs" or "fc100".
        root: data folder (or archive, for Omniglot) given to the dataset's loader.
        ways, shots, queries: task shape, see `FewShotTasks`.
        num_tasks, transforms: one value for all splits, or a mapping split -> value.
        seed: None (global `random`), or a base seed; split i gets `seed + i` so the splits draw
            independent streams.
        splits: which of "train", "validation", "test" to build.
        **loader_options: passed to the loader, e.g. rotations=False, split="vinyals",
            split_dir=..., cache_dir=...

    Example:
        >>> sources = build_task_sources("omniglot", "data/", 5, 1, 15)  # doctest: +SKIP
        >>> sources["train"].sample().support_x.shape  # doctest: +SKIP
        torch.Size([5, 1, 28, 28])
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(_LOADERS)}")
    module_name, function_name = _LOADERS[name]
    load = getattr(importlib.import_module(module_name), function_name)
    datasets = load(root, splits=tuple(splits), **loader_options)
    return {split: FewShotTasks(datasets[split], ways, shots, queries,
                                num_tasks=_for_split(num_tasks, split),
                                transforms=_for_split(transforms, split),
                                seed=None if seed is None else seed + SPLIT_NAMES.index(split))
            for split in splits}
