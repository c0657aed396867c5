"""Tiny few-shot vision datasets written in each dataset's real on-disk format, for tests.

Every writer takes a folder (pytest's `tmp_path`) and produces a miniature copy of the real
layout: Omniglot's PNG tree (and a .tar.gz of it), learn2learn's mini-ImageNet pickles, Ravi &
Larochelle's CSV + JPEG folder, and the CIFAR-100 per-class PNG folders with Bertinetto split
files. Pixel content is random but fixed by a seed, so images differ from one another.
`snapshot_tree` fingerprints a folder, to check that loading a dataset leaves it untouched.
"""
from __future__ import annotations

import csv
import hashlib
import json
import pickle
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = [
    "assert_task",
    "snapshot_tree",
    "write_bertinetto_splits",
    "write_cifar100_tree",
    "write_fc100_split_files",
    "write_mini_imagenet_csv",
    "write_mini_imagenet_pickles",
    "write_omniglot_archive",
    "write_omniglot_tree",
    "write_vinyals_split_files",
]

OMNIGLOT_FIXTURE_ALPHABETS = {
    "images_background": {"Alpha": 3, "Beta": 2},
    "images_evaluation": {"Gamma": 3},
}


def _random_pixels(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def write_omniglot_tree(base: Path,
                        alphabets: Mapping[str, Mapping[str, int]] = OMNIGLOT_FIXTURE_ALPHABETS,
                        drawings: int = 4, seed: int = 0) -> Path:
    """Write base/omniglot-py/<subset>/<alphabet>/characterNN/NNNN_DD.png as 105x105 1-bit PNGs.

    Returns `base`, the root to give the loader. The default has 8 characters (5 background,
    3 evaluation) of 4 drawings each.
    """
    rng = np.random.default_rng(seed)
    character_id = 0
    for subset, by_alphabet in alphabets.items():
        for alphabet, characters in by_alphabet.items():
            for c in range(1, characters + 1):
                character_id += 1
                folder = base / "omniglot-py" / subset / alphabet / f"character{c:02d}"
                folder.mkdir(parents=True)
                for d in range(1, drawings + 1):
                    # Mostly white with black strokes, like the real drawings.
                    ink = rng.random((105, 105)) < 0.1
                    png = folder / f"{character_id:04d}_{d:02d}.png"
                    Image.fromarray(~ink).convert("1").save(png)
    return base


def write_omniglot_archive(base: Path, archive: Path) -> Path:
    """Pack base/omniglot-py into `archive` (.tar.gz) as the shared data copy is packed."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(base / "omniglot-py", arcname="omniglot-py")
    return archive


def write_vinyals_split_files(folder: Path, splits: Mapping[str, Sequence[str]]) -> Path:
    """Write folder/{train,val,test}.json in torchmeta's Omniglot format from character keys
    "images_<subset>/<alphabet>/<character>"."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem, keys in splits.items():
        content: dict = {}
        for key in keys:
            subset, alphabet, character = key.split("/")
            by_alphabet = content.setdefault(subset.removeprefix("images_"), {})
            by_alphabet.setdefault(alphabet, []).append(character)
        (folder / f"{stem}.json").write_text(json.dumps(content))
    return folder


def write_mini_imagenet_pickles(root: Path, classes: Mapping[str, int] | None = None,
                                images_per_class: int = 6, seed: int = 0) -> Path:
    """Write root/mini-imagenet-cache-<split>.pkl as learn2learn does: a dict with image_data
    (N, 84, 84, 3) uint8 and class_dict {wnid: [indices]}. Classes are interleaved so the
    indices of one class are not contiguous."""
    classes = classes or {"train": 5, "validation": 3, "test": 3}
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    wnid = 1000000
    for split, count in classes.items():
        names = [f"n0{wnid + i}" for i in range(count)]
        wnid += count
        total = count * images_per_class
        class_dict = {name: list(range(i, total, count)) for i, name in enumerate(names)}
        content = {"image_data": _random_pixels(rng, (total, 84, 84, 3)), "class_dict": class_dict}
        with open(root / f"mini-imagenet-cache-{split}.pkl", "wb") as stream:
            pickle.dump(content, stream, protocol=pickle.HIGHEST_PROTOCOL)
    return root


def write_mini_imagenet_csv(root: Path, classes: Mapping[str, int] | None = None,
                            images_per_class: int = 4, size=(100, 90), seed: int = 0) -> Path:
    """Write root/{train,val,test}.csv (filename,label) and JPEGs of `size` in root/images/."""
    classes = classes or {"train": 4, "val": 3, "test": 3}
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    wnid = 2000000
    for stem, count in classes.items():
        with open(root / f"{stem}.csv", "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["filename", "label"])
            for c in range(count):
                label = f"n0{wnid + c}"
                for i in range(1, images_per_class + 1):
                    filename = f"{label}{i:08d}.jpg"
                    pixels = _random_pixels(rng, (size[1], size[0], 3))
                    Image.fromarray(pixels).save(root / "images" / filename)
                    writer.writerow([filename, label])
        wnid += count
    return root


def write_cifar100_tree(root: Path, class_names: Sequence[str], images_per_class: int = 4,
                        seed: int = 0) -> Path:
    """Write root/cifar100/data/<class>/<n>.png as 32x32 RGB PNGs."""
    rng = np.random.default_rng(seed)
    for name in class_names:
        folder = root / "cifar100" / "data" / name
        folder.mkdir(parents=True)
        for i in range(images_per_class):
            Image.fromarray(_random_pixels(rng, (32, 32, 3))).save(folder / f"{i}.png")
    return root


def write_bertinetto_splits(root: Path, splits: Mapping[str, Sequence[str]]) -> Path:
    """Write root/cifar100/splits/bertinetto/<stem>.txt, one class name per line."""
    folder = root / "cifar100" / "splits" / "bertinetto"
    folder.mkdir(parents=True, exist_ok=True)
    for stem, names in splits.items():
        (folder / f"{stem}.txt").write_text("".join(f"{name}\n" for name in names))
    return root


def write_fc100_split_files(folder: Path, splits: Mapping[str, Sequence[str]]) -> Path:
    """Write folder/<stem>.json, each a JSON list of superclass names (torchmeta's format)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem, names in splits.items():
        (folder / f"{stem}.json").write_text(json.dumps(list(names)))
    return folder


def snapshot_tree(folder: Path) -> dict[str, str]:
    """Map every path under `folder` (relative, as a string) to the sha256 of its bytes, or to
    "<dir>" for a folder: equal snapshots mean nothing was added, removed or changed.

    Example:
        >>> snapshot_tree(Path("/nonexistent-folder"))
        {}
    """
    return {str(path.relative_to(folder)):
            "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*"))}


def write_cifar_fs(root: Path, split_sizes: Sequence[int] = (4, 3, 3),
                   images_per_class: int = 4) -> Path:
    """A CIFAR-FS fixture: a CIFAR-100 tree of `sum(split_sizes)` classes named class0, ...,
    split into train / val / test by `split_sizes` (Bertinetto's split files)."""
    names = [f"class{i}" for i in range(sum(split_sizes))]
    write_cifar100_tree(root, names, images_per_class=images_per_class)
    train, val = split_sizes[0], split_sizes[0] + split_sizes[1]
    write_bertinetto_splits(root, {"train": names[:train], "val": names[train:val],
                                   "test": names[val:]})
    return root


def assert_task(task: Any, ways: int, shots: int, queries: int,
                image_shape: Sequence[int]) -> None:
    """A task's shapes, dtypes, labels (`shots` and `queries` of each of `ways` classes) and
    pixel range [0, 1]."""
    from gbml_ext.data import Task

    assert isinstance(task, Task)
    assert task.support_x.shape == (ways * shots, *image_shape)
    assert task.query_x.shape == (ways * queries, *image_shape)
    assert task.support_x.dtype == task.query_x.dtype == torch.float32
    assert task.support_y.dtype == task.query_y.dtype == torch.long
    assert task.support_y.bincount(minlength=ways).tolist() == [shots] * ways
    assert task.query_y.bincount(minlength=ways).tolist() == [queries] * ways
    assert 0.0 <= task.support_x.min() and task.support_x.max() <= 1.0
