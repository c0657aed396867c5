"""Launchers: where the runs of a plan execute (local worker processes or Slurm jobs).

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
from typing import Any, Dict, List, Optional, Sequence

from ..runner.errors import RunError, RunFolderError
from ..runner.rundir import holds_run, move_aside
from .local import run_local
from .plan import RunSpec, build_plan, check_plan, refuse_seed_override
from .slurm import SlurmUnavailable, parse_slurm_options, require_slurm, submit_slurm, wait_slurm
from .status import (
    DONE,
    FAILED,
    NOT_STARTED,
    QUEUED,
    RUNNING,
    RunStatus,
    format_status,
    plan_status,
)

__all__ = ["DONE", "FAILED", "LAUNCHERS", "NOT_STARTED", "QUEUED", "RUNNING", "RunSpec",
           "RunStatus", "SlurmUnavailable", "build_plan", "check_plan", "format_status", "launch",
           "parse_slurm_options", "plan_status", "refuse_seed_override"]

LAUNCHERS = ("local", "slurm")


def _check_jobs(jobs: int, runs: int) -> int:
    if jobs < 1:
        raise RunError(f"--jobs {jobs}: give 1 or more worker processes (e.g. --jobs 2).")
    if runs and jobs > runs:
        print(f"gbml_ext: --jobs {jobs} is more than the {runs} run(s) to start; using {runs}.",
              file=sys.stderr)
        return runs
    return jobs


def launch(plan: Sequence[RunSpec], launcher: str = "local", jobs: int = 1,
           threads: Optional[int] = None, slurm: Optional[Dict[str, Any]] = None,
           wait: bool = True, overwrite: bool = False,
           allow_change: Sequence[str] = ()) -> List[RunStatus]:
    """Starts the runs of `plan` that are neither done nor queued nor running; returns every
    run's state afterwards.

    Arguments:
        plan: from `build_plan`.
        launcher: "local" (worker processes here) or "slurm" (one job per run, submitit).
        jobs: local worker processes (1: one run after another, printing to the terminal).
        threads: torch threads per local run; None: 1 when jobs > 1, else the environment's.
        slurm: SlurmExecutor parameters (`parse_slurm_options`).
        wait: Slurm only: return once every submitted job has ended (else right after
            submitting).
        overwrite: move what each run folder holds aside first (never deleted).
        allow_change: keys that may differ from a checkpoint's config.

    Returns:
        one `RunStatus` per run of `plan`, in its order (`format_status` tabulates them).

    Raises:
        RunError: an unknown `launcher`, or `jobs` below 1.
        SlurmUnavailable: "slurm" where submitit or Slurm's sbatch is missing (the message
            says which, and how to install it).
        RunFolderError: `overwrite` while a run of the plan is still running or queued.

    Example:
        >>> plan = build_plan(["experiments/configs/synthetic/linreg_shallow.toml"], [0, 1],
        ...                   out="runs/example")        # doctest: +SKIP
        >>> states = launch(plan, "local", jobs=2)      # doctest: +SKIP
        >>> launch(plan, "slurm", slurm=parse_slurm_options(["partition=gpu"]),
        ...        wait=False)                          # doctest: +SKIP
        >>> launch([], "ssh")
        Traceback (most recent call last):
        ...
        gbml_ext.runner.errors.RunError: --launcher ssh: choose one of local, slurm.
    """
    if launcher not in LAUNCHERS:
        raise RunError(f"--launcher {launcher}: choose one of {', '.join(LAUNCHERS)}.")
    if launcher == "slurm":
        require_slurm()
    states = plan_status(plan, quiet=False)
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
    if launcher == "slurm":
        ids = submit_slurm(todo, slurm or {}, allow_change) if todo else []
        if wait and ids:
            print(f"gbml_ext: waiting for {len(ids)} Slurm job(s) ...", file=sys.stderr,
                  flush=True)
            wait_slurm(ids)
    elif todo:
        jobs = _check_jobs(jobs, len(todo))
        run_local(todo, jobs, threads if threads is not None else (1 if jobs > 1 else None),
                  allow_change)
    return plan_status(plan)
