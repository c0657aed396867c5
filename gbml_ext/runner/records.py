"""What a run records as it goes: a line of metrics.jsonl per logged iteration
(`log_record`), a validation record (`validate`), and the results.json record of a finished run
(`final_results`)."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Dict, List

import torch

from ..fast import first_call_s
from ..measure import peak_increase_since, start_peak_watch
from .config import Config, config_to_dict
from .distributed import DistributedContext
from .evaluate import evaluate, evaluation_steps, final_evaluation, run_path, training_path
from .guards import check_evaluation
from .memory import training_memory
from .report import environment_info
from .state import TrainingState
from .summaries import at_step

__all__ = ["final_results", "log_record", "validate"]


def validate(state: TrainingState, config: Config, device: torch.device, run_dir: Path,
             done: int) -> None:
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
    """Appends `record` to the history and as one line to the run's metrics.jsonl."""
    history.append(record)
    with open(run_dir / "metrics.jsonl", "a") as stream:
        stream.write(json.dumps(record) + "\n")
