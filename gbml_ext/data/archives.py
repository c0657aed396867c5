"""Extracting a dataset archive (.tar.gz) once into a cache folder.

The extraction is trusted only while the archive keeps the size and modification time it had
when it was extracted: a marker file, written last, records both. A replaced or updated archive
is therefore extracted again, and an interrupted extraction (no marker) is redone.

Several processes may load the same dataset at once (a sweep run in shards): the extraction
holds an exclusive lock on `destination/.extract.lock`, and a process that waited for it checks
the marker again, so it uses the tree the other one finished instead of replacing it under its
readers.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Iterator

from ..fileio import atomic_write_json
from .cache import announce, display_path, file_stamps
from .errors import DatasetError, how_to_get

__all__ = ["extract_archive_once"]


def extract_archive_once(archive: Path, expected_top: str, destination: Path, dataset: str) -> Path:
    """Extract a .tar.gz into `destination` unless an extraction of this same archive (same size
    and modification time) completed there; announce on stderr when it extracts.

    Arguments:
        archive: the .tar.gz file.
        expected_top: the folder the archive must contain at its top (e.g. "omniglot-py").
        destination: folder to extract into; `destination / expected_top` is returned.
        dataset: used to word errors.

    Example:
        >>> archive, cache = Path("omniglot-py.tar.gz"), Path(".cache")
        >>> extract_archive_once(archive, "omniglot-py", cache, "omniglot")  # doctest: +SKIP
        PosixPath('.cache/omniglot-py')
    """
    target = destination / expected_top
    marker = destination / f".{archive.name}.extracted"
    size, mtime_ns = (int(value) for value in file_stamps([archive])[0])
    stamp = {"archive": str(archive.resolve()), "size": size, "mtime_ns": mtime_ns}
    if target.is_dir() and _read_stamp(marker) == (size, mtime_ns):
        return target
    try:
        destination.mkdir(parents=True, exist_ok=True)
        lock_file = open(destination / ".extract.lock", "a")
    except OSError as error:
        raise _unwritable(archive, destination, error) from error
    with lock_file, _exclusive(lock_file):
        if target.is_dir() and _read_stamp(marker) == (size, mtime_ns):
            return target  # another process extracted it while this one waited
        _extract(archive, expected_top, destination, dataset, stamp)
    return target


def _unwritable(archive: Path, destination: Path, error: OSError) -> DatasetError:
    return DatasetError(f"cannot extract {archive} into {destination}: {error}",
                        "pass cache_dir= pointing at a writable folder, or extract by hand: "
                        f"tar xzf {archive} -C <folder> and pass that folder as root.")


@contextlib.contextmanager
def _exclusive(handle: IO[str]) -> Iterator[None]:
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


def _extract(archive: Path, expected_top: str, destination: Path, dataset: str,
             stamp: dict) -> None:
    """Extracts into a staging folder, then moves it into place and writes the marker last."""
    target = destination / expected_top
    marker = destination / f".{archive.name}.extracted"
    try:
        # Gone before the tree changes, so that no interruption leaves a marker over a tree
        # that does not match it.
        marker.unlink(missing_ok=True)
        staging = Path(tempfile.mkdtemp(dir=destination, prefix=".extracting-"))
    except OSError as error:
        raise _unwritable(archive, destination, error) from error
    announce(f"extracting {archive.name} once into {display_path(target)} "
             "(later loads reuse it)")
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(staging, filter="data")
        if not (staging / expected_top).is_dir():
            raise DatasetError(f"{archive} has no top-level folder {expected_top}/",
                               how_to_get(dataset, destination))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging / expected_top, target)
        atomic_write_json(marker, stamp)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DatasetError(f"cannot read archive {archive}: {error}",
                           "the archive is truncated or damaged; fetch it again. "
                           + how_to_get(dataset, destination)) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read_stamp(marker: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) recorded in `marker`, or None if it is missing or unreadable."""
    try:
        content = json.loads(marker.read_text())
        return int(content["size"]), int(content["mtime_ns"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
