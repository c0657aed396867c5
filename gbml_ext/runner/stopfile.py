"""The run folder's stop file: a file named `STOP_FILE` that asks a run to checkpoint and stop at
the end of its meta-iteration, as SIGTERM does (`gbml-tune` stops a pruned trial so). The loop
agrees it across processes like a signal (`loop._agree_stop`)."""
from __future__ import annotations

from pathlib import Path

from .errors import RunStopped

__all__ = ["STOP_FILE", "stop_asked", "stopped_by_file"]

# A file in a run folder that asks the run to checkpoint and stop at the end of its current
# meta-iteration, as SIGTERM does; its first line is the reason (gbml-tune prunes a trial so).
STOP_FILE = "stop"


def stop_asked(run_dir: Path) -> bool:
    """Whether the run folder holds a `STOP_FILE` (rank 0 looks; the loop agrees it with the
    other processes, as it does a signal)."""
    return (Path(run_dir) / STOP_FILE).exists()


def stopped_by_file(run_dir: Path, done: int, iterations: int) -> RunStopped:
    """The error of a run that its `STOP_FILE` stopped at iteration `done`, once its checkpoint
    is written: the message gives the file's reason; the file is removed, so that `--resume`
    continues the run.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / STOP_FILE).write_text("pruned by the tuner")
        >>> stop_asked(folder)
        True
        >>> error = stopped_by_file(folder, 7, 10)
        >>> "(pruned by the tuner); stopped at iteration 7 of 10" in str(error), error.exit_code
        (True, 3)
        >>> stop_asked(folder)
        False
    """
    path = Path(run_dir) / STOP_FILE
    try:
        reason = (path.read_text(errors="replace").strip().splitlines() or [""])[0]
    except OSError:
        reason = ""
    path.unlink(missing_ok=True)
    return RunStopped(f"{path} asked the run to stop{f' ({reason})' if reason else ''}; "
                      f"stopped at iteration {done} of {iterations} with a checkpoint in "
                      f"{run_dir}. Continue with the same command and --resume.")
