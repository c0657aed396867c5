"""Checkpoints that make a resumed run identical to an uninterrupted one.

Besides weights and optimizer state, a checkpoint stores every random state that drives the
run (Python's, NumPy's, torch's, CUDA's, and each task source's own generator) and the history,
so on the CPU a resumed run is bit-identical to one that was never stopped.

The two newest checkpoints are kept (`checkpoint.pt` and `checkpoint.prev.pt`): if the newest
cannot be read, loading falls back to the previous one and says so. Loading never touches the
global random state; the runner restores it explicitly (`restore_rng_state`) when it resumes.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from ..fileio import atomic_write
from .errors import CheckpointError

__all__ = ["CHECKPOINT", "PREVIOUS_CHECKPOINT", "capture_rng_state",
           "load_latest_checkpoint", "restore_rng_state", "save_checkpoint"]

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"


def capture_rng_state() -> Dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
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


def _read(path: Path) -> Dict[str, Any]:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or "iteration" not in payload:
        raise ValueError("not a gbml_ext checkpoint")
    return payload


def load_latest_checkpoint(run_dir: Path) -> Optional[Tuple[Dict[str, Any], Path]]:
    """Returns (payload, path) of the newest readable checkpoint in `run_dir`, or None if there
    is none. A damaged newest checkpoint falls back to the previous one, with a message."""
    run_dir = Path(run_dir)
    problems = []
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        path = run_dir / name
        if not path.is_file():
            continue
        try:
            payload = _read(path)
        except Exception as error:  # a damaged file must say so, not fail deep inside torch
            problems.append(f"{path} cannot be read ({type(error).__name__}: {error})")
            continue
        if problems:
            print(f"gbml_ext: {problems[0]}; falling back to {path} "
                  f"(iteration {payload['iteration']}).", file=sys.stderr)
        return payload, path
    if problems:
        raise CheckpointError("; ".join(problems) + ". Start the run over with --overwrite "
                              "(the old folder is kept aside).")
    return None
