"""CIFAR-FS (Bertinetto et al. 2019): CIFAR-100 split by class into 64 / 16 / 20 classes of
600 images, 32x32 RGB, in learn2learn's on-disk layout:

    ROOT/cifar100/data/<class_name>/*.png
    ROOT/cifar100/splits/bertinetto/{train,val,test}.txt    (class names, one per line)

(`ROOT/cifarfs/cifar100/...`, where learn2learn unzips its archive, is accepted too.) Decoded
images of all class folders are cached in one `.npz` (in `cache_dir`, else in a folder per
`cifar100` folder under ~/.cache/gbml_ext/cifar100/; never inside ROOT), shared with the FC100
loader, which reads the same folders.

Citation: L. Bertinetto, J. F. Henriques, P. H. S. Torr, A. Vedaldi. Meta-learning with
differentiable closed-form solvers. ICLR 2019.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from learn2learn.data import MetaDataset

from .cache import cache_folder
from .datasets import SPLIT_FILE_STEMS, SPLIT_NAMES, class_split_dataset
from .errors import DatasetError, how_to_get, require_path
from .images import decode_images_cached

__all__ = ["CIFAR_SIZE", "load_cifar100_class_folders", "load_cifar_fs", "locate_cifar100_folder"]

CIFAR_SIZE = 32


def load_cifar_fs(root: str | Path, cache_dir: str | Path | None = None,
                  splits: Sequence[str] = SPLIT_NAMES) -> dict[str, MetaDataset]:
    """Load CIFAR-FS as one learn2learn `MetaDataset` per split.

    Arguments:
        root: folder holding `cifar100/` (or `cifarfs/cifar100/`).
        cache_dir: where to keep the decoded-image cache (default: a folder under
            ~/.cache/gbml_ext/cifar100/, or under $XDG_CACHE_HOME/gbml_ext/cifar100/).
        splits: which of "train", "validation", "test" to return.

    Returns: {split: MetaDataset} with items (image (3, 32, 32) float in [0, 1], label);
        `.dataset.class_names` holds the CIFAR-100 class names.

    Example:
        >>> data = load_cifar_fs("data/")  # doctest: +SKIP
        >>> len(data["train"].labels), data["train"][0][0].shape  # doctest: +SKIP
        (64, torch.Size([3, 32, 32]))
    """
    cifar_dir = locate_cifar100_folder(root, "cifar-fs")
    split_classes = {split: _read_class_list(cifar_dir / "splits" / "bertinetto"
                                             / f"{SPLIT_FILE_STEMS[split]}.txt", root)
                     for split in splits}
    images, image_classes = load_cifar100_class_folders(root, cache_dir, "cifar-fs")
    return {split: class_split_dataset(images, image_classes, split_classes[split], (0,),
                                       "cifar-fs", root)
            for split in splits}


def locate_cifar100_folder(root: str | Path, dataset: str) -> Path:
    """Return the `cifar100` folder under `root` (directly or under `cifarfs/`).

    Example:
        >>> locate_cifar100_folder("data/", "cifar-fs")  # doctest: +SKIP
        PosixPath('data/cifar100')
    """
    root = Path(root).expanduser()
    require_path(root, "CIFAR-100 root", dataset, root)
    for candidate in (root / "cifar100", root / "cifarfs" / "cifar100"):
        if candidate.is_dir():
            return candidate
    raise DatasetError(f"no CIFAR-100 folder in {root}: expected {root / 'cifar100'}/data",
                       how_to_get(dataset, root))


def load_cifar100_class_folders(root: str | Path, cache_dir: str | Path | None,
                                dataset: str) -> tuple[np.ndarray, list[str]]:
    """Decode every PNG of `cifar100/data/<class>/` under `root`, through the image cache.

    Arguments:
        root: as for `load_cifar_fs`.
        cache_dir: where to keep the cache (default: a folder under ~/.cache/gbml_ext/cifar100/,
            one per cifar100 folder, shared by CIFAR-FS and FC100).
        dataset: "cifar-fs" or "fc100", used to word errors.

    Returns: images uint8 (N, 32, 32, 3) and the class name of each image.

    Example:
        >>> images, _ = load_cifar100_class_folders("data/", None, "cifar-fs")  # doctest: +SKIP
        >>> images.shape  # doctest: +SKIP
        (60000, 32, 32, 3)
    """
    cifar_dir = locate_cifar100_folder(root, dataset)
    data_dir = require_path(cifar_dir / "data", "CIFAR-100 image folder", dataset, root)
    image_files = [f"{folder.name}/{png.name}"
                   for folder in sorted(p for p in data_dir.iterdir() if p.is_dir())
                   for png in sorted(folder.glob("*.png"))]
    cache_name = "cifar100-32x32.npz"
    # "cifar100", not the dataset's name: CIFAR-FS and FC100 share the decoded images.
    images = decode_images_cached([data_dir / key for key in image_files], image_files,
                                  (CIFAR_SIZE, CIFAR_SIZE), "RGB",
                                  cache_folder("cifar100", cifar_dir, cache_dir) / cache_name,
                                  dataset, root, old_cache_file=cifar_dir / cache_name)
    return images, [key.split("/", 1)[0] for key in image_files]


def _read_class_list(path: Path, root: str | Path) -> list[str]:
    require_path(path, "CIFAR-FS split file", "cifar-fs", root)
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"CIFAR-FS split file {path} lists no classes",
                           "restore it from the Bertinetto et al. split. "
                           + how_to_get("cifar-fs", root))
    return names
