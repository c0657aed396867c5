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

import json
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from ..fileio import atomic_write_json
from .cache import announce, display_path, exclusive, file_stamps
from .errors import DatasetError

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
    if not _is_tar(archive):  # before announcing an extraction that cannot start
        raise _damaged(archive, ValueError("not a tar archive"))
    try:
        destination.mkdir(parents=True, exist_ok=True)
        lock_file = open(destination / ".extract.lock", "a")
    except OSError as error:
        raise _unwritable(archive, destination, error) from error
    with lock_file, exclusive(lock_file):
        if target.is_dir() and _read_stamp(marker) == (size, mtime_ns):
            return target  # another process extracted it while this one waited
        _extract(archive, expected_top, destination, dataset, stamp)
    return target


def _unwritable(archive: Path, destination: Path, error: OSError) -> DatasetError:
    return DatasetError(f"cannot extract {archive} into {destination}: {error}",
                        "set data.options.cache_dir (cache_dir= in Python) to a writable "
                        f"folder, or extract by hand: tar xzf {archive} -C <folder> and give "
                        "that folder as data.root.")


def _damaged(archive: Path, error: BaseException) -> DatasetError:
    """The archive cannot be read: the fix is another copy of it, not a new layout."""
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return DatasetError(f"cannot read archive {archive}: {reason}",
                        f"the archive is truncated or damaged (or not a .tar.gz); fetch "
                        f"{archive.name} again (or give the extracted folder as data.root).")


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
                               f"pack the {dataset} folder itself: tar czf {archive.name} "
                               f"{expected_top}, or give the extracted folder as data.root.")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging / expected_top, target)
        atomic_write_json(marker, stamp)
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise _damaged(archive, error) from error
    except OSError as error:
        if error.errno is not None:  # the cache folder, not the archive
            raise _unwritable(archive, destination, error) from error
        raise _damaged(archive, error) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _is_tar(archive: Path) -> bool:
    """Whether `archive` opens as a (compressed) tar archive: reads its first block only."""
    try:
        with tarfile.open(archive, "r:*"):
            return True
    except (tarfile.TarError, EOFError, OSError, zlib.error):
        return False


def _read_stamp(marker: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) recorded in `marker`, or None if it is missing or unreadable."""
    try:
        content = json.loads(marker.read_text())
        return int(content["size"]), int(content["mtime_ns"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
