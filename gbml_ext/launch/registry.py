"""Launchers are an extension point: `LAUNCHERS`, a `Registry` of `Launcher`s by the name
`--launcher` takes ("local", "slurm"), and the run states every launcher reports in.

A launcher says where a plan's runs execute (`start`), whether it can here (`check`), and how
it sees a run it started (`view`, from the record it wrote in the run's `job.json`, with one
query for the whole plan from `poll`). Everything else (what is done, what a re-run would do)
is read from the run folders by `status`, whichever launcher ran a run.

A new launcher (say, over ssh): a `Launcher` subclass whose `start` writes `job.json` with
`"launcher": "<name>"` in each run folder, registered with `LAUNCHERS.register("<name>", ...)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence

from ..registry import Registry
from .plan import RunSpec

__all__ = ["CHANGED", "DONE", "FAILED", "LAUNCHERS", "NOT_STARTED", "QUEUED", "RUNNING",
           "LaunchSettings", "Launcher", "RunStatus"]

DONE, RUNNING, QUEUED, FAILED = "done", "running", "queued", "failed"
NOT_STARTED, CHANGED = "not started", "changed"


@dataclass
class RunStatus:
    """A run's state, as `plan_status` and `launch` report it.

    Attributes:
        state: `DONE`, `RUNNING`, `QUEUED`, `FAILED`, `CHANGED` (it holds results of another
            config: the detail says what a re-run would do) or `NOT_STARTED`.
        detail: the job id or pid, whether a checkpoint is kept, what a re-run does, or a
            failed run's last log lines ("" when there is nothing to add).

    Example:
        >>> RunStatus(RUNNING, "pid 4242").settled, RunStatus(FAILED, "exit 1").settled
        (True, False)
    """

    state: str
    detail: str = ""

    @property
    def settled(self) -> bool:
        """Nothing to start: the run is done, or a live process or job is on it."""
        return self.state in (DONE, RUNNING, QUEUED)


@dataclass
class LaunchSettings:
    """How to launch, as the command line said.

    Attributes:
        jobs: local worker processes (1: one run after another, printing to the terminal).
        threads: torch threads per local run; None: 1 when jobs > 1, else the environment's.
        options: the launcher's own settings (`--slurm KEY=VALUE ...`, parsed).
        wait: a detached launcher (Slurm) returns only once every run has ended.
        allow_change: keys that may differ from a checkpoint's config.

    Example:
        >>> LaunchSettings(jobs=2).threads is None
        True
    """

    jobs: int = 1
    threads: Optional[int] = None
    options: Dict[str, Any] = field(default_factory=dict)
    wait: bool = True
    allow_change: Sequence[str] = ()


class Launcher:
    """Where the runs of a plan execute. Subclasses override `start`, and `check`, `poll` and
    `view` where they have something to say.

    Attributes:
        detached: whether runs outlive the command (Slurm jobs): then `--wait` decides whether
            the command waits for them, and their record is read back with `poll`.

    Example:
        >>> class Echo(Launcher):
        ...     def start(self, plan, settings):
        ...         print([spec.label for spec in plan])
        >>> Echo().start([], LaunchSettings())
        []
    """

    detached = False

    def check(self, settings: LaunchSettings) -> None:
        """Raises a one-line error (naming the fix) if this launcher cannot run here, or not
        with these settings; called before anything starts."""

    def start(self, plan: Sequence[RunSpec], settings: LaunchSettings) -> None:
        """Starts every run of `plan` (none is done, queued or running) and, unless detached
        without `settings.wait`, returns once they have ended."""
        raise NotImplementedError

    def poll(self, records: Sequence[Dict[str, Any]]) -> Any:
        """One query about the runs this launcher started (their `job.json` records), for
        `view`: Slurm asks squeue once for the whole plan. None by default."""
        return None

    def view(self, record: Dict[str, Any], polled: Any) -> Optional[RunStatus]:
        """This launcher's view of a run it started and that is not done: queued, running,
        or failed with its log's last lines; None to leave the run to its folder."""
        return None


LAUNCHERS: Registry[Launcher] = Registry("launcher")
