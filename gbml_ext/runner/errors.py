"""The runner's user-facing errors: each message names the problem and the fix.

The command-line tools print these as one or two lines and exit non-zero (`--debug` shows the
traceback); from Python they are ordinary exceptions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from .config import ConfigError

__all__ = ["STOPPED_EXIT_CODE", "CheckpointError", "ConfigMismatchError", "DamagedFileError",
           "DeviceError", "MetaLossDiverged", "NonFiniteLossError", "OutOfMemory", "ResultNotSaved",
           "RunError", "RunFolderError", "RunInterrupted", "RunStopped", "UnwritableError"]


class RunError(RuntimeError):
    """Base class of the runner's errors that a user can act on; raised as itself for bad
    launcher settings (`--jobs 0`, an unknown `--launcher`), a comparison run that left no
    results, or Slurm jobs still running after `--wait`. The message names the setting or run
    and what to do."""


class RunFolderError(RunError):
    """A run cannot start in its folder: the folder holds another run (the message offers
    `--resume`, `--overwrite` or another output_dir), a live run holds its lock (it names the
    pid and host), or a plan has two runs that would share a folder or a name, or a `seed=`
    override beside `--seeds` (`gbml_ext.launch.check_plan`)."""


class CheckpointError(RunError):
    """A checkpoint cannot be read, or does not belong to the requested run: raised on resume
    and by `load_run` / `reevaluate` when a folder holds no run or no checkpoint, or when the
    checkpoint does not fit the config's model. The message names the folder or file and says
    to finish or resume the run, or to start over with `--overwrite`."""


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
    """The requested device is not available here: `device = 'cuda'` (or `--device cuda`)
    where torch sees no GPU. The message says to use cpu or auto."""


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
    """SIGINT or SIGTERM stopped the run after a checkpoint was written. The message names the
    signal, the iteration and the folder, and says to continue with the same command and
    `--resume`; `exit_code` is 128 + the signal's number, what the command exits with."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number


STOPPED_EXIT_CODE = 3  # a run its stop file stopped (`RunStopped`), resumable


class RunStopped(RunInterrupted):
    """The run folder's stop file (`stopfile.STOP_FILE`, written by whoever wants the run to
    end, e.g. gbml-tune pruning a trial) stopped the run after a checkpoint was written. The
    message names the iteration, the folder and the reason the file gave; the file is removed,
    so the same command with `--resume` continues the run. `exit_code` is 3."""

    def __init__(self, message: str) -> None:
        RunError.__init__(self, message)
        self.exit_code = STOPPED_EXIT_CODE
