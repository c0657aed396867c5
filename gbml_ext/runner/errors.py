"""The runner's user-facing errors: each message names the problem and the fix.

The command-line tools print these as one or two lines and exit non-zero (`--debug` shows the
traceback); from Python they are ordinary exceptions.
"""
from __future__ import annotations

from .config import ConfigError

__all__ = ["CheckpointError", "ConfigMismatchError", "DeviceError", "NonFiniteLossError",
           "RunError", "RunFolderError", "RunInterrupted"]


class RunError(RuntimeError):
    """Base class of the runner's errors that a user can act on."""


class RunFolderError(RunError):
    """The run folder holds another run, or a live run holds its lock."""


class CheckpointError(RunError):
    """A checkpoint cannot be read, or does not belong to the requested run."""


class ConfigMismatchError(CheckpointError, ConfigError):
    """On resume, the checkpoint was written by a config that differs in keys that change the
    trained numbers."""


class DeviceError(RunError):
    """The requested device is not available here."""


class NonFiniteLossError(RunError, FloatingPointError):
    """The loss became NaN or infinite, or exploded: the message says what to lower and how to
    continue from the last checkpoint written before it."""


class RunInterrupted(RunError):
    """SIGINT or SIGTERM stopped the run after a checkpoint was written."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number
