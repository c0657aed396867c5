"""The metric names every backend logs, the same in each: a run folder's records turned into
`{name: number}`.

Each logged meta-iteration (`train.log_every`):
- `train/loss`, `train/accuracy`: the meta-batch's query loss and accuracy;
- `time/seconds_per_iteration`: that meta-iteration's seconds.

Each validation (`train.eval_every`):
- `val/loss`, `val/accuracy`: after `algorithm.test_steps` inner steps;
- `val/loss_step{k}`, `val/acc_step{k}`: after k inner steps, k = 0..K.

At the last meta-iteration, from results.json:
- `test/loss`, `test/accuracy`, `test/loss_ci95`, `test/accuracy_ci95`: the final evaluation's
  means and 95% confidence intervals; `test/steps`: the inner steps it reports;
- `test/loss_step{k}`, `test/acc_step{k}`: the final evaluation after k inner steps;
- `time/train_seconds`, `time/median_seconds_per_iteration`: meta-training's time;
- `memory/peak_mb`, `memory/process_peak_mb`, `memory/evaluation_peak_mb`: peak memory.

With `evaluation.split = "validation"` the final evaluation's names start with `final_val/`
instead of `test/`. Accuracy names are left out for regression tasks, and a number a run did
not measure (a peak memory recorded as None) is left out.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional, Sequence

__all__ = ["hyperparameters", "record_metrics", "results_metrics"]


def _by_step(prefix: str, values: Optional[Sequence[Any]]) -> Dict[str, Any]:
    if not values:
        return {}
    return {f"{prefix}{k}": v["mean"] if isinstance(v, dict) else v
            for k, v in enumerate(values)}


def _numbers(metrics: Mapping[str, Any]) -> Dict[str, float]:
    return {key: float(value) for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def record_metrics(record: Mapping[str, Any]) -> Dict[str, float]:
    """The metrics of one metrics.jsonl record (a training or a validation line).

    Arguments:
        record: a line of metrics.jsonl: `iteration`, `split` ("train" or "validation"), ...

    Returns:
        {name: value}; {} for a split it does not know.

    Example:
        >>> record_metrics({"iteration": 4, "split": "validation", "loss": 0.5,
        ...                 "accuracy": None, "loss_by_step": [0.9, 0.5],
        ...                 "accuracy_by_step": None})
        {'val/loss': 0.5, 'val/loss_step0': 0.9, 'val/loss_step1': 0.5}
    """
    if record.get("split") == "train":
        return _numbers({"train/loss": record.get("loss"), "train/accuracy": record.get("accuracy"),
                         "time/seconds_per_iteration": record.get("seconds")})
    if record.get("split") == "validation":
        return _numbers({"val/loss": record.get("loss"), "val/accuracy": record.get("accuracy"),
                         **_by_step("val/loss_step", record.get("loss_by_step")),
                         **_by_step("val/acc_step", record.get("accuracy_by_step"))})
    return {}


def results_metrics(results: Mapping[str, Any]) -> Dict[str, float]:
    """The metrics of a finished run's results.json record.

    Example:
        >>> results_metrics({"split": "test", "evaluation": {
        ...     "steps": 1, "loss": {"mean": 0.5, "ci95": 0.1}, "accuracy": None,
        ...     "loss_by_step": [{"mean": 0.9}, {"mean": 0.5}]}, "peak_memory_mb": None})
        {'test/loss': 0.5, 'test/loss_ci95': 0.1, 'test/steps': 1.0, 'test/loss_step0': 0.9, \
'test/loss_step1': 0.5}
    """
    prefix = "test" if results.get("split", "test") == "test" else "final_val"
    evaluation = results.get("evaluation") or {}
    loss, accuracy = evaluation.get("loss") or {}, evaluation.get("accuracy") or {}
    return _numbers({
        f"{prefix}/loss": loss.get("mean"), f"{prefix}/loss_ci95": loss.get("ci95"),
        f"{prefix}/accuracy": accuracy.get("mean"),
        f"{prefix}/accuracy_ci95": accuracy.get("ci95"),
        f"{prefix}/steps": evaluation.get("steps"),
        **_by_step(f"{prefix}/loss_step", evaluation.get("loss_by_step")),
        **_by_step(f"{prefix}/acc_step", evaluation.get("accuracy_by_step")),
        "time/train_seconds": results.get("train_seconds"),
        "time/median_seconds_per_iteration": results.get("seconds_per_iteration"),
        "memory/peak_mb": results.get("peak_memory_mb"),
        "memory/process_peak_mb": results.get("process_peak_memory_mb"),
        "memory/evaluation_peak_mb": results.get("evaluation_peak_memory_mb")})


def hyperparameters(config: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """A config as flat hyperparameters: `section.key` names; numbers, strings and booleans
    as they are, lists and tables (`data.options`) as JSON text.

    Example:
        >>> hyperparameters({"seed": 0, "train": {"lr": 0.001}, "data": {"options": {"dim": 4}}})
        {'seed': 0, 'train.lr': 0.001, 'data.options': '{"dim": 4}'}
    """
    flat: Dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and not prefix:  # a section
            flat.update(hyperparameters(value, f"{prefix}{key}."))
        elif isinstance(value, (dict, list)):
            flat[prefix + key] = json.dumps(value, sort_keys=True)
        else:
            flat[prefix + key] = value
    return flat
