"""mini-ImageNet (Vinyals et al. 2016) with the Ravi & Larochelle (2017) class split, 64/16/20
classes of 600 images, 84x84 RGB.

Two on-disk formats are read:

    (a) learn2learn's pickles  ROOT/mini-imagenet-cache-{train,validation,test}.pkl, each a
        pickled dict {"image_data": uint8 array (N, 84, 84, 3), "class_dict": {wnid: [indices]}}.
    (b) Ravi & Larochelle's CSVs  ROOT/{train,val,test}.csv (header `filename,label`) with the
        JPEGs in ROOT/images/<filename>; images are resized to 84x84 with Lanczos filtering and
        the decoded arrays cached in a `.npz` (in `cache_dir`, else in a folder per root under
        ~/.cache/gbml_ext/mini-imagenet/; never inside ROOT).

Pickles are checked before anything is unpickled: an HTML page saved under the .pkl name (a
typical result of a cloud-drive warning page) and truncated files are reported as such, and the
unpickler only accepts the numpy globals that an array pickle needs.

Citations: O. Vinyals, C. Blundell, T. Lillicrap, K. Kavukcuoglu, D. Wierstra. Matching networks
for one shot learning. NeurIPS 2016. S. Ravi, H. Larochelle. Optimization as a model for few-shot
learning. ICLR 2017.
"""
from __future__ import annotations

import csv
import pickle
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from learn2learn.data import MetaDataset

from .cache import cache_folder
from .datasets import SPLIT_FILE_STEMS, SPLIT_NAMES, class_split_dataset
from .errors import DatasetError, how_to_get, require_path
from .images import decode_images_cached

__all__ = ["MINI_IMAGENET_SIZE", "load_mini_imagenet", "read_learn2learn_pickle"]

MINI_IMAGENET_SIZE = 84

# The only globals a pickled dict of numpy arrays and ints refers to (numpy 1.x and 2.x names).
_ALLOWED_PICKLE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    *((module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
      for name in ("_reconstruct", "scalar")),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


def load_mini_imagenet(root: str | Path, format: str = "auto",
                       cache_dir: str | Path | None = None,
                       splits: Sequence[str] = SPLIT_NAMES) -> dict[str, MetaDataset]:
    """Load mini-ImageNet as one learn2learn `MetaDataset` per split.

    Arguments:
        root: folder with the learn2learn pickles or the Ravi & Larochelle CSVs and images/.
        format: "pickle", "csv", or "auto" (pickle when the split's .pkl exists, else CSV).
        cache_dir: where to cache decoded CSV-format images (default: a folder per root under
            ~/.cache/gbml_ext/mini-imagenet/, or under $XDG_CACHE_HOME/gbml_ext/mini-imagenet/).
        splits: which of "train", "validation", "test" to return.

    Returns: {split: MetaDataset} with items (image (3, 84, 84) float in [0, 1], label);
        `.dataset.class_names` holds the WordNet ids.

    Example:
        >>> data = load_mini_imagenet("data/mini-imagenet")  # doctest: +SKIP
        >>> len(data["train"].labels), data["train"][0][0].shape  # doctest: +SKIP
        (64, torch.Size([3, 84, 84]))
    """
    root = Path(root).expanduser()
    require_path(root, "mini-ImageNet root", "mini-imagenet", root)
    if format not in ("auto", "pickle", "csv"):
        raise ValueError(f"unknown mini-ImageNet format {format!r}; use 'auto', 'pickle' or 'csv'")
    datasets: dict[str, MetaDataset] = {}
    for split in splits:
        pickle_path = root / f"mini-imagenet-cache-{split}.pkl"
        csv_path = root / f"{SPLIT_FILE_STEMS[split]}.csv"
        use_pickle = format == "pickle" or (format == "auto" and pickle_path.exists())
        if use_pickle:
            images, image_classes = _load_pickle_split(pickle_path, root)
        elif format == "csv" or csv_path.exists():
            images, image_classes = _load_csv_split(csv_path, root, cache_dir)
        else:
            raise DatasetError(f"no mini-ImageNet {split} split in {root}: expected {pickle_path} "
                               f"or {csv_path}", how_to_get("mini-imagenet", root))
        class_names = sorted(set(image_classes))
        datasets[split] = class_split_dataset(images, image_classes, class_names, (0,),
                                              "mini-imagenet", root)
    return datasets


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def read_learn2learn_pickle(path: Path, root: str | Path | None = None) -> dict[str, Any]:
    """Read one learn2learn mini-ImageNet pickle after checking that it looks like one.

    Arguments:
        path: the `mini-imagenet-cache-<split>.pkl` file.
        root: the dataset root, used to word errors (default: the file's folder).

    Returns: {"image_data": uint8 (N, 84, 84, 3), "class_dict": {wnid: [indices]}}.

    Example:
        >>> path = Path("mini-imagenet-cache-test.pkl")
        >>> content = read_learn2learn_pickle(path)  # doctest: +SKIP
        >>> content["image_data"].shape  # doctest: +SKIP
        (12000, 84, 84, 3)
    """
    root = path.parent if root is None else root
    fix = how_to_get("mini-imagenet", root)
    require_path(path, "mini-ImageNet pickle", "mini-imagenet", root)
    size = path.stat().st_size
    with open(path, "rb") as stream:
        head = stream.read(512)
        stream.seek(max(size - 1, 0))
        last = stream.read(1)
    opening = head.lstrip().lower()
    if opening.startswith((b"<!doctype", b"<html")) or b"<html" in opening:
        raise DatasetError(
            f"{path} is an HTML page, not a pickle: probably a Google Drive warning page "
            "(\"file too large to scan\") saved instead of the file",
            "delete it and re-download the real file (confirm the download on that page, or use a "
            "tool that handles the confirmation), then check its size (the train pickle holds "
            "38,400 images of 84x84x3, about 0.8 GB). " + fix)
    # Every pickle of protocol 2 or later opens with the PROTO opcode and ends with STOP; checking
    # both catches empty and cut-off downloads without unpickling anything.
    if size == 0 or head[:1] != b"\x80":
        raise DatasetError(f"{path} is not a pickle (it is empty or starts with {head[:16]!r})",
                           "re-download it. " + fix)
    if last != b".":
        raise DatasetError(f"{path} is truncated: the pickle has no end marker ({size} bytes)",
                           "the download or copy was cut off; re-download it. " + fix)
    try:
        with open(path, "rb") as stream, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core alias in numpy 2
            content = _NumpyOnlyUnpickler(stream).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, MemoryError) as error:
        raise DatasetError(f"{path} is truncated or corrupted: unpickling failed ({error})",
                           "re-download it. " + fix) from error
    _check_pickle_content(content, path, fix)
    return content


def _check_pickle_content(content: Any, path: Path, fix: str) -> None:
    if not isinstance(content, dict) or not {"image_data", "class_dict"} <= set(content):
        found = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise DatasetError(f"{path} does not hold learn2learn's mini-ImageNet dict "
                           f"(keys image_data, class_dict); found {found}", fix)
    images = content["image_data"]
    expected = (MINI_IMAGENET_SIZE, MINI_IMAGENET_SIZE, 3)
    is_array = isinstance(images, np.ndarray)
    if not is_array or images.dtype != np.uint8 or images.shape[1:] != expected:
        found = f"{images.dtype} {images.shape}" if is_array else type(images).__name__
        raise DatasetError(f"{path}: image_data should be uint8 (N, 84, 84, 3), found {found}", fix)
    for name, indices in content["class_dict"].items():
        if len(indices) and (min(indices) < 0 or max(indices) >= len(images)):
            raise DatasetError(f"{path}: class {name} points past the {len(images)} images", fix)


def _load_pickle_split(path: Path, root: Path) -> tuple[np.ndarray, list[str]]:
    content = read_learn2learn_pickle(path, root)
    image_classes = [""] * len(content["image_data"])
    for name, indices in content["class_dict"].items():
        for index in indices:
            image_classes[int(index)] = name
    keep = [i for i, name in enumerate(image_classes) if name]
    if len(keep) < len(image_classes):
        return content["image_data"][keep], [image_classes[i] for i in keep]
    return content["image_data"], image_classes


def _load_csv_split(csv_path: Path, root: Path,
                    cache_dir: str | Path | None) -> tuple[np.ndarray, list[str]]:
    require_path(csv_path, "mini-ImageNet split file", "mini-imagenet", root)
    with open(csv_path, newline="") as stream:
        rows = list(csv.reader(stream))
    if not rows or [cell.strip() for cell in rows[0]] != ["filename", "label"]:
        raise DatasetError(f"{csv_path} does not start with the header 'filename,label'",
                           "use the Ravi & Larochelle split CSVs. "
                           + how_to_get("mini-imagenet", root))
    entries = [(row[0].strip(), row[1].strip()) for row in rows[1:] if row]
    image_dir = require_path(root / "images", "mini-ImageNet image folder", "mini-imagenet", root)
    missing = [name for name, _ in entries if not (image_dir / name).is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} images listed in {csv_path} are missing from "
                           f"{image_dir}, e.g. {missing[0]}",
                           "copy or re-extract all JPEGs into images/. "
                           + how_to_get("mini-imagenet", root))
    cache_name = f"mini-imagenet-{csv_path.stem}-84x84.npz"
    size = (MINI_IMAGENET_SIZE, MINI_IMAGENET_SIZE)
    images = decode_images_cached([image_dir / name for name, _ in entries],
                                  [name for name, _ in entries], size, "RGB",
                                  cache_folder("mini-imagenet", root, cache_dir) / cache_name,
                                  "mini-imagenet", root, old_cache_file=root / cache_name)
    return images, [label for _, label in entries]
