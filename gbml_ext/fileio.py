"""How gbml_ext writes files that something later trusts, and keeps the ones it replaces.

Writes are atomic: a temporary file in the target's folder is written, flushed to disk and
renamed over the target (`os.replace` is atomic on POSIX). An interruption mid-write therefore
leaves either the old file or the new one, never a truncated one that a later run would read as
valid. What a new result replaces is moved to a name stamped with the UTC time
(`timestamped_path`, `move_files_aside`), never deleted.
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import IO, Any, Callable, Optional, Sequence

__all__ = ["atomic_write", "atomic_write_json", "atomic_write_text", "move_files_aside",
           "timestamped_path"]


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Calls `write(stream)` on a temporary binary file, then renames it to `path`.

    Arguments:
        path: the target; its folder is created if needed.
        write: fills the open binary stream (for example `lambda f: torch.save(obj, f)`).

    Raises:
        OSError: the file cannot be written; `filename` is `path` (not the temporary file).

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "hello.txt"
        >>> atomic_write(target, lambda f: f.write(b"hi")).read_bytes()
        b'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:
        if error.errno is not None and error.filename in (None, str(temporary), temporary):
            # Name the file the caller asked for, not the temporary one beside it (a write
            # that fails as the bytes are flushed, as on a full disk, names no file at all).
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    finally:
        temporary.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Writes `text` (UTF-8) to `path` atomically."""
    return atomic_write(path, lambda stream: stream.write(text.encode()))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """Writes `data` as indented JSON to `path` atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def timestamped_path(folder: Path, prefix: str, suffix: str = "") -> Path:
    """`folder/<prefix><UTC time><suffix>`, with `-1`, `-2`, ... after the time while that
    name exists, so that nothing already there is replaced.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> first = timestamped_path(folder, "results-", ".json")
        >>> _ = first.write_text("{}")
        >>> second = timestamped_path(folder, "results-", ".json")
        >>> second != first and second.name.startswith(first.stem + "-")
        True
    """
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    path, n = Path(folder) / f"{prefix}{stamp}{suffix}", 1
    while path.exists():
        path, n = Path(folder) / f"{prefix}{stamp}-{n}{suffix}", n + 1
    return path


def move_files_aside(folder: Path, names: Sequence[str], label: str) -> Optional[Path]:
    """Moves those of `names` that exist in `folder` into a new `folder/<label>.old-<UTC time>/`
    and returns it; None when none exists.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "table.md").write_text("old")
        >>> aside = move_files_aside(folder, ["table.md", "figure.png"], "table")
        >>> [p.name for p in aside.iterdir()], (folder / "table.md").exists()
        (['table.md'], False)
    """
    present = [Path(folder) / name for name in names if (Path(folder) / name).exists()]
    if not present:
        return None
    aside = timestamped_path(folder, f"{label}.old-")
    aside.mkdir()
    for path in present:
        path.rename(aside / path.name)
    return aside
