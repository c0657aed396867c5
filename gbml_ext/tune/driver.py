"""The search: ask the study for a batch of trials, run them through a launcher as run
folders, report their validation curves to the pruner while they run, tell the study how each
ended, until the study holds the number of trials asked for.

Resuming is reading the store: finished trials (complete, pruned or failed) are never run
again; a trial still marked running (the command was stopped, or killed) is run again from its
run folder, which resumes from its checkpoint, or is waited for while its process or Slurm job
is still on it. Ctrl-C stops the local runs at a checkpoint; Slurm jobs go on.
"""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from ..launch import launch, plan_status
from ..launch.local import RESUME_HINT
from ..launch.status import QUEUED, RUNNING
from ..runner.errors import RunError, RunInterrupted
from ..runner.rundir import run_lock
from ..runner.stopfile import STOP_FILE
from .space import TuneSetup, setup_notes
from .study import make_pruner, make_sampler, open_study
from .trials import PRUNED_AT, TrialSpec, TrialWatch, loadable, outcome

__all__ = ["run_study", "trial_counts"]

_LIVE = (RUNNING, QUEUED)
_CONTINUE = "the same gbml-tune command continues the study."


def _continue_hint(message: str) -> str:
    """The launcher's stop message with gbml-tune's way to continue in place of its own.

    Example:
        >>> _continue_hint("2 run(s) stopped (nothing to resume; they start over) (0 not "
        ...                "started); run the same command again with --resume to continue.")
        ... # doctest: +NORMALIZE_WHITESPACE
        '2 run(s) stopped (nothing to resume; they start over) (0 not started);
         the same gbml-tune command continues the study.'
    """
    return f"{message.removesuffix(RESUME_HINT).rstrip('; ')}; {_CONTINUE}"


def _states() -> Any:
    from optuna.trial import TrialState

    return TrialState


def trial_counts(study: Any) -> Dict[str, int]:
    """{"complete": n, "pruned": n, "fail": n, "running": n} of the study's trials.

    Example:
        >>> import optuna
        >>> trial_counts(optuna.create_study())
        {'complete': 0, 'pruned': 0, 'fail': 0, 'running': 0}
    """
    TrialState = _states()
    names = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned",
             TrialState.FAIL: "fail", TrialState.RUNNING: "running"}
    counts = dict.fromkeys(names.values(), 0)
    for trial in study.get_trials(deepcopy=False):
        if trial.state in names:
            counts[names[trial.state]] += 1
    return counts


def _batch(study: Any, setup: TuneSetup, jobs: int) -> List[Any]:
    """The trials to run now: every trial still marked running, then new ones asked from the
    sampler (reseeded from the number of trials so far, so a resumed study draws what an
    uninterrupted one would), up to `jobs` and the study's size."""
    from optuna.trial import Trial

    TrialState = _states()
    trials = study.get_trials(deepcopy=False)
    batch = [Trial(study, t._trial_id) for t in trials if t.state == TrialState.RUNNING]
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
                   for t in trials)
    study.sampler = make_sampler(setup, setup.seed + len(trials))
    while len(batch) < jobs and finished + len(batch) < setup.trials:
        batch.append(study.ask(setup.space))
    return batch


def _tell(study: Any, trial: Any, spec: Any, status: Any, setup: TuneSetup,
          pruned_at: Optional[int]) -> str:
    """Tells the study how one trial ended; returns the line that says so."""
    TrialState = _states()
    ended = outcome(spec, status, setup.metric, pruned_at)
    if ended.state == "running":
        raise RunError(f"trial {trial.number} is still running in {spec.run_dir}; run the "
                       f"same command again to wait for it.")
    if status.state not in _LIVE:
        (spec.run_dir / STOP_FILE).unlink(missing_ok=True)  # it ended before it saw the file
    if ended.state == "complete":
        study.tell(trial, ended.value)
        return f"trial {trial.number}: validation {setup.metric} {ended.value:.6g}"
    if ended.state == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
        return f"trial {trial.number}: pruned at meta-iteration {ended.step}"
    trial.set_user_attr("error", ended.reason[:500])
    study.tell(trial, state=TrialState.FAIL)
    return f"trial {trial.number}: failed: {ended.reason[:300]}"


def _wait(specs: Sequence[TrialSpec], watch: TrialWatch, seconds: float) -> None:
    """Polls until no run of `specs` is running or queued: Slurm jobs, and runs that an
    earlier gbml-tune started before it was killed."""
    while any(state.state in _LIVE for state in plan_status(specs)):  # starting ones too
        watch.poll()
        time.sleep(seconds)
    watch.poll()


def _run_batch(study: Any, setup: TuneSetup, out: Path, batch: List[Any], launcher: str,
               jobs: int, threads: Optional[int], slurm: Dict[str, Any],
               poll_seconds: float, say: Callable[[str], None]) -> None:
    """Runs one batch of trials to their end and tells the study how each ended."""
    TrialState = _states()
    specs: List[TrialSpec] = []
    watched: Dict[int, Tuple[Any, Path, Set[int]]] = {}
    decided: Dict[int, int] = {}
    stored = {t.number: t for t in study.get_trials(deepcopy=False)}
    for trial in batch:
        frozen = stored[trial.number]
        spec = loadable(setup, out, trial.number, frozen.params)
        if isinstance(spec, str):
            trial.set_user_attr("error", spec[:500])
            study.tell(trial, state=TrialState.FAIL)
            say(f"trial {trial.number}: failed: {spec}")
            continue
        if PRUNED_AT in frozen.user_attrs:  # pruned before the last command stopped
            decided[trial.number] = int(frozen.user_attrs[PRUNED_AT])
        else:
            params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in frozen.params.items())
            say(f"trial {trial.number}: {params} in {spec.run_dir}")
            watched[trial.number] = (trial, spec.run_dir, set(frozen.intermediate_values))
        specs.append(spec)
    by_number = {t.number: t for t in batch}
    running = [spec for spec in specs if spec.number in watched]
    watch = TrialWatch(setup.metric, watched)
    if running:
        _wait(running, watch, poll_seconds)  # what an earlier command left running
        if launcher == "slurm":
            launch(running, "slurm", slurm=slurm, wait=False)
        else:
            watch.start(poll_seconds)
            try:
                launch(running, "local", jobs=min(jobs, len(running)), threads=threads)
            finally:
                watch.stop()
        _wait(running, watch, poll_seconds)
    decided.update(watch.pruned)
    states = plan_status(specs)
    for spec, status in zip(specs, states, strict=True):
        say(_tell(study, by_number[spec.number], spec, status, setup,
                  decided.get(spec.number)))


def run_study(setup: TuneSetup, out: Path, launcher: str = "local", jobs: int = 1,
              threads: Optional[int] = None, slurm: Optional[Dict[str, Any]] = None,
              poll_seconds: float = 1.0,
              after_batch: Optional[Callable[[Any], Any]] = None) -> Any:
    """Runs the study of `setup` in `out` until it holds `setup.trials` finished trials;
    returns the Optuna study.

    Arguments:
        setup: from `read_setup`.
        out: the study's folder: its store, `trials/trial-NNNN` run folders, the report.
        launcher: "local" (`jobs` worker processes) or "slurm" (one job per trial, `jobs`
            trials at a time, submitit's `slurm` parameters).
        jobs: trials run at once (one batch asked, run and told at a time).
        threads: torch threads per local trial (None: 1 when jobs > 1).
        poll_seconds: how often the run folders are read for validation records.
        after_batch: called with the study after every batch (gbml-tune writes its report).

    Raises:
        TuneError: a store that holds another search.
        RunFolderError: another gbml-tune is driving the study in `out`.
        RunInterrupted: Ctrl-C; the local runs checkpointed (Slurm jobs go on), the same
            command continues.
        RunError: no trial has completed and the last batch all failed (the first failure's
            reason is named; the same command continues once it is fixed).

    Example:
        >>> study = run_study(read_setup("experiments/configs/synthetic/linreg_tune.toml"),
        ...                   Path("runs/tune"), jobs=2)  # doctest: +SKIP
    """
    if jobs < 1:
        raise RunError(f"--jobs {jobs}: give 1 or more trials at once (e.g. --jobs 2).")

    def say(line: str) -> None:
        print(f"gbml-tune: {line}", file=sys.stderr, flush=True)

    out = Path(out)
    for note in setup_notes(setup):
        say(note)
    with run_lock(out):
        study, store = open_study(setup, out, launcher)
        study.pruner = make_pruner(setup)
        counts = trial_counts(study)
        if any(counts.values()):
            say(f"resuming the study in {store}: {counts['complete']} complete, "
                f"{counts['pruned']} pruned, {counts['fail']} failed, {counts['running']} "
                f"to finish, of {setup.trials}")
        while True:
            batch = _batch(study, setup, jobs)
            if not batch:
                break
            try:
                _run_batch(study, setup, out, batch, launcher, jobs, threads, slurm or {},
                           poll_seconds, say)
            except RunInterrupted as error:  # the local runs checkpointed
                raise RunInterrupted(_continue_hint(str(error)), error.exit_code - 128) from None
            except KeyboardInterrupt:  # while waiting for Slurm jobs or earlier runs
                raise RunInterrupted(f"stopped waiting for the trials, whose Slurm jobs or "
                                     f"processes go on; {_CONTINUE}", signal.SIGINT) from None
            if after_batch is not None:
                after_batch(study)
            counts = trial_counts(study)
            failed = [t for t in study.get_trials(deepcopy=False)
                      if t.number in {b.number for b in batch}
                      and t.state == _states().FAIL]
            if not counts["complete"] and len(failed) == len(batch):
                reason = failed[0].user_attrs.get("error", "see its run folder")
                raise RunError(f"every trial so far failed; trial {failed[0].number}: {reason}. "
                               f"Fix it and run the same command again (failed trials stay "
                               f"in the table; the study goes on with new ones).")
    return study
