"""Summaries as plain data: the mean and 95% CI of held-out tasks, pooled over seeds.

This module sits at the bottom of the runner: it imports nothing from it, and evaluation,
reports, plots and the command lines all read their numbers from here.

    summarize([0.1, 0.3])                         # {mean, ci95, n} of one list of values
    pooled_summary(results_of_seeds, "accuracy")  # over every task of every seed
    comparable_summaries({"maml": [...], "anil": [...]}, "accuracy")
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Dict, List, Literal, Optional, Sequence, overload

__all__ = ["comparable_summaries", "confidence_interval", "evaluation_split", "median_of",
           "pooled_summary", "summarize"]


def confidence_interval(values: Sequence[float], z: float = 1.96) -> float:
    """Half-width of the normal-approximation 95% CI of the mean: z · s / √n (s: sample std).

    This is the convention of the few-shot literature (MAML, learn2learn, KFO papers).

    Example:
        >>> round(confidence_interval([1.0, 2.0, 3.0, 4.0]), 4)
        1.2652
    """
    n = len(values)
    if n < 2:
        return float("nan")
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return z * math.sqrt(variance) / math.sqrt(n)


def summarize(values: Sequence[float]) -> Dict[str, float]:
    """{mean, ci95, n} of `values` (ci95: `confidence_interval`).

    Example:
        >>> summarize([1.0, 3.0])["mean"]
        2.0
    """
    return {"mean": sum(values) / len(values), "ci95": confidence_interval(values),
            "n": len(values)}


@overload
def pooled_summary(results: Sequence[Dict[str, Any]], metric: Literal["loss"],
                   step: int = -1) -> Dict[str, float]: ...
@overload
def pooled_summary(results: Sequence[Dict[str, Any]], metric: str,
                   step: int = -1) -> Optional[Dict[str, float]]: ...
def pooled_summary(results: Sequence[Dict[str, Any]], metric: str,
                   step: int = -1) -> Optional[Dict[str, float]]:
    """Mean and 95% CI over every evaluated task of every seed.

    Arguments:
        results: results.json dicts of one config, one per seed.
        metric: "loss" or "accuracy".
        step: for "loss", the inner step after which it is read (-1: the last).

    Returns None for "accuracy" when the runs have none (regression).

    Example:
        >>> run = {"evaluation": {"per_task": {"accuracy": None,
        ...                                    "loss_by_step": [[2.0, 4.0], [1.0, 3.0]]}}}
        >>> pooled_summary([run, run], "loss")["mean"], pooled_summary([run], "accuracy")
        (2.0, None)
    """
    values: List[float] = []
    for result in results:
        per_task = result["evaluation"]["per_task"]
        if metric == "accuracy":
            if per_task["accuracy"] is None:
                return None
            values += per_task["accuracy"]
        else:
            values += per_task["loss_by_step"][step]
    return summarize(values)


def comparable_summaries(runs: Dict[str, List[Dict[str, Any]]],
                         metric: str) -> Dict[str, Dict[str, float]]:
    """`pooled_summary(results, metric)` of every run, in order.

    Raises:
        ValueError: naming a run without `metric` (a regression run among classifiers).
    """
    summaries = {}
    for name, results in runs.items():
        summary = pooled_summary(results, metric)
        if summary is None:
            raise ValueError(f"{name} has no test {metric} to compare with {next(iter(runs))}'s: "
                             "compare classification runs with classification runs.")
        summaries[name] = summary
    return summaries


def median_of(results: Sequence[Dict[str, Any]], key: str) -> Optional[float]:
    """The median of `key` over the results of a run's seeds, leaving out seeds without it.

    Example:
        >>> median_of([{"t": 1.0}, {"t": 3.0}, {"t": None}], "t")
        2.0
    """
    values = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(values) if values else None


def evaluation_split(results: Dict[str, Any]) -> str:
    """The split a results dict's evaluation drew its tasks from ("test" or "validation"):
    its `split`, else its config's `evaluation.split` (results written before `split` was).

    Example:
        >>> evaluation_split({"config": {"evaluation": {"split": "validation"}}})
        'validation'
    """
    return results.get("split") or results.get("config", {}).get("evaluation", {}).get(
        "split", "test")
