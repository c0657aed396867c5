"""The run-folder rule: a run folder belongs to one config, and to one live process.

- A new run goes into an empty (or absent) folder. A folder that holds another run is an error
  that names the choices: `--resume`, `--overwrite` (which moves the old files aside into
  `<folder>.old-<time>`, never deletes them) or another `output_dir`.
- `run.lock` holds the writing process's pid and host. A second live run in the same folder is
  refused; a lock left by a process that no longer exists is detected and replaced.
- On resume only the keys that change the trained numbers must match the checkpoint's config
  (which keys those are, and how a stored config is read by a newer version, is
  `gbml_ext.runner.compat`'s to say).
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from ..fileio import timestamped_path
from .checkpoint import CHECKPOINT, PREVIOUS_CHECKPOINT, load_latest_checkpoint
from .compat import upgrade_stored
from .errors import ConfigMismatchError, DamagedFileError, RunFolderError, UnwritableError

__all__ = ["CONFIG_FILE", "LOCK_FILE", "METRICS_FILE", "RESULTS_FILE", "RUN_FILES",
           "WRITABLE_FIX", "cannot_write", "claim_folder", "folder_in_use",
           "holds_run", "keep_in_folder", "keep_previous_results", "move_aside", "read_history",
           "read_json", "read_results", "refuse_shortening", "run_lock", "stored_config"]

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = "run.lock"
# The names that belong to the folder, not to one attempt of its run: never moved aside, and
# no sign of a run. The lock, and what a launcher adds (`keep_in_folder`).
_KEPT = {LOCK_FILE}
# The files that make a folder a run folder (anything else in it is the user's).
RUN_FILES = (CONFIG_FILE, RESULTS_FILE, METRICS_FILE, CHECKPOINT, PREVIOUS_CHECKPOINT)

def read_json(path: Path, fix: str) -> Dict[str, Any]:
    """The JSON object in `path`; a file that does not parse (truncated, edited by hand) is a
    `DamagedFileError` that names it and ends with `fix`.

    Example:
        >>> import tempfile
        >>> bad = Path(tempfile.mkdtemp()) / "results.json"
        >>> _ = bad.write_text('{"name": ')
        >>> try:
        ...     read_json(bad, "Delete it.")
        ... except DamagedFileError as error:
        ...     print(str(error).split(" is ")[1].split(" (")[0], "/", error.path.name)
        damaged / results.json
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DamagedFileError(f"{path} is damaged (not JSON: {error}). {fix}", path) from None
    if not isinstance(data, dict):
        raise DamagedFileError(f"{path} is damaged (not a JSON object). {fix}", path)
    return data


def stored_config(run_dir: Path) -> Dict[str, Any] | None:
    """The config a run folder's config.json holds, or None without one.

    Raises:
        DamagedFileError: config.json does not parse.
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return None
    return upgrade_stored(read_json(
        path, "The run's checkpoint holds its config too: `gbml-train CONFIG --resume` with the "
              "run's config writes config.json again."))


def read_results(run_dir: Path) -> Dict[str, Any] | None:
    """A run folder's results.json, or None if the run has not finished.

    Raises:
        DamagedFileError: results.json does not parse.
    """
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        return None
    return read_json(path, "Resume the run (`--resume`) to evaluate it again and write a new "
                           "one; the damaged file is kept beside it.")


def read_history(run_dir: str | Path) -> List[Dict[str, Any]]:
    """The records of a run folder's metrics.jsonl ([] if it has none). Lines that do not
    parse (a line cut off by a crash) are left out."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            if line.strip():
                records.append(json.loads(line))
    return records


def cannot_write(path: Path, error: OSError, fix: str) -> UnwritableError:
    """The error for a file or folder that cannot be written: names it, the reason, and `fix`.

    Example:
        >>> import errno
        >>> str(cannot_write(Path("/ro/run"), OSError(errno.EROFS, "Read-only file system"),
        ...                  "Choose another output_dir=..."))
        'cannot write /ro/run (Read-only file system). Choose another output_dir=...'
    """
    return UnwritableError(f"cannot write {path} ({error.strerror or error}). {fix}", path)


def keep_in_folder(*names: str) -> None:
    """Declares `names` as files that belong to a run folder rather than to one attempt of its
    run, as a launcher's record of the run and its log do: `move_aside` leaves them where they
    are, and `holds_run` does not count them. The package that writes them declares them
    (`gbml_ext.launch.files`); the runner knows no launcher.

    Arguments:
        names: file or folder names inside a run folder.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "launch.log").write_text("a launcher's log")
        >>> keep_in_folder("launch.log")
        >>> holds_run(folder)
        False
    """
    _KEPT.update(names)


def holds_run(run_dir: Path) -> bool:
    """True if the folder has anything in it besides a lock and what `keep_in_folder` names."""
    run_dir = Path(run_dir)
    return run_dir.is_dir() and any(p.name not in _KEPT for p in run_dir.iterdir())


def move_aside(run_dir: Path) -> Path:
    """Moves everything in `run_dir` except the lock and what `keep_in_folder` names into
    `<run_dir>.old-<UTC time>`."""
    run_dir = Path(run_dir)
    aside = timestamped_path(run_dir.parent, f"{run_dir.name}.old-")
    aside.mkdir(parents=True)
    for entry in run_dir.iterdir():
        if entry.name not in _KEPT:
            entry.rename(aside / entry.name)
    print(f"gbml_ext: moved the previous contents of {run_dir} aside to {aside}", file=sys.stderr)
    return aside


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


WRITABLE_FIX = ("Choose a writable folder with output_dir=... (gbml-compare: --out DIR); "
                "`gbml-eval RUN_DIR` evaluates a run stored read-only and prints the result.")


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[Path]:
    """Holds `run_dir/run.lock` for the duration; refuses a folder another live process holds.

    The folders it creates for the run are removed again on the way out if the run left
    nothing in them (a run that failed to start leaves no empty folder behind). A folder that
    cannot be written (read-only, no permission) is an `UnwritableError`."""
    run_dir = Path(run_dir)
    created = [folder for folder in (run_dir, *run_dir.parents) if not folder.exists()]
    path = run_dir / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            _take_lock(path, me)
        except OSError as error:
            raise cannot_write(Path(error.filename or path), error, WRITABLE_FIX) from None
        try:
            yield path
        finally:
            try:
                if json.loads(path.read_text()).get("pid") == me["pid"]:
                    path.unlink()
            except (OSError, json.JSONDecodeError):
                pass
    finally:
        for folder in created:  # deepest first; stops at the first that is not empty
            try:
                folder.rmdir()
            except OSError:
                break


def _take_lock(path: Path, me: Dict[str, Any]) -> None:
    """Creates the lock file `path` holding `me`; replaces a lock whose process is gone."""
    run_dir = path.parent
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                owner = json.loads(path.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                owner = {}
            pid, host = owner.get("pid"), owner.get("host")
            since = f", started {owner['started']}" if owner.get("started") else ""
            if isinstance(pid, int) and host != me["host"]:
                raise RunFolderError(
                    f"another run (pid {pid} on host {host}{since}) holds {path}, and a process "
                    f"of another host cannot be checked from here. Wait for it, or remove the "
                    f"lock if no run is active there, or choose another output_dir=...") from None
            if isinstance(pid, int) and _process_alive(pid):
                raise RunFolderError(
                    f"another run (pid {pid}{since}) is writing {run_dir}. Wait for it, stop "
                    f"it, or choose another output_dir=...") from None
            why = (f"its process {pid} is gone" if isinstance(pid, int)
                   else "it names no process: damaged")
            print(f"gbml_ext: removing a stale lock in {run_dir} ({why})", file=sys.stderr)
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as stream:
            json.dump(me, stream)
        return
    raise RunFolderError(f"could not take the lock {path}; remove it if no run is active.")


def keep_previous_results(run_dir: Path) -> None:
    """A resumed finished run re-evaluates: the results it replaces are kept beside it."""
    old = run_dir / RESULTS_FILE
    if old.is_file():
        old.rename(timestamped_path(run_dir, "results-", ".json"))


def claim_folder(run_dir: Path, resume: bool, overwrite: bool,
                 is_main: bool = True) -> Optional[Dict[str, Any]]:
    """Applies the folder rule for a run about to start in `run_dir`; returns the checkpoint
    to resume from, or None for a fresh start. Only the main process (`is_main`) moves
    folders or refuses them."""
    if overwrite and is_main and holds_run(run_dir):
        move_aside(run_dir)
    if resume:
        found = load_latest_checkpoint(run_dir)
        if found is not None:
            return found[0]
        if is_main:
            print(f"gbml_ext: nothing to resume in {run_dir} (no checkpoint); starting fresh.",
                  file=sys.stderr)
            if holds_run(run_dir):
                move_aside(run_dir)
        return None
    if is_main and holds_run(run_dir):
        raise RunFolderError(folder_in_use(run_dir))
    return None


def refuse_shortening(checkpoint: Optional[Dict[str, Any]], iterations: int,
                      run_dir: Path) -> None:
    """Refuses to resume a checkpoint written after more meta-iterations than `iterations`:
    the run's record would claim fewer iterations than were trained.

    Raises:
        ConfigMismatchError: naming both counts and the choices.
    """
    done = None if checkpoint is None else checkpoint.get("iteration")
    if isinstance(done, int) and done > iterations:
        raise ConfigMismatchError(
            f"train.iterations={iterations} is fewer than the {done} meta-iterations the "
            f"checkpoint in {run_dir} has done; a run cannot be shortened. Resume with "
            f"train.iterations={done} or more, or start over with --overwrite.")


def folder_in_use(run_dir: Path, elsewhere: str = "output_dir=...") -> str:
    """Why a new run cannot start in `run_dir`, which holds something, and the choices
    (`elsewhere`: how to choose another folder)."""
    names = sorted(p.name for p in Path(run_dir).iterdir() if p.name not in _KEPT)
    if not set(names) & set(RUN_FILES):
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return (f"{run_dir} is not empty ({shown}) and holds no run. Choose a new folder with "
                f"{elsewhere}, or move its contents aside with --overwrite.")
    elsewhere += "" if elsewhere.endswith(".") else "."
    finished = RESULTS_FILE in names
    return (f"{run_dir} already holds {'a finished' if finished else 'an unfinished'} run. "
            f"Continue it with --resume, move it aside with --overwrite, or choose another "
            f"{elsewhere}")
