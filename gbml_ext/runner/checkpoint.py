"""Checkpoints that make a resumed run identical to an uninterrupted one.

Besides weights and optimizer state, a checkpoint stores every random state that drives the
run (Python's, NumPy's, torch's, CUDA's, and each task source's own generator) and the history,
so on the CPU a resumed run is bit-identical to one that was never stopped.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

__all__ = ["save_checkpoint", "load_checkpoint", "capture_rng_state", "restore_rng_state"]


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


def save_checkpoint(path: Path, payload: Dict[str, Any]) -> None:
    """Writes atomically (temp file + rename): an interruption mid-write never leaves a
    truncated checkpoint behind the last good one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({**payload, "rng": capture_rng_state()}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> Optional[Dict[str, Any]]:
    """Returns the checkpoint's payload and restores the global random states, or None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a damaged file must say so, not fail deep inside torch
        raise RuntimeError(f"checkpoint {path} cannot be read ({error}); delete it to start "
                           f"the run over, or restore it from a backup.") from error
    restore_rng_state(payload.pop("rng"))
    return payload
