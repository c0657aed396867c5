"""What each run of a plan is doing, read from its folder (and from its launcher, for runs a
detached launcher such as Slurm still holds).

The truth lives on disk, so a second terminal, a crash or a requeue always finds it:
- `results.json` whose config equals the plan's (and whose iterations are all done): done; of
  another config: changed, with what a re-run would do (extend it, evaluate it again, or
  refuse, and why);
- `job.json`, written by the launcher: which launcher started the run, its job id or pid,
  its log, and (local runs) the exit code once it ended;
- `run.lock`: a run process that is alive right now.
"""
from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..runner.compat import (
    ALLOWED_CHANGES,
    IMPLEMENTATION_KEYS,
    config_differences,
    flatten,
    with_defaults,
)
from ..runner.config import config_to_dict
from ..runner.errors import DamagedFileError
from ..runner.rundir import LOCK_FILE, holds_run, read_results, stored_config
from .files import read_job
from .plan import RunSpec
from .registry import CHANGED, DONE, FAILED, LAUNCHERS, NOT_STARTED, QUEUED, RUNNING, RunStatus

__all__ = ["finished", "format_status", "live_local_run", "plan_status", "rerun_status",
           "run_status"]


def _results(spec: RunSpec, quiet: bool) -> Optional[Dict[str, Any]]:
    try:
        results = read_results(spec.run_dir)
    except DamagedFileError as error:
        if not quiet:
            print(f"gbml_ext: {error.path} is damaged; resuming {spec.label} from its "
                  f"checkpoint to write it again (the damaged file is kept beside it).",
                  file=sys.stderr)
        return None
    return results if results is not None and isinstance(results.get("config"), dict) else None


def _same(saved: Dict[str, Any], spec: RunSpec) -> bool:
    same = not config_differences(saved, config_to_dict(spec.config), ignore=IMPLEMENTATION_KEYS)
    return same and flatten(saved).get("train.iterations") == spec.config.train.iterations


def finished(spec: RunSpec, quiet: bool = False) -> bool:
    """True if the run's results.json is for the planned config (paths, logging and
    checkpointing aside) with all its iterations done. A damaged results.json says so."""
    results = _results(spec, quiet)
    return results is not None and _same(results["config"], spec)


def _changes(keys: Sequence[str], old: Dict[str, Any], new: Dict[str, Any]) -> str:
    return ", ".join(f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in keys)


def rerun_status(spec: RunSpec, allow_change: Sequence[str] = (),
                 results: Optional[Dict[str, Any]] = None) -> Optional[RunStatus]:
    """What running the plan again would do with a run whose folder holds another config's
    run: `CHANGED`, saying whether a re-run extends it, evaluates it again, or refuses (and
    why, with the fix); None when the folder holds no run of another config.

    Arguments:
        spec: the planned run.
        allow_change: the keys `--allow-change` would let differ from the checkpoint's config.
        results: the folder's results.json (read here when None); without one, the folder's
            config.json says which config trained the checkpoint.

    Example:
        >>> import tempfile
        >>> from gbml_ext.runner import Config
        >>> spec = RunSpec("a.toml", 0, Config(name="a", output_dir=tempfile.mkdtemp()))
        >>> saved = config_to_dict(Config(name="a", output_dir=str(spec.run_dir)))
        >>> saved["train"]["lr"] = 0.5
        >>> print(rerun_status(spec, results={"config": saved, "iterations_done": 100}).detail)
        ... # doctest: +NORMALIZE_WHITESPACE
        finished with train.lr 0.5 -> 0.001; a re-run refuses to change it: add --allow-change
        train.lr to change it on purpose, or start over with --overwrite (or another folder)
    """
    found = _rerun(spec, allow_change, _results(spec, True) if results is None else results)
    return None if found is None else found[1]


def _rerun(spec: RunSpec, allow_change: Sequence[str],
           results: Optional[Dict[str, Any]]) -> Optional[Tuple[bool, RunStatus]]:
    """`rerun_status`, and whether the re-run refuses."""
    try:
        saved = results["config"] if results is not None else stored_config(spec.run_dir)
    except DamagedFileError:
        return None
    if saved is None:
        return None
    current = config_to_dict(spec.config)
    old, new = flatten(with_defaults(saved)), flatten(current)
    differ = config_differences(saved, current)
    refused = [key for key in differ if key not in allow_change]
    ran = "finished" if results is not None else "its checkpoint was trained"
    if refused:
        hint = [key for key in refused if key in ALLOWED_CHANGES]
        fix = (f"add --allow-change {' '.join(hint)} to change it on purpose, or start over"
               if hint else "start over")
        return True, RunStatus(CHANGED, f"{ran} with {_changes(refused, old, new)}; a re-run "
                                        f"refuses to change it: {fix} with --overwrite (or "
                                        f"another folder)")
    if results is None or _same(saved, spec):
        return None
    done, target = results.get("iterations_done"), spec.config.train.iterations
    if isinstance(done, int) and done > target:
        return True, RunStatus(CHANGED, f"finished {done} meta-iterations; a re-run refuses "
                                        f"train.iterations={target}, a run cannot be "
                                        f"shortened: give train.iterations={done} or more, or "
                                        f"start over with --overwrite")
    if old.get("train.iterations") != target:
        return False, RunStatus(CHANGED, f"finished {old.get('train.iterations')} "
                                         f"meta-iterations; a re-run extends it to {target}")
    other = config_differences(saved, current, ignore=IMPLEMENTATION_KEYS)
    return False, RunStatus(CHANGED, f"finished with {_changes(other, old, new)}; a re-run "
                                     f"evaluates it again with the new values")


def _alive_here(run_dir: Path) -> Optional[int]:
    """The pid holding the run's lock, if that process is alive on this host."""
    try:
        owner = json.loads((run_dir / LOCK_FILE).read_text() or "{}")
    except (OSError, ValueError):
        return None
    pid = owner.get("pid") if isinstance(owner, dict) else None
    if not isinstance(pid, int) or owner.get("host") != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def live_local_run(run_dir: Path) -> Optional[int]:
    """The pid of the worker process that job.json names for `run_dir` on this host, while it
    is alive and has not ended, also while it is still starting (importing torch, before it
    takes its run.lock), so that no command starts the run a second time. Read from job.json
    and /proc (None where /proc is not there).

    Example:
        >>> import tempfile
        >>> live_local_run(Path(tempfile.mkdtemp())) is None
        True
    """
    job = read_job(run_dir) or {}
    pid = job.get("pid")
    if ("exit_code" in job or not isinstance(pid, int)
            or job.get("host") != socket.gethostname()):
        return None
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if str(run_dir).encode() in command else None


def _checkpoint_detail(run_dir: Path) -> str:
    return "checkpoint kept; resumes from it" if (run_dir / "checkpoint.pt").exists() else ""


def run_status(spec: RunSpec, polled: Dict[str, Any], quiet: bool = True,
               allow_change: Sequence[str] = ()) -> RunStatus:
    """The state of one run, from its folder and its launcher (`polled`: each launcher's
    `poll` of the plan's records, by name); `quiet=False` says so when its results.json is
    damaged; `allow_change` as a re-run would be given it."""
    run_dir = spec.run_dir
    results = _results(spec, quiet)
    if results is not None and _same(results["config"], spec):
        return RunStatus(DONE)
    job = read_job(run_dir) or {}
    name = str(job.get("launcher"))
    view = LAUNCHERS[name].view(job, polled.get(name)) if name in LAUNCHERS else None
    if view is not None and view.state in (QUEUED, RUNNING):
        return view
    pid = _alive_here(run_dir) or live_local_run(run_dir)
    if pid is not None:
        return RunStatus(RUNNING, f"pid {pid}")
    rerun = _rerun(spec, allow_change, results)
    if rerun is not None and (view is None or rerun[0]):
        return rerun[1]
    if view is not None:
        return view
    if run_dir.is_dir() and holds_run(run_dir):
        return RunStatus(FAILED, "stopped before the end; " + (_checkpoint_detail(run_dir)
                                                               or "no checkpoint"))
    return RunStatus(NOT_STARTED)


def plan_status(plan: Sequence[RunSpec], quiet: bool = True,
                allow_change: Sequence[str] = ()) -> List[RunStatus]:
    """Every run's state, with one query per launcher for the whole plan (one squeue call
    for Slurm jobs, none without them).

    Reads each run's folder (results.json, config.json, job.json, run.lock) and writes
    nothing.

    Arguments:
        plan: the runs (`build_plan`).
        quiet: do not say so on stderr when a run's results.json is damaged.
        allow_change: the keys a re-run may change (what a `changed` run's detail assumes).

    Returns:
        one `RunStatus` per run, in the plan's order.

    Example:
        >>> import tempfile
        >>> from gbml_ext.runner import Config
        >>> config = Config(name="a", output_dir=tempfile.mkdtemp() + "/a/seed0")
        >>> plan_status([RunSpec("a.toml", 0, config)])
        [RunStatus(state='not started', detail='')]
    """
    records: Dict[str, List[Dict[str, Any]]] = {}
    for job in (read_job(spec.run_dir) for spec in plan):
        if job and isinstance(job.get("launcher"), str):
            records.setdefault(job["launcher"], []).append(job)
    polled = {name: LAUNCHERS[name].poll(jobs) for name, jobs in records.items()
              if name in LAUNCHERS}
    return [run_status(spec, polled, quiet, allow_change) for spec in plan]


def format_status(plan: Sequence[RunSpec], states: Sequence[RunStatus]) -> str:
    """A table of the plan's runs, their state and detail, and a count per state.

    Arguments:
        plan: the runs, labelled `name seed N`.
        states: their states, in the same order (`plan_status`).

    Example:
        >>> from gbml_ext.runner import Config
        >>> plan = [RunSpec("a.toml", seed, Config(name="a", seed=seed)) for seed in (0, 1)]
        >>> print(format_status(plan, [RunStatus(DONE), RunStatus(RUNNING, "pid 4242")]))
        run       state        detail
        a seed 0  done
        a seed 1  running      pid 4242
        1 done, 1 running
    """
    width = max([len(spec.label) for spec in plan] + [3])
    lines = [f"{'run'.ljust(width)}  {'state'.ljust(11)}  detail"]
    for spec, status in zip(plan, states, strict=True):
        lines.append(f"{spec.label.ljust(width)}  {status.state.ljust(11)}  {status.detail}"
                     .rstrip())
    counts: Dict[str, int] = {}
    for status in states:
        counts[status.state] = counts.get(status.state, 0) + 1
    lines.append(", ".join(f"{n} {state}" for state, n in counts.items()))
    return "\n".join(lines)
