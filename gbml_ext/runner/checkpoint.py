"""Checkpoints that make a resumed run identical to an uninterrupted one, and that never run
code when read.

Besides weights and optimizer state, a checkpoint stores every random state that drives the
run (Python's, NumPy's, torch's, CUDA's, and each task source's own generator) and the history,
so on the CPU a resumed run is bit-identical to one that was never stopped.

Everything in it is a tensor, a number, a string, None, or a list, tuple or dict of those, so
it is read with `torch.load(weights_only=True)`: a file that holds anything else (a pickled
object whose loading would call a function, as a checkpoint someone else wrote may) is refused
with `UnsafeCheckpoint`, unless the caller trusts it (`trust_checkpoints`, gbml-train and
gbml-eval's `--trust-checkpoint`, `load_run(..., trust=True)`). Checkpoints written before
NumPy's random state was stored as a tensor hold it as a NumPy array: exactly the NumPy types
that array needs are allowed.

The two newest checkpoints are kept (`checkpoint.pt` and `checkpoint.prev.pt`): if the newest
cannot be read, loading falls back to the previous one and says so (never past one refused as
unsafe). Loading never touches the global random state; the runner restores it explicitly
(`restore_rng_state`) when it resumes.
"""
from __future__ import annotations

import contextlib
import pickle
import random
import sys
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from ..fileio import atomic_write
from .errors import CheckpointError

__all__ = ["CHECKPOINT", "PREVIOUS_CHECKPOINT", "TRUST_FIX", "UnsafeCheckpoint",
           "capture_rng_state", "load_latest_checkpoint", "read_checkpoint",
           "restore_rng_state", "save_checkpoint", "trust_checkpoints"]

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"
# How a user says they trust a checkpoint that plain loading refuses.
TRUST_FIX = ("If you trust whoever wrote it, add --trust-checkpoint (in Python: trust=True, or "
             "`with trust_checkpoints():` around train).")

_reconstruct = np.zeros(0).__reduce__()[0]  # NumPy's array constructor, in any version
# What a NumPy random state pickled as an array needs (checkpoints of earlier versions), under
# both of the names NumPy has pickled its array constructor by.
_NUMPY_ARRAY: List[Any] = [(_reconstruct, "numpy._core.multiarray._reconstruct"),
                           (_reconstruct, "numpy.core.multiarray._reconstruct"),
                           np.ndarray, np.dtype, type(np.dtype(np.uint32))]
_ALLOWED_NAMES = {"numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct",
                  "numpy.ndarray", "numpy.dtype", "numpy.dtypes.UInt32DType"}
_TRUSTED: ContextVar[bool] = ContextVar("gbml_ext_trusted_checkpoints", default=False)


class UnsafeCheckpoint(CheckpointError):
    """A checkpoint holds pickled objects whose loading would run code (a file someone else
    wrote, or changed): it is not loaded unless trusted. The message names the file, what it
    would call, and the flag that trusts it (`TRUST_FIX`)."""


@contextlib.contextmanager
def trust_checkpoints(trust: bool = True) -> Iterator[None]:
    """Within the block, checkpoints are read with full unpickling, which runs whatever code a
    file holds: use it only for files from someone you trust (`UnsafeCheckpoint` says when a
    file needs it). `train(..., resume=True)` reads its checkpoint under this setting.

    Arguments:
        trust: whether to trust them (False: back to the safe reading, e.g. for one block).

    Example:
        >>> from gbml_ext.runner import train
        >>> with trust_checkpoints():  # doctest: +SKIP
        ...     train("cfg.toml", resume=True)
    """
    token = _TRUSTED.set(trust)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def capture_rng_state() -> Dict[str, Any]:
    """Python's, NumPy's, torch's (and CUDA's) global random states, in the forms a
    `weights_only` load reads: NumPy's key is an int64 tensor."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {**numpy_state["state"],
                            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))}
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Sets the global random states `capture_rng_state` returned (or, for a checkpoint of an
    earlier version, NumPy's as its legacy tuple)."""
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):
        key = numpy_state["state"]["key"]
        numpy_state = {**numpy_state, "state": {
            **numpy_state["state"], "key": np.asarray(key.numpy() if torch.is_tensor(key) else key,
                                                      dtype=np.uint32)}}
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, payload: Dict[str, Any]) -> Path:
    """Writes `payload` plus the global random states as the newest checkpoint, atomically; the
    one it replaces becomes `checkpoint.prev.pt`."""
    run_dir = Path(run_dir)
    newest = run_dir / CHECKPOINT
    if newest.is_file():
        newest.replace(run_dir / PREVIOUS_CHECKPOINT)
    state = {**payload, "rng": capture_rng_state()}
    return atomic_write(newest, lambda stream: torch.save(state, stream))


def _unsafe_globals(path: Path) -> List[str]:
    """The functions and classes the pickle in `path` names beyond what a checkpoint needs
    ([] if it names none, or is not a file torch.save wrote)."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip checkpoint: damaged, reported as such
        return []
    return [name for name in names if name not in _ALLOWED_NAMES]


def _short(error: Exception) -> str:
    """One line of a load error: torch's weights-only refusal is many lines."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:200]


def read_checkpoint(path: Path, trust: Optional[bool] = None) -> Dict[str, Any]:
    """The payload of the checkpoint at `path`, read without running code from it.

    Arguments:
        path: a checkpoint file.
        trust: load it with full unpickling (None: as `trust_checkpoints` says, default False).

    Returns:
        The payload dict (weights, optimizer state, "iteration", "history", "rng", ...).

    Raises:
        UnsafeCheckpoint: the file holds objects whose loading would run code.
        ValueError, pickle.UnpicklingError, OSError, ...: a damaged or foreign file.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / CHECKPOINT
        >>> torch.save({"iteration": 3, "rng": capture_rng_state()}, path)
        >>> read_checkpoint(path)["iteration"]
        3
    """
    path = Path(path)
    if _TRUSTED.get() if trust is None else trust:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    else:
        try:
            with torch.serialization.safe_globals(_NUMPY_ARRAY):
                payload = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            unsafe = _unsafe_globals(path)
            if unsafe:
                raise UnsafeCheckpoint(
                    f"{path} was not loaded: it holds objects that would run code when read "
                    f"({', '.join(unsafe[:3])}). {TRUST_FIX}") from None
            raise pickle.UnpicklingError(_short(error)) from None
    if not isinstance(payload, dict) or "iteration" not in payload:
        raise ValueError("not a gbml_ext checkpoint")
    return payload


def load_latest_checkpoint(run_dir: Path, trust: Optional[bool] = None
                           ) -> Optional[Tuple[Dict[str, Any], Path]]:
    """Returns (payload, path) of the newest readable checkpoint in `run_dir`, or None if there
    is none. A damaged newest checkpoint falls back to the previous one, with a message; one
    refused as unsafe is an error (`UnsafeCheckpoint`). `trust`: as in `read_checkpoint`."""
    run_dir = Path(run_dir)
    problems = []
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        path = run_dir / name
        if not path.is_file():
            continue
        try:
            payload = read_checkpoint(path, trust)
        except UnsafeCheckpoint:
            raise
        except Exception as error:  # a damaged file must say so, not fail deep inside torch
            problems.append(f"{path} cannot be read ({type(error).__name__}: {_short(error)})")
            continue
        if problems:
            print(f"gbml_ext: {problems[0]}; falling back to {path} "
                  f"(iteration {payload['iteration']}).", file=sys.stderr)
        return payload, path
    if problems:
        raise CheckpointError("; ".join(problems) + ". Start the run over with --overwrite "
                              "(the old folder is kept aside).")
    return None
