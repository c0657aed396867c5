"""Decoding image files into one uint8 array, kept in a `.npz` cache so that later loads skip
the decoding.

The cache file stores the pixels, the key (relative name) of every image, and the size and
modification time of the files the pixels were derived from: the images themselves, or the
archive they were extracted from. It is reused only when all of these still match, so adding,
removing, renaming, editing or touching a source file rebuilds it. Writing a cache is announced
on stderr (one line, with the path) and decoding shows a progress bar on a terminal. Processes
that miss the same cache at once decode it once: the others wait for its lock, then read it.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..fileio import atomic_write
from .cache import announce, display_path, file_stamps, held_lock
from .errors import DatasetError, how_to_get

__all__ = ["decode_images_cached"]


def decode_images_cached(files: Sequence[Path], keys: Sequence[str], size: tuple[int, int],
                         mode: str, cache_file: Path | None, dataset: str, root: str | Path, *,
                         stamped_by: Sequence[Path] | None = None,
                         old_cache_file: Path | None = None) -> np.ndarray:
    """Decode and resize image files to one uint8 array, reusing a `.npz` cache when it matches.

    A cache that cannot be written (read-only folder, full disk) only costs a warning.

    Arguments:
        files: image paths to decode.
        keys: one stable identifier per file (its path relative to the dataset root).
        size: (width, height) to resize to.
        mode: PIL mode, "L" for grey (gives (N, H, W)) or "RGB" (gives (N, H, W, 3)).
        cache_file: where to keep the `.npz`, or None for no cache.
        dataset, root: used to word messages and errors.
        stamped_by: the files whose size and modification time key the cache (default: `files`;
            for images extracted from an archive, the archive).
        old_cache_file: where an older gbml_ext kept this cache (inside the data folder); when
            it exists, a rebuild says that nothing reads it any more.

    Example:
        >>> decode_images_cached([], [], (28, 28), "L", None, "omniglot", "/data").shape
        (0, 28, 28)
    """
    if cache_file is None:
        return _decode_all(files, size, mode, dataset, root)
    key_array = np.asarray(list(keys), dtype=str)
    try:
        stamps = file_stamps(files if stamped_by is None else stamped_by)
    except OSError as error:
        raise DatasetError(f"cannot read {dataset} image file: {error}",
                           "check that the files are readable. " + how_to_get(dataset, root)
                           ) from error
    cached = _read_cache(cache_file, key_array, stamps) if cache_file.exists() else None
    if cached is not None:
        return cached
    with contextlib.ExitStack() as stack:
        # An unwritable cache folder gets no lock; writing the cache below warns about it.
        with contextlib.suppress(OSError):
            stack.enter_context(held_lock(cache_file.parent / f".{cache_file.name}.lock"))
        stale = cache_file.exists()
        if stale and (cached := _read_cache(cache_file, key_array, stamps)) is not None:
            return cached  # another process wrote it while this one waited for the lock
        _announce(cache_file, len(files), dataset, stale, old_cache_file)
        images = _decode_all(files, size, mode, dataset, root)
        try:
            atomic_write(cache_file, lambda stream: np.savez(
                stream, images=images, keys=key_array, stamps=stamps))
        except OSError as error:
            warnings.warn(f"could not write image cache {cache_file} ({error}); the next load "
                          "decodes the images again. Set data.options.cache_dir (cache_dir= in "
                          "Python) to a writable folder to keep the cache.", stacklevel=2)
    return images


def _announce(cache_file: Path, count: int, dataset: str, stale: bool,
              old_cache_file: Path | None) -> None:
    """Say on stderr which cache is being written and why (one line, two with an old cache)."""
    where = display_path(cache_file)
    if stale:
        announce(f"{where} no longer matches the {dataset} source files (changed, added or "
                 f"removed); decoding {count:,} images again (later loads read it)")
    else:
        announce(f"decoding {count:,} {dataset} images once into {where} (later loads read it)")
    if old_cache_file is not None and old_cache_file.is_file():
        announce(f"{old_cache_file} was written by an older gbml_ext and is no longer read; "
                 "you can delete it")


def _read_cache(cache_file: Path, keys: np.ndarray, stamps: np.ndarray) -> np.ndarray | None:
    """The cached pixels if the cache holds exactly `keys` derived from `stamps`, else None."""
    try:
        with np.load(cache_file, allow_pickle=False) as cached:
            if np.array_equal(cached["keys"], keys) and np.array_equal(cached["stamps"], stamps):
                return cached["images"]
    except (OSError, ValueError, KeyError, EOFError):
        pass  # an unreadable or older-format cache is rebuilt
    return None


def _decode_all(files: Sequence[Path], size: tuple[int, int], mode: str, dataset: str,
                root: str | Path) -> np.ndarray:
    """Decode `files` into an (N, H, W[, C]) uint8 array, with a progress bar on a terminal."""
    channels = () if mode == "L" else (len(mode),)
    images = np.empty((len(files), size[1], size[0], *channels), dtype=np.uint8)
    bar = tqdm(files, desc=f"decoding {dataset}", unit="img", leave=False, disable=None)
    for i, path in enumerate(bar):
        images[i] = _decode_image(Path(path), size, mode, dataset, root)
    return images


def _decode_image(path: Path, size: tuple[int, int], mode: str, dataset: str,
                  root: str | Path) -> np.ndarray:
    """One image converted to `mode` and resized to `size` (width, height) as uint8."""
    try:
        with Image.open(path) as original:
            image = original.convert(mode)
            if image.size != size:
                # Lanczos (PIL's former ANTIALIAS) is what MAML and Ravi & Larochelle resized with.
                image = image.resize(size, resample=Image.Resampling.LANCZOS)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot decode image {path}: {error}",
                           "the file is damaged; re-extract or re-download it. "
                           + how_to_get(dataset, root)) from error
