"""The local launcher: a plan's runs in up to N worker processes on this machine.

Each run is `python -m gbml_ext.runner CONFIG OVERRIDES --resume` in a process of its own
(one torch thread each unless told otherwise), so a run's peak memory is its own and a crash
takes only that run down. With `jobs=1` a run prints to the terminal as `gbml-train` does;
with more, each run writes `launch.log` in its folder and this process prints one line when a
run starts or ends.

Ctrl-C (or SIGTERM) is passed to every running run, which checkpoints at the end of its
meta-iteration and stops; running the same command again resumes them.
"""
from __future__ import annotations

import datetime
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Dict, List, Optional, Sequence

from ..runner.errors import RunInterrupted
from .plan import RunSpec
from .status import LOG_FILE, log_tail, read_job, write_job

__all__ = ["LocalRun", "run_command", "run_local"]


def run_command(spec: RunSpec, allow_change: Sequence[str] = ()) -> List[str]:
    """The command line that runs `spec` in a process of its own (always with --resume: a
    launcher never trains a folder's run twice)."""
    command = [sys.executable, "-m", "gbml_ext.runner", spec.config_path, *spec.args,
               "--no-progress", "--resume"]
    return command + (["--allow-change", *allow_change] if allow_change else [])


@dataclass
class LocalRun:
    """A run started by `run_local`: its spec, process and log (None: the terminal)."""

    spec: RunSpec
    process: subprocess.Popen
    log: Optional[IO[str]]
    started: float


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _start(spec: RunSpec, allow_change: Sequence[str], threads: Optional[int],
           to_log: bool) -> LocalRun:
    run_dir = spec.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if threads:  # the runner's `threads = 0` leaves torch at this
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log = open(run_dir / LOG_FILE, "a") if to_log else None
    # Its own process group: a Ctrl-C at the terminal reaches this process only, which passes
    # it on once, so that every run checkpoints instead of dying mid-write.
    process = subprocess.Popen(run_command(spec, allow_change), env=env, stdout=log,
                               stderr=subprocess.STDOUT if log else None,
                               start_new_session=True)
    write_job(run_dir, {"launcher": "local", "pid": process.pid, "host": socket.gethostname(),
                        "started": _now(), "log": str(run_dir / LOG_FILE) if log else None})
    return LocalRun(spec, process, log, time.perf_counter())


def _finish(run: LocalRun, code: int) -> None:
    if run.log is not None:
        run.log.close()
    record = read_job(run.spec.run_dir) or {}
    record.update(exit_code=code, ended=_now())
    write_job(run.spec.run_dir, record)


def _stop_all(running: Dict[int, LocalRun]) -> None:
    """Passes SIGINT to every run and waits while each writes its checkpoint; a second Ctrl-C
    stops them at once."""
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


def run_local(plan: Sequence[RunSpec], jobs: int = 1, threads: Optional[int] = None,
              allow_change: Sequence[str] = ()) -> Dict[str, int]:
    """Runs every spec of `plan` in up to `jobs` processes; returns {run folder: exit code}.

    Arguments:
        plan: the runs still to do (the caller leaves out finished and live ones).
        jobs: how many run at once (at least 1; more than the plan's runs are not started).
        threads: torch threads per run (OMP_NUM_THREADS); None leaves the environment's.
        allow_change: keys that may differ from a checkpoint's config.

    Raises:
        RunInterrupted: on Ctrl-C or SIGTERM, once every started run has checkpointed.

    Example:
        >>> codes = run_local(build_plan(["a.toml"], [0, 1]), jobs=2)  # doctest: +SKIP
    """
    queue = list(plan)
    to_log = jobs > 1
    running: Dict[int, LocalRun] = {}
    codes: Dict[str, int] = {}
    total, started = len(queue), 0
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while queue or running:
            while queue and len(running) < jobs:
                spec = queue.pop(0)
                started += 1
                run = _start(spec, allow_change, threads, to_log)
                running[run.process.pid] = run
                where = f" (log: {spec.run_dir / LOG_FILE})" if to_log else ""
                print(f"[{started}/{total}] {spec.label}: started in {spec.run_dir}{where}",
                      file=sys.stderr, flush=True)
            pid, status = os.wait()
            if pid not in running:
                continue
            run = running.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            run.process.returncode = code
            _finish(run, code)
            codes[str(run.spec.run_dir)] = code
            took = time.perf_counter() - run.started
            tail = log_tail(str(run.spec.run_dir / LOG_FILE)) if to_log and code else ""
            print(f"{run.spec.label}: {'done' if code == 0 else f'failed (exit {code})'} in "
                  f"{took:.0f} s" + (f": {tail}" if tail else ""), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        _stop_all(running)
        raise RunInterrupted(
            f"{len(running)} run(s) checkpointed and stopped ({len(queue)} not started); run "
            f"the same command again with --resume to continue.", signal.SIGINT) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    return codes


def log_path(spec: RunSpec) -> Path:
    """Where a run started by `run_local` with jobs > 1 writes its output."""
    return spec.run_dir / LOG_FILE
