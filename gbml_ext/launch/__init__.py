"""Launchers: where the runs of a plan execute (local worker processes, Slurm jobs, or any
launcher registered in `LAUNCHERS`).

Every command that runs more than one run (`gbml-compare`, `experiments.curve`,
`experiments.budget`, `experiments.algorithms`) builds a plan (`build_plan`: config,
overrides, seed and run folder of each run, collisions refused first) and hands it to
`launch`. Whatever ran a run, its state and results live in its folder, so
`plan_status` (and `--status`) reads them back, and running the same command again starts
only what is neither done nor queued nor running.

Example:
    >>> plan = build_plan(["a.toml", "b.toml"], [0, 1], out="runs/cmp")  # doctest: +SKIP
    >>> launch(plan, "local", jobs=2)  # doctest: +SKIP
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..registry import UnknownName
from ..runner.errors import RunError, RunFolderError
from ..runner.rundir import WRITABLE_FIX, cannot_write, holds_run, move_aside
from .files import JOB_FILE, LAUNCHER_FILES, LOG_FILE, SLURM_FOLDER, read_job, write_job
from .local import LocalLauncher, run_local
from .options import launcher_arguments
from .plan import RunSpec, build_plan, check_plan, refuse_seed_override
from .registry import (
    CHANGED,
    DONE,
    FAILED,
    LAUNCHERS,
    NOT_STARTED,
    QUEUED,
    RUNNING,
    Launcher,
    LaunchSettings,
    RunStatus,
)
from .slurm import SlurmLauncher, SlurmUnavailable, parse_slurm_options
from .status import finished, format_status, plan_status, rerun_status

__all__ = ["CHANGED", "DONE", "FAILED", "JOB_FILE", "LAUNCHERS", "LAUNCHER_FILES", "LOG_FILE",
           "NOT_STARTED", "QUEUED", "RUNNING", "SLURM_FOLDER", "LaunchSettings", "Launcher",
           "LocalLauncher", "RunSpec", "RunStatus", "SlurmLauncher", "SlurmUnavailable",
           "build_plan", "check_plan", "finished", "format_status", "launch", "launcher_arguments",
           "parse_slurm_options", "plan_status", "read_job", "refuse_seed_override", "rerun_status",
           "run_local", "write_job"]


def _make_folders(plan: Sequence[RunSpec]) -> None:
    """Makes every run folder of `plan` before any run starts: one that cannot be made (a
    file in its path, a folder that cannot be written) is one line naming it."""
    for spec in plan:
        try:
            spec.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            where = spec.run_dir
            blocking = next((p for p in [where, *where.parents] if p.exists()), None)
            if blocking is not None and not blocking.is_dir():
                raise RunFolderError(f"cannot make the run folder {where}: {blocking} is a "
                                     f"file, not a folder. Choose another --out DIR (or "
                                     f"output_dir=...).") from None
            raise cannot_write(Path(error.filename or where), error, WRITABLE_FIX) from None


def launch(plan: Sequence[RunSpec], launcher: str = "local", jobs: int = 1,
           threads: Optional[int] = None, slurm: Optional[Dict[str, Any]] = None,
           wait: bool = True, overwrite: bool = False,
           allow_change: Sequence[str] = ()) -> List[RunStatus]:
    """Starts the runs of `plan` that are neither done nor queued nor running; returns every
    run's state afterwards.

    Arguments:
        plan: from `build_plan`.
        launcher: a name in `LAUNCHERS`: "local" (worker processes here) or "slurm" (one job
            per run, submitit).
        jobs: local worker processes (1: one run after another, printing to the terminal).
        threads: torch threads per local run; None: 1 when jobs > 1, else the environment's.
        slurm: SlurmExecutor parameters (`parse_slurm_options`).
        wait: a detached launcher (Slurm) returns once every submitted job has ended (else
            right after submitting).
        overwrite: move what each run folder holds aside first (never deleted).
        allow_change: keys that may differ from a checkpoint's config.

    Returns:
        one `RunStatus` per run of `plan`, in its order (`format_status` tabulates them).

    Raises:
        RunError: a `launcher` that is not registered (the message lists the choices), or
            `jobs` below 1.
        SlurmUnavailable: "slurm" where submitit or Slurm's sbatch is missing (the message
            says which, and how to install it).
        RunFolderError: `overwrite` while a run of the plan is still running or queued; a run
            folder that cannot be made.

    Example:
        >>> plan = build_plan(["experiments/configs/synthetic/linreg_shallow.toml"], [0, 1],
        ...                   out="runs/example")        # doctest: +SKIP
        >>> states = launch(plan, "local", jobs=2)      # doctest: +SKIP
        >>> launch(plan, "slurm", slurm=parse_slurm_options(["partition=gpu"]),
        ...        wait=False)                          # doctest: +SKIP
        >>> launch([], "ssh")
        Traceback (most recent call last):
        ...
        gbml_ext.runner.errors.RunError: unknown launcher 'ssh'; choose one of local, slurm.
    """
    try:
        entry = LAUNCHERS[launcher]
    except UnknownName as error:
        raise RunError(str(error)) from None
    settings = LaunchSettings(jobs, threads, slurm or {}, wait, allow_change)
    entry.check(settings)
    states = plan_status(plan, quiet=False, allow_change=allow_change)
    if overwrite:
        live = [s.label for s, st in zip(plan, states, strict=True)
                if st.state in (RUNNING, QUEUED)]
        if live:
            raise RunFolderError(f"--overwrite: {live[0]} is still running or queued; wait for "
                                 f"it or cancel it first.")
        for spec in plan:
            if holds_run(spec.run_dir):
                move_aside(spec.run_dir)
        states = plan_status(plan)
    todo = [spec for spec, state in zip(plan, states, strict=True) if not state.settled]
    skipped = len(plan) - len(todo)
    if skipped:
        counts = ", ".join(f"{sum(st.state == s for st in states)} {s}"
                           for s in (DONE, RUNNING, QUEUED) if any(st.state == s for st in states))
        print(f"gbml_ext: {skipped} of {len(plan)} runs need nothing ({counts}); starting "
              f"{len(todo)}.", file=sys.stderr)
    if todo:
        _make_folders(todo)
        entry.start(todo, settings)
    return plan_status(plan, allow_change=allow_change)
