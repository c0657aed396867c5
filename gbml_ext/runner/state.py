"""What a run is made of, and what a checkpoint restores: the learner, its optimizer, the task
sources and the progress so far (`TrainingState`), built fresh from a config (`build_run`) or
restored from a checkpoint (`restore_state`)."""
from __future__ import annotations

import contextlib
import random
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from ..fast import unsupported_reason
from .build import build_learner, build_optimizer, build_sources
from .checkpoint import restore_rng_state
from .compat import ALLOWED_CHANGES, config_differences, flatten, upgrade_stored
from .config import Config, config_to_dict
from .errors import CheckpointError, ConfigMismatchError, DeviceError

__all__ = ["TrainingState", "build_run", "cpu_threads", "resolve_device", "restore_state",
           "seed_everything"]


@dataclass
class TrainingState:
    """Everything a checkpoint restores: the learner, its optimizer, the task sources and the
    progress so far."""

    algorithm: torch.nn.Module
    optimizer: torch.optim.Optimizer
    sources: Dict[str, Any]
    iteration: int = 0
    history: List[Dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    iteration_seconds: List[float] = field(default_factory=list)
    reference_loss: Optional[float] = None
    changes: List[Dict[str, Any]] = field(default_factory=list)
    last_checkpoint: int = 0

    def checkpoint_payload(self, config: Config) -> Dict[str, Any]:
        return {"algorithm": self.algorithm.state_dict(), "optimizer": self.optimizer.state_dict(),
                "sources": {k: s.state_dict() for k, s in self.sources.items()
                            if hasattr(s, "state_dict")},
                "iteration": self.iteration, "history": self.history,
                "train_seconds": self.train_seconds, "iteration_seconds": self.iteration_seconds,
                "reference_loss": self.reference_loss, "changes": self.changes,
                "config": config_to_dict(config)}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device = 'cuda' but torch sees no GPU here; use device=cpu or auto.")
    return torch.device(name)


@contextlib.contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """Runs the block with torch's intra-op thread count set to `threads` (0: unchanged), and
    puts the previous count back afterwards, so runs in one process do not leak it."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads:
            torch.set_num_threads(previous)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_run(config: Config, device: torch.device, rank: int = 0) -> TrainingState:
    """Model, learner, optimizer and task sources for `config`, seeded as a fresh run.

    With `algorithm.path = "auto"`, a learner that has no batched form (`gbml_ext.fast.form`)
    runs per task, and the main process says why on stderr."""
    seed_everything(config.seed)
    algorithm = build_learner(config).to(device)
    if rank == 0 and config.algorithm.path == "auto" and not config.algorithm.batched:
        reason = unsupported_reason(algorithm)
        if reason is not None:
            print(f"gbml_ext: {config.algorithm.name} runs per task: {reason}", file=sys.stderr)
    optimizer = build_optimizer(config, algorithm)
    sources = build_sources(config.data, config.seed, rank=rank, device=device)
    return TrainingState(algorithm, optimizer, sources)


def restore_state(state: TrainingState, checkpoint: Dict[str, Any], config: Config,
             allow_change: Sequence[str]) -> None:
    """Loads a checkpoint into `state`, after checking it belongs to this config."""
    saved = upgrade_stored(checkpoint["config"])
    current = config_to_dict(config)
    differ = config_differences(saved, current)
    refused = [k for k in differ if k not in allow_change]
    old, new = flatten(saved), flatten(current)
    if refused:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in refused)
        hint = [k for k in refused if k in ALLOWED_CHANGES]
        raise ConfigMismatchError(
            f"the checkpoint in {config.run_dir()} was written by a different config ({details}). "
            + (f"To change it on purpose, add --allow-change {' '.join(hint)}. " if hint else "")
            + ("Otherwise resume" if hint else "Resume")
            + " with the same settings, or start over with --overwrite.")
    try:
        state.algorithm.load_state_dict(checkpoint["algorithm"])
        state.optimizer.load_state_dict(checkpoint["optimizer"])
    except (RuntimeError, KeyError, ValueError) as error:
        raise CheckpointError(f"the checkpoint in {config.run_dir()} does not fit this model "
                              f"({error}). Start over with --overwrite.") from error
    for name, source_state in checkpoint["sources"].items():
        state.sources[name].load_state_dict(source_state)
    for group in state.optimizer.param_groups:  # a deliberate train.lr change takes effect
        group["lr"] = config.train.lr
    state.iteration = state.last_checkpoint = checkpoint["iteration"]
    state.history = checkpoint["history"]
    state.train_seconds = checkpoint["train_seconds"]
    state.iteration_seconds = checkpoint["iteration_seconds"]
    state.reference_loss = checkpoint.get("reference_loss")
    state.changes = list(checkpoint.get("changes", [])) + [
        {"iteration": state.iteration, "key": k, "from": old.get(k), "to": new.get(k)}
        for k in differ]
    restore_rng_state(checkpoint["rng"])
