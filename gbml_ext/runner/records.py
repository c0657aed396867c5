"""What a run records as it goes: a line of metrics.jsonl per logged iteration
(`log_record`), a validation evaluation and its record (`log_validation`), the results.json
record of a finished run (`final_results`), written with its table and plot
(`write_run_results`), and the trackers that copy them (`open_trackers`,
`logging.backends`)."""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from ..fast import first_call_s
from ..measure import peak_increase_since, start_peak_watch
from ..trackers import RunTrackers, TrackerUnavailable
from .config import Config, ConfigError, config_to_dict
from .distributed import DistributedContext
from .evaluate import evaluate, evaluation_steps, final_evaluation, run_path, training_path
from .guards import check_evaluation
from .memory import training_memory
from .plots import plot_training_curves
from .report import environment_info, write_results
from .rundir import keep_previous_results
from .state import TrainingState
from .summaries import at_step

__all__ = ["RunResult", "final_results", "log_record", "log_validation", "open_trackers",
           "write_run_results"]



@dataclass
class RunResult:
    """What `train` returns: the trained learner, the logged history and the final results.

    Attributes:
        algorithm: the meta-trained learner (GBML, ANIL, ...), on the run's device.
        history: the logged records, as in metrics.jsonl: `iteration`, `split`, `loss`, ...
        results: the results.json record: `evaluation` (as `evaluate` returns it), `config`, ...
        run_dir: the run folder the files were written to.
        config: the run's resolved config.

    Example:
        >>> from gbml_ext.runner import train
        >>> result = train("experiments/configs/synthetic/linreg_shallow.toml")  # doctest: +SKIP
        >>> result.results["evaluation"]["loss"]["mean"], result.run_dir  # doctest: +SKIP
    """

    algorithm: torch.nn.Module
    history: List[Dict[str, Any]]
    results: Dict[str, Any]
    run_dir: Path
    config: Optional[Config] = field(repr=False, default=None)


def log_validation(state: TrainingState, config: Config, device: torch.device,
                   run_dir: Path, done: int) -> None:
    """Evaluates `config.train.eval_tasks` validation tasks and logs them as one record: loss
    and accuracy after `algorithm.test_steps`, and after every step up to `evaluation_steps`."""
    evaluation = at_step(evaluate(state.algorithm, state.sources["validation"],
                                  config.train.eval_tasks, evaluation_steps(config), device,
                                  path=run_path(config.algorithm, state.algorithm)),
                         config.algorithm.test_steps)
    check_evaluation(evaluation, config.train.explode_factor, f"validation at iteration {done}")
    by_step = evaluation["accuracy_by_step"]
    log_record(run_dir, state.history, {
        "iteration": done, "split": "validation", "loss": evaluation["loss"]["mean"],
        "accuracy": (evaluation["accuracy"] or {}).get("mean"),
        "loss_by_step": [s["mean"] for s in evaluation["loss_by_step"]],
        "accuracy_by_step": by_step and [s["mean"] for s in by_step]})


def final_results(state: TrainingState, config: Config, device: torch.device,
                  dist: DistributedContext, memory_baseline: int, progress: bool,
                  first_iteration: int = 0, shared_process: bool = False) -> Dict[str, Any]:
    """The results.json record of a finished run: the final evaluation on
    `config.evaluation.split` (`evaluate.final_evaluation`), training's time and peak memory,
    the paths of training ("train_path") and evaluation ("path"), the seconds of a compiling
    path's first call in training and evaluation ("first_call_s", "evaluation_first_call_s";
    None when nothing compiled), the environment and the config.
    `shared_process`: other runs share this process, so on the CPU the peaks are not this run's
    and are recorded as None."""
    memory = training_memory(config.run_dir(), device, memory_baseline,
                             state.iteration > first_iteration, shared_process)
    path = run_path(config.algorithm, state.algorithm)
    evaluation_baseline = start_peak_watch(device)
    final = final_evaluation(state.algorithm, state.sources, config, device, progress, path)
    evaluation_peak = peak_increase_since(device, evaluation_baseline) / 2**20
    check_evaluation(final, config.train.explode_factor, f"final evaluation of {config.name}")
    seconds = state.iteration_seconds
    return {
        "name": config.name, "seed": config.seed, "config": config_to_dict(config),
        "run_dir": str(config.run_dir()), "environment": environment_info(device),
        "world_size": dist.world_size, "iterations_done": state.iteration, "evaluation": final,
        "final_train_loss": next((h["loss"] for h in reversed(state.history)
                                  if h["split"] == "train"), None),
        "train_seconds": state.train_seconds,
        "seconds_per_iteration": statistics.median(seconds) if seconds else None,
        **memory,
        "evaluation_peak_memory_mb": None if shared_process and device.type != "cuda"
        else evaluation_peak,
        "split": config.evaluation.split,
        "changes": state.changes,
        "path": path,
        "train_path": training_path(config, state.algorithm),
        # The compiled path's first call in this process, compiling included (None: none).
        "first_call_s": first_call_s(state.algorithm),
        "evaluation_first_call_s": first_call_s(state.algorithm, training=False),
        "precision": config.precision,
        # train.max_minutes ended meta-training before train.iterations.
        "stopped_by_time_limit": state.iteration < config.train.iterations,
    }


def log_record(run_dir: Path, history: List[Dict[str, Any]], record: Dict[str, Any]) -> None:
    """Appends `record` to the history and as one line to the run's metrics.jsonl.

    Raises:
        OSError: the line cannot be written; `filename` is metrics.jsonl's path (a full disk
            refuses the bytes as they are flushed, with no file name of its own).
    """
    history.append(record)
    path = run_dir / "metrics.jsonl"
    try:
        with open(path, "a") as stream:
            stream.write(json.dumps(record) + "\n")
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error


def write_run_results(run_dir: Path, config: Config, history: List[Dict[str, Any]],
                      results: Dict[str, Any]) -> None:
    """Writes a finished run's results.json and results.md (a results.json it replaces is kept
    beside it), and its training.png when `train.plot`."""
    keep_previous_results(run_dir)
    write_results(run_dir, results)
    if config.train.plot:
        plot_training_curves({config.name: history}, run_dir / "training.png")


def open_trackers(config: Config, run_dir: Path, enabled: bool) -> RunTrackers:
    """The run's `logging.backends` as one `RunTrackers` (nothing starts before its first
    record; with `enabled` False, on every process but the first, nothing starts at all).

    Raises:
        ConfigError: a chosen backend whose library is not installed; names its extra.
    """
    try:
        return RunTrackers(config_to_dict(config), run_dir, enabled)
    except TrackerUnavailable as error:
        raise ConfigError(str(error)) from None
