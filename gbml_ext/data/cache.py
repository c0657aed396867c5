"""Where gbml_ext keeps what it derives from a dataset (decoded images, extracted archives), how
a cache recognises that its source changed, and how the user is told when a cache is written.

Derived files never go into the data folder, which is often shared or read-only. They go to
`cache_dir` when the loader is given one, else to a folder per data source under
`$XDG_CACHE_HOME/gbml_ext/<dataset>/` (`~/.cache/gbml_ext/<dataset>/` when XDG_CACHE_HOME is not
set). The per-source folder is named after the source and a digest of its absolute path, so two
copies of a dataset (say a local and a network one) keep separate caches instead of
overwriting each other's.

A cache remembers the size and modification time (in ns) of the files it was derived from and
is rebuilt as soon as one of them differs.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = ["announce", "cache_folder", "cache_root", "display_path", "file_stamps"]


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/gbml_ext`, or `~/.cache/gbml_ext` when XDG_CACHE_HOME is unset or not
    absolute (the XDG specification says to ignore a relative one).

    Example:
        >>> cache_root().name
        'gbml_ext'
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "gbml_ext"


def cache_folder(dataset: str, source: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The folder for the files derived from `source`; it is not created here.

    Arguments:
        dataset: the cache's dataset folder name, e.g. "omniglot".
        source: the data folder or archive the cache is derived from.
        cache_dir: the user's choice (`data.options.cache_dir`); when given it is used as is.

    Returns: `cache_dir`, or `cache_root() / dataset / "<source name>-<digest>"`.

    Example:
        >>> cache_folder("omniglot", "/data/omniglot", cache_dir="/tmp/c")
        PosixPath('/tmp/c')
        >>> folder = cache_folder("omniglot", "/data/omniglot")
        >>> folder.parent == cache_root() / "omniglot", folder.name.startswith("omniglot-")
        (True, True)
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    source = Path(source).expanduser().resolve()
    digest = hashlib.sha256(str(source).encode()).hexdigest()[:10]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", source.name) or "root"
    return cache_root() / dataset / f"{name}-{digest}"


def file_stamps(paths: Iterable[str | Path]) -> np.ndarray:
    """(N, 2) int64 array of each file's size in bytes and modification time in ns.

    Example:
        >>> file_stamps([]).shape
        (0, 2)
    """
    stats = [os.stat(path) for path in paths]
    return np.array([(s.st_size, s.st_mtime_ns) for s in stats], dtype=np.int64).reshape(-1, 2)


def display_path(path: str | Path) -> str:
    """`path` with the home folder written as `~`, for messages.

    Example:
        >>> display_path(Path.home() / ".cache" / "x")
        '~/.cache/x'
    """
    path, home = Path(path), Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def announce(message: str) -> None:
    """Tell the user on stderr, in one line, what gbml_ext is writing and where.

    Example:
        >>> announce("decoding 4 omniglot images once into /tmp/x.npz")  # doctest: +SKIP
        gbml_ext: decoding 4 omniglot images once into /tmp/x.npz
    """
    print(f"gbml_ext: {message}", file=sys.stderr, flush=True)
