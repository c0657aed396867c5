"""Summaries as plain data: the mean and 95% CI of held-out tasks, pooled over seeds.

This module sits at the bottom of the runner: it imports nothing from it, and evaluation,
reports, plots and the command lines all read their numbers from here.

    summarize([0.1, 0.3])                         # {mean, ci95, n} of one list of values
    pooled_summary(results_of_seeds, "accuracy")  # over every task of every seed
    comparable_summaries({"maml": [...], "anil": [...]}, "accuracy")
    at_step(evaluation, 2)                        # an evaluation read after 2 inner steps
    best_step(validation, range(1, 6))            # the steps a validation curve prefers
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Dict, List, Literal, Optional, Sequence, overload

__all__ = ["at_step", "best_step", "comparable_summaries", "confidence_interval",
           "evaluation_split", "median_of", "pooled_curve", "pooled_summary", "reported_steps",
           "step_summaries", "summarize", "validation_accuracy"]


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
                   step: Optional[int] = None) -> Dict[str, float]: ...
@overload
def pooled_summary(results: Sequence[Dict[str, Any]], metric: str,
                   step: Optional[int] = None) -> Optional[Dict[str, float]]: ...
def pooled_summary(results: Sequence[Dict[str, Any]], metric: str,
                   step: Optional[int] = None) -> Optional[Dict[str, float]]:
    """Mean and 95% CI over every evaluated task of every seed.

    Arguments:
        results: results.json dicts of one config, one per seed.
        metric: "loss" or "accuracy".
        step: the inner step after which it is read (None: the step each run reports, its
            evaluation's `steps`, which may have been chosen on validation; -1: the last one
            evaluated).

    Returns None for "accuracy" when the runs have none (regression, or a `step` other than the
    reported one in runs recorded before accuracy was kept after every step).

    Example:
        >>> run = {"evaluation": {"per_task": {"accuracy": None,
        ...                                    "loss_by_step": [[2.0, 4.0], [1.0, 3.0]]}}}
        >>> pooled_summary([run, run], "loss")["mean"], pooled_summary([run], "accuracy")
        (2.0, None)
    """
    values: List[float] = []
    for result in results:
        evaluation = result["evaluation"]
        per_task = evaluation["per_task"]
        at = reported_steps(evaluation) if step is None else step
        if metric != "accuracy":
            values += per_task["loss_by_step"][at]
        elif per_task.get("accuracy_by_step") is not None:
            values += per_task["accuracy_by_step"][at]
        elif per_task["accuracy"] is not None and at in (-1, reported_steps(evaluation)):
            values += per_task["accuracy"]  # recorded before accuracy was kept per step
        else:
            return None
    return summarize(values)


def pooled_curve(results: Sequence[Dict[str, Any]], metric: str) -> Optional[List[float]]:
    """The mean of `metric` over every task of every seed after 0, 1, ..., K inner steps (K:
    the fewest steps any seed scored); None when a run did not keep it after every step.

    Example:
        >>> run = {"evaluation": {"steps": 1, "per_task": {
        ...     "loss_by_step": [[2.0, 4.0], [1.0, 3.0]],
        ...     "accuracy_by_step": [[0.0, 0.5], [1.0, 0.5]], "accuracy": [1.0, 0.5]}}}
        >>> pooled_curve([run, run], "accuracy"), pooled_curve([run], "loss")
        ([0.25, 0.75], [3.0, 2.0])
    """
    steps = min(len(r["evaluation"]["per_task"]["loss_by_step"]) for r in results)
    curve = []
    for k in range(steps):
        summary = pooled_summary(results, metric, k)
        if summary is None:
            return None
        curve.append(summary["mean"])
    return curve


def reported_steps(evaluation: Dict[str, Any]) -> int:
    """The inner steps after which an evaluation dict's `loss` and `accuracy` are read: its
    `steps` (evaluations recorded before `max_steps` existed end there).

    Example:
        >>> reported_steps({"steps": 3, "per_task": {"loss_by_step": [[1.0]] * 6}})
        3
        >>> reported_steps({"per_task": {"loss_by_step": [[1.0]] * 2}})
        1
    """
    if evaluation.get("steps") is not None:
        return int(evaluation["steps"])
    return len(evaluation["per_task"]["loss_by_step"]) - 1


def step_summaries(loss_by_step: List[List[float]],
                   accuracy_by_step: Optional[List[List[float]]], steps: int) -> Dict[str, Any]:
    """The evaluation dict (as `runner.evaluate.evaluate` returns it) of per-task values after
    0..K inner steps, reporting `loss` and `accuracy` after `steps` of them.

    Arguments:
        loss_by_step: entry k holds every task's query loss after k steps.
        accuracy_by_step: the same for accuracy, or None (regression).
        steps: the step the dict reports, in 0..K.

    Raises:
        ValueError: `steps` outside 0..K.

    Example:
        >>> e = step_summaries([[3.0, 1.0], [2.0, 0.0]], [[0.5, 0.5], [1.0, 0.0]], 0)
        >>> e["loss"]["mean"], e["max_steps"], e["accuracy_by_step"][1]["mean"]
        (2.0, 1, 0.5)
    """
    max_steps = len(loss_by_step) - 1
    if not 0 <= steps <= max_steps:
        raise ValueError(f"steps={steps} is outside the 0..{max_steps} steps evaluated.")
    losses = [summarize(values) for values in loss_by_step]
    accuracies = (None if accuracy_by_step is None
                  else [summarize(values) for values in accuracy_by_step])
    return {
        "steps": steps, "max_steps": max_steps, "loss": losses[steps],
        "accuracy": None if accuracies is None else accuracies[steps],
        "loss_by_step": losses, "accuracy_by_step": accuracies,
        # Kept so that several seeds can be pooled into one CI (gbml_ext.compare).
        "per_task": {"loss_by_step": loss_by_step, "accuracy_by_step": accuracy_by_step,
                     "accuracy": None if accuracy_by_step is None else accuracy_by_step[steps]},
    }


def at_step(evaluation: Dict[str, Any], steps: int) -> Dict[str, Any]:
    """`evaluation` reporting its `loss` and `accuracy` after `steps` inner steps (any step it
    scored); its other keys are kept.

    Raises:
        ValueError: `steps` outside the steps scored, or an evaluation recorded without
            accuracy after every step asked for another step's accuracy.

    Example:
        >>> e = step_summaries([[3.0, 1.0], [2.0, 0.0]], None, 1)
        >>> at_step(e, 0)["loss"]["mean"], at_step(e, 0)["steps"]
        (2.0, 0)
    """
    per_task = evaluation["per_task"]
    by_step = per_task.get("accuracy_by_step")
    if by_step is None and per_task.get("accuracy") is not None:
        if steps == reported_steps(evaluation):
            return evaluation
        raise ValueError("this evaluation kept its accuracy after its last step only; "
                         "re-evaluate the run (gbml-eval RUN_DIR) to read another step.")
    return {**evaluation, **step_summaries(per_task["loss_by_step"], by_step, steps)}


def best_step(evaluation: Dict[str, Any], candidates: Sequence[int]) -> int:
    """The step among `candidates` after which `evaluation` is best: the highest mean accuracy,
    or for regression the lowest finite mean loss; the fewest steps on a tie.

    Raises:
        ValueError: no candidate with a finite value.

    Example:
        >>> e = step_summaries([[2.0], [1.0], [1.5]], [[0.2], [0.6], [0.6]], 2)
        >>> best_step(e, [1, 2]), best_step({**e, "accuracy_by_step": None}, [1, 2])
        (1, 1)
    """
    accuracy = evaluation.get("accuracy_by_step")
    scores = {k: (accuracy[k]["mean"] if accuracy is not None
                  else -evaluation["loss_by_step"][k]["mean"]) for k in candidates}
    finite = {k: v for k, v in scores.items() if math.isfinite(v)}
    if not finite:
        raise ValueError(f"no finite value after any of the steps {list(candidates)}.")
    best = max(finite.values())
    return min(k for k, v in finite.items() if v == best)


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


def validation_accuracy(history: Sequence[Dict[str, Any]]) -> Dict[int, float]:
    """The accuracy (0..1) of each validation record of a run's metrics.jsonl
    (`rundir.read_history`), by meta-iteration; records without accuracy are left out.

    Example:
        >>> validation_accuracy([{"iteration": 10, "split": "train", "accuracy": 0.9},
        ...                      {"iteration": 10, "split": "validation", "accuracy": 0.5},
        ...                      {"iteration": 20, "split": "validation", "accuracy": None}])
        {10: 0.5}
    """
    return {r["iteration"]: r["accuracy"] for r in history
            if r.get("split") == "validation" and isinstance(r.get("accuracy"), (int, float))}
