"""The run-folder rule: a run folder belongs to one config, and to one live process.

- A new run goes into an empty (or absent) folder. A folder that holds another run is an error
  that names the choices: `--resume`, `--overwrite` (which moves the old files aside into
  `<folder>.old-<time>`, never deletes them) or another `output_dir`.
- `run.lock` holds the writing process's pid and host. A second live run in the same folder is
  refused; a lock left by a process that no longer exists is detected and replaced.
- On resume only the keys that change the trained numbers must match the checkpoint's config;
  logging, evaluation and paths may change, and `algorithm.inner_lr`, `train.lr` and `device`
  may be changed deliberately with `--allow-change KEY`.
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

from .checkpoint import load_latest_checkpoint
from .errors import RunFolderError

__all__ = ["ALLOWED_CHANGES", "CONFIG_FILE", "IMPLEMENTATION_KEYS", "LOCK_FILE", "RESULTS_FILE",
           "claim_folder",
           "config_differences", "flatten", "holds_run", "keep_previous_results", "move_aside",
           "run_lock", "stored_config", "with_defaults"]

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
LOCK_FILE = "run.lock"

# Keys that change neither a run's numbers (beyond ~1e-6 of float rounding) nor its results:
# where files go, logging, checkpointing, how each step is computed (path, threads, memory
# format, chunks of the meta-batch) and whether training.png is drawn.
IMPLEMENTATION_KEYS = ("output_dir", "data.root", "data.options.cache_dir", "train.log_every",
                       "train.checkpoint_every", "train.checkpoint_minutes", "algorithm.path",
                       "algorithm.batched", "threads", "model.channels_last", "train.plot",
                       "algorithm.tasks_per_chunk", "train.memory_budget_mb")
# Keys that never change the trained numbers: the above, the name, and evaluation settings;
# and the time limit, which like train.iterations only says where training stops.
FREE_KEYS = IMPLEMENTATION_KEYS + (
    "name", "train.eval_every", "train.eval_tasks", "train.explode_factor",
    "algorithm.test_steps", "evaluation.tasks", "evaluation.split", "train.max_minutes")
# Keys a user may change on purpose when resuming (`--allow-change KEY`).
ALLOWED_CHANGES = ("algorithm.inner_lr", "train.lr", "device")


def flatten(data: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and scalars are leaves."""
    flat: Dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def with_defaults(saved: Dict[str, Any]) -> Dict[str, Any]:
    """A stored config with the keys added since it was written filled in with their defaults,
    so that a newer gbml_ext still resumes and reuses older runs."""
    from .config import ConfigError, config_from_dict, config_to_dict

    try:
        return config_to_dict(config_from_dict(copy.deepcopy(saved)))
    except ConfigError:  # a key that no longer exists: compare as stored
        return saved


def config_differences(saved: Dict[str, Any], current: Dict[str, Any],
                       ignore: Sequence[str] = FREE_KEYS) -> List[str]:
    """Sorted flat keys whose values differ between two config dicts, ignoring `ignore` and,
    since a run may be extended, `train.iterations`.

    Example:
        >>> config_differences({"train": {"lr": 1.0, "log_every": 1}},
        ...                    {"train": {"lr": 2.0, "log_every": 5}})
        ['train.lr']
    """
    saved_flat, current_flat = flatten(with_defaults(saved)), flatten(with_defaults(current))
    skip = set(ignore) | {"train.iterations"}
    return sorted(k for k in saved_flat.keys() | current_flat.keys()
                  if k not in skip and saved_flat.get(k) != current_flat.get(k))


def stored_config(run_dir: Path) -> Dict[str, Any] | None:
    path = Path(run_dir) / CONFIG_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def holds_run(run_dir: Path) -> bool:
    """True if the folder has anything in it besides a lock."""
    run_dir = Path(run_dir)
    return run_dir.is_dir() and any(p.name != LOCK_FILE for p in run_dir.iterdir())


def move_aside(run_dir: Path) -> Path:
    """Moves everything in `run_dir` except the lock into `<run_dir>.old-<UTC time>`."""
    run_dir = Path(run_dir)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    aside = run_dir.with_name(f"{run_dir.name}.old-{stamp}")
    suffix = 1
    while aside.exists():
        aside, suffix = aside.with_name(f"{run_dir.name}.old-{stamp}-{suffix}"), suffix + 1
    aside.mkdir(parents=True)
    for entry in run_dir.iterdir():
        if entry.name != LOCK_FILE:
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


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[Path]:
    """Holds `run_dir/run.lock` for the duration; refuses a folder another live process holds."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                owner = json.loads(path.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                owner = {}
            pid, host = owner.get("pid"), owner.get("host")
            if isinstance(pid, int) and (host != me["host"] or _process_alive(pid)):
                raise RunFolderError(
                    f"another run (pid {pid} on {host}, started {owner.get('started')}) is "
                    f"writing {run_dir}. Wait for it, stop it, or choose another output_dir=..."
                ) from None
            print(f"gbml_ext: removing a stale lock in {run_dir} (its process {pid} is gone)",
                  file=sys.stderr)
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as stream:
            json.dump(me, stream)
        break
    else:
        raise RunFolderError(f"could not take the lock {path}; remove it if no run is active.")
    try:
        yield path
    finally:
        try:
            if json.loads(path.read_text()).get("pid") == me["pid"]:
                path.unlink()
        except (OSError, json.JSONDecodeError):
            pass


def keep_previous_results(run_dir: Path) -> None:
    """A resumed finished run re-evaluates: the results it replaces are kept beside it."""
    old = run_dir / RESULTS_FILE
    if old.is_file():
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
        old.rename(run_dir / f"results-{stamp}.json")


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
        finished = (run_dir / RESULTS_FILE).is_file()
        raise RunFolderError(
            f"{run_dir} already holds {'a finished' if finished else 'an unfinished'} run. "
            f"Continue it with --resume, move it aside with --overwrite, or choose another "
            f"output_dir=...")
    return None
