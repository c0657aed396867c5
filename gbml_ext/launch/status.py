"""What each run of a plan is doing, read from its folder (and, for Slurm, the live queue).

The truth lives on disk, so a second terminal, a crash or a requeue always finds it:
- `results.json` whose config equals the plan's (and whose iterations are all done): done;
- `job.json`, written by the launcher: which launcher started the run, its job id or pid,
  its log, and (local runs) the exit code once it ended;
- `run.lock`: a run process that is alive right now.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from ..fileio import atomic_write_json
from ..runner.compat import IMPLEMENTATION_KEYS, config_differences, flatten
from ..runner.config import config_to_dict
from ..runner.errors import DamagedFileError
from ..runner.rundir import LAUNCHER_FILES, LOCK_FILE, read_results
from .plan import RunSpec

__all__ = ["DONE", "FAILED", "JOB_FILE", "LIVE_STATES", "LOG_FILE", "NOT_STARTED", "QUEUED",
           "RUNNING", "RunStatus", "SLURM_FOLDER", "finished", "format_status", "plan_status",
           "read_job", "write_job"]

JOB_FILE, LOG_FILE, SLURM_FOLDER = LAUNCHER_FILES
DONE, RUNNING, QUEUED, FAILED, NOT_STARTED = "done", "running", "queued", "failed", "not started"
# squeue's states of a job that has not ended.
_SLURM_QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                 "RESIZING", "SUSPENDED"}
_SLURM_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
LIVE_STATES = _SLURM_QUEUED | _SLURM_RUNNING


@dataclass
class RunStatus:
    """A run's state, as `plan_status` and `launch` report it.

    Attributes:
        state: `DONE`, `RUNNING`, `QUEUED`, `FAILED` or `NOT_STARTED` ("done", "running",
            "queued", "failed", "not started").
        detail: the job id or pid, whether a checkpoint is kept, or a failed run's last log
            lines ("" when there is nothing to add).

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


def write_job(run_dir: Path, record: Dict[str, Any]) -> None:
    """Writes the launcher's record of a run (`job.json`) atomically."""
    atomic_write_json(Path(run_dir) / JOB_FILE, record)


def read_job(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The launcher's record of a run, or None if there is none (or it is unreadable)."""
    try:
        record = json.loads((Path(run_dir) / JOB_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def finished(spec: RunSpec, quiet: bool = False) -> bool:
    """True if the run's results.json is for the planned config (paths, logging and
    checkpointing aside) with all its iterations done. A damaged results.json says so."""
    try:
        results = read_results(spec.run_dir)
    except DamagedFileError as error:
        if not quiet:
            print(f"gbml_ext: {error.path} is damaged; resuming {spec.label} from its "
                  f"checkpoint to write it again (the damaged file is kept beside it).",
                  file=sys.stderr)
        return False
    if results is None or not isinstance(results.get("config"), dict):
        return False
    saved = results["config"]
    same = not config_differences(saved, config_to_dict(spec.config), ignore=IMPLEMENTATION_KEYS)
    return same and flatten(saved).get("train.iterations") == spec.config.train.iterations


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


def slurm_states(job_ids: Iterable[str]) -> Dict[str, str]:
    """{job id: squeue state} for the jobs still known to Slurm (one squeue call)."""
    ids = sorted({str(i) for i in job_ids})
    if not ids or shutil.which("squeue") is None:
        return {}
    try:
        out = subprocess.run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i %T"],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def log_tail(path: Optional[str], lines: int = 3) -> str:
    """The last non-empty lines of a log file, joined by ' | ' (empty if unreadable)."""
    if not path:
        return ""
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text if line.strip())[-400:] if len(
        text) <= lines else " | ".join(line.strip() for line in text[-lines:] if line.strip())


def _checkpoint_detail(run_dir: Path) -> str:
    return "checkpoint kept; resumes from it" if (run_dir / "checkpoint.pt").exists() else ""


def run_status(spec: RunSpec, queue: Dict[str, str], quiet: bool = True) -> RunStatus:
    """The state of one run, from its folder and `queue` (`slurm_states` of the plan's jobs);
    `quiet=False` says so when its results.json is damaged."""
    run_dir = spec.run_dir
    if finished(spec, quiet=quiet):
        return RunStatus(DONE)
    pid = _alive_here(run_dir)
    job = read_job(run_dir) or {}
    if job.get("launcher") == "slurm":
        state = queue.get(str(job.get("job_id")))
        if state in _SLURM_QUEUED:
            return RunStatus(QUEUED, f"job {job['job_id']}")
        if state in _SLURM_RUNNING:
            return RunStatus(RUNNING, f"job {job['job_id']}")
        tail = log_tail(job.get("log"))
        return RunStatus(FAILED, f"job {job.get('job_id')} ended without results"
                         + (f": {tail}" if tail else ""))
    if pid is not None:
        return RunStatus(RUNNING, f"pid {pid}")
    if job.get("launcher") == "local" and job.get("exit_code") not in (None, 0):
        tail = log_tail(job.get("log"))
        return RunStatus(FAILED, f"exit {job['exit_code']}" + (f": {tail}" if tail else ""))
    if run_dir.is_dir() and any(run_dir.iterdir()):
        return RunStatus(FAILED, "stopped before the end; " + (_checkpoint_detail(run_dir)
                                                               or "no checkpoint"))
    return RunStatus(NOT_STARTED)


def plan_status(plan: Sequence[RunSpec], quiet: bool = True) -> List[RunStatus]:
    """Every run's state, with one squeue call for the whole plan (none without Slurm jobs).

    Reads each run's folder (results.json, job.json, run.lock) and writes nothing.

    Arguments:
        plan: the runs (`build_plan`).
        quiet: do not say so on stderr when a run's results.json is damaged.

    Returns:
        one `RunStatus` per run, in the plan's order.

    Example:
        >>> import tempfile
        >>> from gbml_ext.runner import Config
        >>> config = Config(name="a", output_dir=tempfile.mkdtemp() + "/a/seed0")
        >>> plan_status([RunSpec("a.toml", 0, config)])
        [RunStatus(state='not started', detail='')]
    """
    jobs = [str(job["job_id"]) for job in (read_job(spec.run_dir) for spec in plan)
            if job and job.get("launcher") == "slurm" and job.get("job_id")]
    queue = slurm_states(jobs)
    return [run_status(spec, queue, quiet) for spec in plan]


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
