"""A trial as a run of the runner: its folder and overrides (`trial_spec`), the validation
curve it reports to the study while it runs and the pruning that stops it (`TrialWatch`), and
what it ended as (`outcome`).

A trial never sees the test split: its overrides set `evaluation.split = "validation"`, so the
value a trial reports is its final evaluation on validation tasks; the pruner reads the
validation records the run logs every `train.eval_every` meta-iterations (metrics.jsonl).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

from ..launch import RunSpec
from ..launch.status import FAILED, RunStatus
from ..runner.config import ConfigError, load_config
from ..runner.rundir import read_history, read_results
from ..runner.stopfile import STOP_FILE
from .space import TuneSetup, toml_value

__all__ = ["PRUNED_AT", "TRIALS_FOLDER", "Outcome", "TrialSpec", "TrialWatch",
           "loadable", "outcome", "trial_folder", "trial_spec"]

TRIALS_FOLDER = "trials"
# The trial's user attribute that records, in the store, the step its pruning was decided at.
PRUNED_AT = "pruned_at"


@dataclass
class TrialSpec(RunSpec):
    """A `RunSpec` labelled by its trial number ("trial 3")."""

    number: int = 0

    @property
    def label(self) -> str:
        return f"trial {self.number}"


def trial_folder(out: Path, number: int) -> Path:
    """`out/trials/trial-NNNN`, the run folder of trial `number`."""
    return Path(out) / TRIALS_FOLDER / f"trial-{number:04d}"


def trial_spec(setup: TuneSetup, out: Path, number: int, params: Dict[str, Any]) -> TrialSpec:
    """The run of trial `number` with the sampled `params`: the config with its overrides,
    the params as `key=value` overrides, validation as the evaluation split, its own folder.

    Raises:
        ConfigError: the params together do not make a valid config (each value alone does:
            `read_setup` checked it).

    Example:
        >>> setup = read_setup("experiments/configs/synthetic/linreg_tune.toml")  # doctest: +SKIP
        >>> trial_spec(setup, Path("runs/tune"), 3, {"train.lr": 0.01}).args[-3:]  # doctest: +SKIP
        ["evaluation.split='validation'", "output_dir='runs/tune/trials/trial-0003'", ...]
    """
    name = f"{setup.config.name}-trial-{number:04d}"
    args = [*setup.overrides, *(f"{key}={toml_value(value)}" for key, value in params.items()),
            "evaluation.split='validation'", f"output_dir='{trial_folder(out, number)}'",
            f"name={toml_value(name)}"]
    config = load_config(setup.config_path, args)
    return TrialSpec(setup.config_path, config.seed, config, args, number)


@dataclass
class Outcome:
    """How a trial ended: `state` "complete" (with `value`), "pruned" (at `step`) or "fail"
    (`reason`: its log's last lines), or "running" while a process or job is still on it."""

    state: str
    value: Optional[float] = None
    step: Optional[int] = None
    reason: str = ""


def _metric_value(results: Dict[str, Any], metric: str) -> Optional[float]:
    summary = (results.get("evaluation") or {}).get(metric)
    value = summary.get("mean") if isinstance(summary, dict) else None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def outcome(spec: RunSpec, status: RunStatus, metric: str, pruned_at: Optional[int]) -> Outcome:
    """What a trial's run folder says it ended as (`status` from `launch.plan_status`).

    A pruned trial is pruned whether or not its run saw the stop file before it finished.
    """
    if pruned_at is not None:
        return Outcome("pruned", step=pruned_at)
    if status.state == "done":
        results = read_results(spec.run_dir) or {}
        if results.get("split") != "validation":  # never report a test number to the search
            return Outcome("fail", reason=f"{spec.run_dir} evaluated {results.get('split')!r}, "
                                          f"not the validation split")
        value = _metric_value(results, metric)
        if value is None:
            return Outcome("fail", reason=f"its final validation {metric} is missing or not "
                                          f"finite")
        return Outcome("complete", value=value)
    if status.state == FAILED:
        return Outcome("fail", reason=status.detail or "the run ended without results")
    return Outcome("running")


class TrialWatch:
    """Reports each running trial's validation records to the study as they land and prunes a
    trial the pruner gives up on, by writing the stop file in its run folder (the run then
    checkpoints and stops at the end of its meta-iteration).

    `poll()` does one round; `running()` polls every `seconds` in a background thread while the
    launcher blocks, and stops with the context.

    Arguments:
        metric: the validation record's key reported ("loss" or "accuracy").
        trials: {trial number: (optuna Trial, its run folder, the steps already reported)}.

    Example:
        >>> watch = TrialWatch("loss", {})
        >>> watch.poll(), watch.pruned
        ([], {})
    """

    def __init__(self, metric: str, trials: Dict[int, Tuple[Any, Path, Set[int]]]):
        self.metric = metric
        self.trials = trials
        self.pruned: Dict[int, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None

    def poll(self) -> List[int]:
        """Reports the new validation records; returns the trials pruned in this round."""
        newly: List[int] = []
        with self._lock:
            for number, (trial, folder, reported) in self.trials.items():
                if number in self.pruned:
                    continue
                for record in read_history(folder):
                    value, step = record.get(self.metric), record.get("iteration")
                    if (record.get("split") != "validation" or not isinstance(step, int)
                            or step in reported or not isinstance(value, (int, float))
                            or not math.isfinite(value)):
                        continue
                    trial.report(float(value), step)
                    reported.add(step)
                    if trial.should_prune():
                        self._prune(number, trial, folder, step, float(value))
                        newly.append(number)
                        break
        return newly

    def _prune(self, number: int, trial: Any, folder: Path, step: int, value: float) -> None:
        trial.set_user_attr(PRUNED_AT, step)
        self.pruned[number] = step
        reason = (f"pruned by gbml-tune: validation {self.metric} {value:.6g} at meta-iteration "
                  f"{step} is worse than the pruner allows")
        try:
            (folder / STOP_FILE).write_text(reason + "\n")
        except OSError:
            pass  # the folder is gone: the run has nothing left to stop

    def _loop(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self.poll()

    def start(self, seconds: float = 1.0) -> "TrialWatch":
        """Polls every `seconds` in a daemon thread until `stop()`."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(seconds,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ends the background polling (after its current round)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def loadable(setup: TuneSetup, out: Path, number: int,
             params: Dict[str, Any]) -> TrialSpec | str:
    """`trial_spec`, or the one line saying why these params do not make a valid config."""
    try:
        return trial_spec(setup, out, number, params)
    except ConfigError as error:
        return f"its params do not make a valid config: {error}"
