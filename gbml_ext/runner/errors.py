"""The runner's user-facing errors: each message names the problem and the fix.

The command-line tools print these as one or two lines and exit non-zero (`--debug` shows the
traceback); from Python they are ordinary exceptions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from .config import ConfigError

__all__ = ["CheckpointError", "ConfigMismatchError", "DamagedFileError", "DeviceError",
           "MetaLossDiverged", "NonFiniteLossError", "OutOfMemory", "ResultNotSaved", "RunError",
           "RunFolderError", "RunInterrupted", "UnwritableError"]


class RunError(RuntimeError):
    """Base class of the runner's errors that a user can act on."""


class RunFolderError(RunError):
    """The run folder holds another run, or a live run holds its lock."""


class CheckpointError(RunError):
    """A checkpoint cannot be read, or does not belong to the requested run."""


class ConfigMismatchError(CheckpointError, ConfigError):
    """On resume, the checkpoint was written by a config that differs in keys that change the
    trained numbers."""


class DamagedFileError(CheckpointError):
    """A run's JSON file (config.json, results.json) cannot be parsed: the message names the
    file and what to do; `path` is the file."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


class UnwritableError(RunFolderError):
    """A file cannot be written (a read-only folder, no space left, no permission): the message
    names the file and where to write instead; `path` is the file."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


class ResultNotSaved(UnwritableError):
    """A finished evaluation whose file could not be written; `result` holds it, so that the
    caller can still show it."""

    def __init__(self, message: str, path: Path, result: Dict[str, Any]):
        super().__init__(message, path)
        self.result = result


class DeviceError(RunError):
    """The requested device is not available here."""


class NonFiniteLossError(RunError, FloatingPointError):
    """The loss became NaN or infinite, or exploded: the message says what to lower and how to
    continue from the last checkpoint written before it."""


class MetaLossDiverged(NonFiniteLossError):
    """The meta-loss of meta-iteration `iteration` is `loss`: not finite, or above the
    run's `train.explode_factor` times the unadapted loss. `train` words the final message, once
    it has checked whether the inner or the outer loop diverged."""

    def __init__(self, message: str, loss: float, iteration: int):
        super().__init__(message)
        self.loss = loss
        self.iteration = iteration


class OutOfMemory(RunError, MemoryError):
    """The CPU's or the GPU's memory ran out: the message says at which settings, what to lower,
    and which checkpoint is kept."""


class RunInterrupted(RunError):
    """SIGINT or SIGTERM stopped the run after a checkpoint was written."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number
