"""The local launcher: a plan's runs in up to N worker processes on this machine.

Each run is `python -m gbml_ext.launch.worker CONFIG OVERRIDES --resume` (gbml-train, with
the launcher's files kept in its folder) in a process of its own (one torch thread each unless
told otherwise), so a run's peak memory is its own and a crash takes only that run down. With
`jobs=1` a run prints to the terminal as `gbml-train` does; with more, each run writes
`launch.log` in its folder and this process prints one line when a run starts or ends.

A run another process holds (a second command on the same folders) is left to it: this
launcher waits for it and reports it done, not failed. Ctrl-C (or SIGTERM) is passed to every
running run, which checkpoints at the end of its meta-iteration and stops; the error then says
which runs checkpointed and which stopped before writing anything, and running the same command
again resumes them.
"""
from __future__ import annotations

import datetime
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Dict, List, Optional, Sequence

from ..runner.errors import STOPPED_EXIT_CODE, RunError, RunInterrupted
from .files import LOG_FILE, log_tail, read_job, write_job
from .plan import RunSpec
from .registry import DONE, FAILED, LAUNCHERS, RUNNING, Launcher, LaunchSettings, RunStatus
from .status import run_status

__all__ = ["RESUME_HINT", "LocalLauncher", "LocalRun", "run_local", "worker_command"]

# How a stopped launch ends its message (gbml-tune puts its own in its place).
RESUME_HINT = "run the same command again with --resume to continue."


def worker_command(spec: RunSpec, allow_change: Sequence[str] = ()) -> List[str]:
    """The command line of the process that runs `spec` (always with --resume: a launcher
    never trains a folder's run twice).

    Example:
        >>> from gbml_ext.runner import Config
        >>> worker_command(RunSpec("a.toml", 0, Config(), ["seed=0"]))[1:]
        ['-m', 'gbml_ext.launch.worker', 'a.toml', 'seed=0', '--no-progress', '--resume']
    """
    command = [sys.executable, "-m", "gbml_ext.launch.worker", spec.config_path, *spec.args,
               "--no-progress", "--resume"]
    return command + (["--allow-change", *allow_change] if allow_change else [])



def _ended(code: int) -> str:
    """How a worker's exit code reads in the progress line."""
    if code == 0:
        return "done"
    if code == STOPPED_EXIT_CODE:
        return f"stopped by its stop file (exit {code}; resumable)"
    return f"failed (exit {code})"

@dataclass
class LocalRun:
    """A run started by `run_local`: its spec, process and log (None: the terminal)."""

    spec: RunSpec
    process: subprocess.Popen
    log: Optional[IO[str]]
    started: float
    wall: float = field(default_factory=time.time)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _start(spec: RunSpec, allow_change: Sequence[str], threads: Optional[int],
           to_log: bool) -> LocalRun:
    run_dir = spec.run_dir
    env = dict(os.environ)
    if threads:  # the runner's `threads = 0` leaves torch at this
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log = open(run_dir / LOG_FILE, "a") if to_log else None
    # Its own process group: a Ctrl-C at the terminal reaches this process only, which passes
    # it on once, so that every run checkpoints instead of dying mid-write.
    process = subprocess.Popen(worker_command(spec, allow_change), env=env, stdout=log,
                               stderr=subprocess.STDOUT if log else None,
                               start_new_session=True)
    write_job(run_dir, {"launcher": "local", "pid": process.pid, "host": socket.gethostname(),
                        "started": _now(), "log": str(run_dir / LOG_FILE) if log else None})
    return LocalRun(spec, process, log, time.perf_counter())


def _finish(run: LocalRun, code: int) -> None:
    if run.log is not None:
        run.log.close()
    record = read_job(run.spec.run_dir) or {}
    if record.get("pid") == run.process.pid:  # not a record another command wrote since
        record.update(exit_code=code, ended=_now())
        write_job(run.spec.run_dir, record)


def _stop_all(running: Dict[int, LocalRun]) -> None:
    """Passes SIGINT to every run and waits while each writes its checkpoint; a second Ctrl-C
    stops them at once."""
    if running:
        print(f"gbml_ext: stopping {len(running)} run(s); each writes its checkpoint first ...",
              file=sys.stderr, flush=True)
    for run in running.values():
        run.process.send_signal(signal.SIGINT)
    try:
        for run in running.values():
            _finish(run, run.process.wait())
    except KeyboardInterrupt:
        for run in running.values():
            run.process.send_signal(signal.SIGINT)  # the runner's second signal: stop now
        for run in running.values():
            _finish(run, run.process.wait())


def _stopped(runs: Sequence[LocalRun], waiting: int, not_started: int) -> str:
    """What a Ctrl-C left behind, run by run, read from their folders."""
    counts = {"finished": 0, "checkpointed and stopped": 0,
              "stopped before their first checkpoint (nothing to resume; they start over)": 0,
              "stopped before writing a new checkpoint (they resume from their last one)": 0}
    keys = list(counts)
    for run in runs:
        checkpoint = run.spec.run_dir / "checkpoint.pt"
        if run.process.returncode == 0:
            counts[keys[0]] += 1
        elif checkpoint.is_file() and checkpoint.stat().st_mtime >= run.wall:
            counts[keys[1]] += 1
        else:
            counts[keys[3] if checkpoint.is_file() else keys[2]] += 1
    parts = [f"{n} run(s) {what}" for what, n in counts.items() if n]
    parts += [f"{waiting} run(s) left to the other process that holds them"] if waiting else []
    return (f"{'; '.join(parts) or 'no run had started'} ({not_started} not started); "
            f"{RESUME_HINT}")


def _held_elsewhere(spec: RunSpec) -> Optional[RunStatus]:
    """The run's state if another process finished it or is training it now, else None."""
    state = run_status(spec, {})
    return state if state.state in (DONE, RUNNING) else None


def _wait_for_others(held: Sequence[RunSpec]) -> None:
    """Waits while other processes train `held`; says how each ended."""
    for spec in held:
        while (state := run_status(spec, {})).state == RUNNING:
            time.sleep(1.0)
        ended = ("done by another process" if state.state == DONE else
                 f"ended in another process without results ({state.state}); see --status")
        print(f"{spec.label}: {ended}", file=sys.stderr, flush=True)


def run_local(plan: Sequence[RunSpec], jobs: int = 1, threads: Optional[int] = None,
              allow_change: Sequence[str] = ()) -> Dict[str, int]:
    """Runs every spec of `plan` in up to `jobs` processes; returns {run folder: exit code}
    of the runs it ran (a run another process holds meanwhile is waited for, and left out).

    Arguments:
        plan: the runs still to do (the caller leaves out finished and live ones).
        jobs: how many run at once (at least 1; more than the plan's runs are not started).
        threads: torch threads per run (OMP_NUM_THREADS); None leaves the environment's.
        allow_change: keys that may differ from a checkpoint's config.

    Raises:
        RunInterrupted: on Ctrl-C or SIGTERM, once every started run has stopped; the message
            says which checkpointed and which stopped before writing anything.

    Example:
        >>> codes = run_local(build_plan(["a.toml"], [0, 1]), jobs=2)  # doctest: +SKIP
    """
    queue = list(plan)
    to_log = jobs > 1
    running: Dict[int, LocalRun] = {}
    stopped: List[LocalRun] = []
    held: List[RunSpec] = []
    codes: Dict[str, int] = {}
    total, started = len(queue), 0
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while queue or running:
            while queue and len(running) < jobs:
                spec = queue.pop(0)
                started += 1
                other = _held_elsewhere(spec)
                if other is not None:
                    held.append(spec)
                    print(f"[{started}/{total}] {spec.label}: {other.state} in another process "
                          f"{other.detail}".rstrip(), file=sys.stderr, flush=True)
                    continue
                run = _start(spec, allow_change, threads, to_log)
                running[run.process.pid] = run
                where = f" (log: {spec.run_dir / LOG_FILE})" if to_log else ""
                print(f"[{started}/{total}] {spec.label}: started in {spec.run_dir}{where}",
                      file=sys.stderr, flush=True)
            if not running:
                break
            pid, status = os.wait()
            if pid not in running:
                continue
            run = running.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            run.process.returncode = code
            took = time.perf_counter() - run.started
            other = _held_elsewhere(run.spec) if code else None
            if other is not None:  # refused because another command holds or finished it
                if run.log is not None:
                    run.log.close()
                held.append(run.spec)
                print(f"{run.spec.label}: {other.state} in another process", file=sys.stderr,
                      flush=True)
                continue
            _finish(run, code)
            codes[str(run.spec.run_dir)] = code
            tail = log_tail(str(run.spec.run_dir / LOG_FILE)) if to_log and code else ""
            print(f"{run.spec.label}: {_ended(code)} in {took:.0f} s"
                  + (f": {tail}" if tail else ""), file=sys.stderr, flush=True)
        _wait_for_others(held)
    except KeyboardInterrupt:
        stopped = list(running.values())
        _stop_all(running)
        raise RunInterrupted(_stopped(stopped, len(held), len(queue)), signal.SIGINT) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    return codes


def _check_jobs(jobs: int, runs: int) -> int:
    if jobs < 1:
        raise RunError(f"--jobs {jobs}: give 1 or more worker processes (e.g. --jobs 2).")
    if runs and jobs > runs:
        print(f"gbml_ext: --jobs {jobs} is more than the {runs} run(s) to start; using {runs}.",
              file=sys.stderr)
        return runs
    return jobs


class LocalLauncher(Launcher):
    """`--launcher local`: worker processes on this machine (`run_local`)."""

    def check(self, settings: LaunchSettings) -> None:
        """Raises `RunError` for `settings.jobs` below 1."""
        _check_jobs(settings.jobs, 0)

    def start(self, plan: Sequence[RunSpec], settings: LaunchSettings) -> None:
        """Runs `plan` in `settings.jobs` processes and returns when every run has ended."""
        jobs = _check_jobs(settings.jobs, len(plan))
        threads = settings.threads if settings.threads is not None else (1 if jobs > 1 else None)
        run_local(plan, jobs, threads, settings.allow_change)

    def view(self, record: Dict, polled: object) -> Optional[RunStatus]:
        """Failed, with its exit code and log's last lines, when the worker exited non-zero."""
        code = record.get("exit_code")
        if code in (None, 0):
            return None
        tail = log_tail(record.get("log"))
        why = (f"stopped by its stop file (exit {code}); resumable" if code == STOPPED_EXIT_CODE
               else f"exit {code}")
        return RunStatus(FAILED, why + (f": {tail}" if tail else ""))


LAUNCHERS.register("local", LocalLauncher(), doc="worker processes on this machine (--jobs N)")
