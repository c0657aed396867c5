"""The one way gbml_ext writes a file that something later trusts: atomically.

A temporary file in the target's folder is written, flushed to disk and renamed over the target
(`os.replace` is atomic on POSIX). An interruption mid-write therefore leaves either the old
file or the new one, never a truncated one that a later run would read as valid.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any, Callable

__all__ = ["atomic_write", "atomic_write_json", "atomic_write_text"]


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
        if error.errno is not None and error.filename in (str(temporary), temporary):
            # Name the file the caller asked for, not the temporary one beside it.
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
