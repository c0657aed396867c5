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

Several processes may build the same cache at once (a sweep's first runs): the builder holds an
exclusive lock (`held_lock`), and a process that waited for it looks at the cache again, so the
work is done once and nobody replaces a cache under its readers.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

__all__ = ["announce", "cache_folder", "cache_root", "display_path", "exclusive", "file_stamps",
           "held_lock"]


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


@contextlib.contextmanager
def exclusive(handle: IO[str]) -> Iterator[None]:
    """Holds an exclusive advisory lock on an open file (no lock where fcntl does not exist)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield
        return
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def held_lock(lock_file: Path) -> Iterator[None]:
    """Holds an exclusive lock on `lock_file` (created, with its folder, if missing) while the
    block runs; other processes asking for it wait. Raises OSError when it cannot be created.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder, held_lock(Path(folder) / ".lock"):
        ...     pass
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle, exclusive(handle):
        yield
