"""The Slurm launcher: one Slurm job per run, submitted through submitit.

    gbml-compare a.toml b.toml --seeds 0 1 --out runs/cmp --launcher slurm \\
        --slurm partition=gpu time=120 gpus_per_node=1 cpus_per_task=8

Each job runs the run in process (`RunJob`), resuming from the run folder's checkpoint if
there is one. On preemption or at the time limit Slurm sends SIGUSR2 (submitit asks for it
`signal_delay_s` before the limit); the run then checkpoints at the end of its meta-iteration,
the job is requeued with the same run, and the new attempt resumes bit-identically.

With `--slurm tasks_per_node=2` (or `nodes=2`), the job's tasks train one run together: each
task joins torch.distributed from submitit's `JobEnvironment` (rank, world size, the first
node as master), and the runner's data-parallel code does the rest.
"""
from __future__ import annotations

import datetime
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence

from ..runner.config import ConfigError, load_config
from ..runner.errors import RunError, RunInterrupted
from .files import SLURM_FOLDER, log_tail, write_job
from .plan import RunSpec
from .registry import FAILED, LAUNCHERS, QUEUED, RUNNING, Launcher, LaunchSettings, RunStatus

__all__ = ["LIVE_STATES", "RunJob", "SlurmLauncher", "SlurmUnavailable", "parse_slurm_options",
           "require_slurm", "slurm_states", "submit_slurm", "wait_slurm"]

# squeue's states of a job that has not ended.
_SLURM_QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                 "RESIZING", "SUSPENDED"}
_SLURM_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
LIVE_STATES = _SLURM_QUEUED | _SLURM_RUNNING

# The option names users write (submitit's AutoExecutor spellings), as SlurmExecutor spells them.
_ALIASES = {"tasks_per_node": "ntasks_per_node", "timeout_min": "time", "job_name": "job_name"}


class SlurmUnavailable(ConfigError):
    """`--launcher slurm` where submitit or Slurm's commands are missing, or a bad --slurm
    option: a usage error (exit 2). The message names what is missing and how to get it (pip
    install submitit; run on a login node), or how to write the option (KEY=VALUE)."""


def require_slurm() -> Any:
    """Returns the submitit module, or raises `SlurmUnavailable` naming what is missing."""
    try:
        import submitit
    except ImportError:
        raise SlurmUnavailable("--launcher slurm needs submitit: pip install 'gbml_ext[cluster]' "
                               "(or pip install submitit).") from None
    if shutil.which("sbatch") is None:
        raise SlurmUnavailable("--launcher slurm needs Slurm's sbatch on PATH (run on a login "
                               "node of the cluster), or use --launcher local.")
    return submitit


def parse_slurm_options(words: Sequence[str]) -> Dict[str, Any]:
    """`--slurm KEY=VALUE ...` as submitit's SlurmExecutor parameters (ints where a value is
    one).

    Example:
        >>> parse_slurm_options(["partition=gpu", "time=60", "tasks_per_node=2"])
        {'partition': 'gpu', 'time': 60, 'ntasks_per_node': 2}
    """
    options: Dict[str, Any] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise SlurmUnavailable(f"--slurm {word}: write KEY=VALUE, e.g. --slurm partition=gpu")
        options[_ALIASES.get(key, key)] = int(value) if value.lstrip("-").isdigit() else value
    return options


def _set_distributed_environment(env: Any) -> None:
    """torch.distributed's env:// variables from submitit's view of the job's tasks."""
    port = 20000 + int(str(env.job_id).split("_")[0]) % 20000
    os.environ.update(RANK=str(env.global_rank), WORLD_SIZE=str(env.num_tasks),
                      LOCAL_RANK=str(env.local_rank), MASTER_ADDR=env.hostnames[0],
                      MASTER_PORT=os.environ.get("MASTER_PORT", str(port)))


class RunJob:
    """What a Slurm job runs: `config_path` with `args`, resumed from its folder.

    submitit calls `checkpoint()` when the job is preempted or reaches its time limit; it
    returns the same run, which the requeued job resumes from the checkpoint the run wrote
    when it received the signal.
    """

    def __init__(self, config_path: str, args: Sequence[str],
                 allow_change: Sequence[str] = ()) -> None:
        self.config_path = config_path
        self.args = list(args)
        self.allow_change = list(allow_change)
        self._requeue_handler: Any = None
        self._requeue_asked = False

    def __call__(self) -> str:
        import submitit

        from ..runner.guards import StopSignals
        from ..runner.loop import train

        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            _set_distributed_environment(env)
        usr = env._usr_sig()
        self._requeue_handler = signal.getsignal(usr)

        def on_preemption(number: int, frame: Any) -> None:
            self._requeue_asked = True
            handler = signal.getsignal(signal.SIGTERM)
            if isinstance(getattr(handler, "__self__", None), StopSignals):
                os.kill(os.getpid(), signal.SIGTERM)  # checkpoint at the end of this iteration
            else:  # not training yet (or any more): nothing to save, requeue at once
                self._requeue_handler(number, frame)

        signal.signal(usr, on_preemption)
        config = load_config(self.config_path, self.args)
        try:
            train(config, resume=True, progress=False, allow_change=self.allow_change)
        except RunInterrupted:
            if not self._requeue_asked:
                raise
            print("gbml_ext: checkpoint written; requeueing the job", file=sys.stderr,
                  flush=True)
            self._requeue_handler(usr, None)  # submitit: checkpoint(), requeue, exit
        return str(config.run_dir())

    def checkpoint(self) -> Any:
        """The same run, resumed by the requeued job."""
        import submitit

        return submitit.helpers.DelayedSubmission(
            RunJob(self.config_path, self.args, self.allow_change))


def submit_slurm(plan: Sequence[RunSpec], options: Dict[str, Any],
                 allow_change: Sequence[str] = ()) -> List[str]:
    """Submits one Slurm job per run of `plan`; returns their job ids (also written to each
    run folder's job.json).

    Arguments:
        plan: the runs still to do (the caller leaves out finished, queued and running ones).
        options: SlurmExecutor parameters (`parse_slurm_options`), e.g. partition, time,
            gpus_per_node, cpus_per_task, mem, account, qos, nodes, ntasks_per_node.

    Raises:
        SlurmUnavailable: submitit or sbatch missing, or an unknown option (named).
    """
    submitit = require_slurm()
    ids = []
    for spec in plan:
        folder = spec.run_dir / SLURM_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        executor = submitit.SlurmExecutor(folder=str(folder / "%j"), max_num_timeout=100)
        params = {"job_name": f"{spec.config.name}-s{spec.seed}", "stderr_to_stdout": True,
                  **options}
        try:
            executor.update_parameters(**params)
        except ValueError as error:
            first = str(error).splitlines()[0].replace("Unavailable parameter(s)",
                                                       "unknown key(s)")
            raise SlurmUnavailable(
                f"--slurm: {first} (use submitit's SlurmExecutor parameters: partition, time, "
                f"nodes, tasks_per_node, cpus_per_task, gpus_per_node, mem, account, qos, "
                f"...)") from None
        job = executor.submit(RunJob(spec.config_path, spec.args, allow_change))
        write_job(spec.run_dir, {
            "launcher": "slurm", "job_id": str(job.job_id), "log": str(job.paths.stdout),
            "submitted": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds")})
        print(f"{spec.label}: submitted Slurm job {job.job_id}", file=sys.stderr, flush=True)
        ids.append(str(job.job_id))
    return ids


def slurm_states(job_ids: Iterable[str]) -> Dict[str, str]:
    """{job id: squeue state} for the jobs still known to Slurm (one squeue call).

    Example:
        >>> slurm_states([])
        {}
    """
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


def wait_slurm(job_ids: Sequence[str], poll_seconds: float = 5.0,
               timeout: Optional[float] = None) -> None:
    """Returns once none of `job_ids` is queued or running any more (a requeued job counts as
    queued)."""
    start = time.monotonic()
    while any(state in LIVE_STATES for state in slurm_states(job_ids).values()):
        if timeout is not None and time.monotonic() - start > timeout:
            raise RunError(f"--wait: jobs still running after {timeout:.0f} s; check --status.")
        time.sleep(poll_seconds)


class SlurmLauncher(Launcher):
    """`--launcher slurm`: one Slurm job per run (`submit_slurm`); detached, so the command
    returns once the jobs are submitted unless told to wait."""

    detached = True

    def check(self, settings: LaunchSettings) -> None:
        """Raises `SlurmUnavailable` where submitit or sbatch is missing."""
        require_slurm()

    def start(self, plan: Sequence[RunSpec], settings: LaunchSettings) -> None:
        """Submits one job per run; with `settings.wait`, returns once every job has ended."""
        ids = submit_slurm(plan, settings.options, settings.allow_change) if plan else []
        if settings.wait and ids:
            print(f"gbml_ext: waiting for {len(ids)} Slurm job(s) ...", file=sys.stderr,
                  flush=True)
            wait_slurm(ids)

    def poll(self, records: Sequence[Dict[str, Any]]) -> Dict[str, str]:
        """squeue's state of every job the records name (one call)."""
        return slurm_states(str(r["job_id"]) for r in records if r.get("job_id"))

    def view(self, record: Dict[str, Any], polled: Any) -> Optional[RunStatus]:
        """Queued or running while squeue knows the job, else failed with its log's tail."""
        job = str(record.get("job_id"))
        state = (polled or {}).get(job)
        if state in _SLURM_QUEUED:
            return RunStatus(QUEUED, f"job {job}")
        if state in _SLURM_RUNNING:
            return RunStatus(RUNNING, f"job {job}")
        tail = log_tail(record.get("log"))
        return RunStatus(FAILED, f"job {job} ended without results" + (f": {tail}" if tail
                                                                         else ""))


LAUNCHERS.register("slurm", SlurmLauncher(), doc="one Slurm job per run, through submitit")
