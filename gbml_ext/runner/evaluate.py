"""Final and periodic evaluation: many held-out tasks, mean and 95% confidence interval."""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch

from .. import engine
from ..data.tasks import TaskSource

__all__ = ["confidence_interval", "evaluate", "summarize"]


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
    return {"mean": sum(values) / len(values), "ci95": confidence_interval(values), "n": len(values)}


def evaluate(algorithm, source: TaskSource, num_tasks: int, steps: int,
             device: torch.device | str = "cpu", loss_fn: Optional[engine.LossFn] = None,
             progress: bool = False) -> Dict[str, object]:
    """Adapts to `num_tasks` tasks from `source` and summarizes the query results.

    Returns a dict with, for the final step, `loss` and `accuracy` summaries ({mean, ci95, n};
    accuracy is None for regression), `loss_by_step`: the summary after 0..steps steps, and
    `per_task`: the raw per-task values behind them.
    """
    from tqdm.auto import tqdm

    curves: List[List[engine.TaskOutcome]] = []
    for _ in tqdm(range(num_tasks), desc="evaluate", leave=False, disable=not progress):
        curves.append(engine.adaptation_curve(algorithm, source.sample().to(device), steps, loss_fn))
    per_step_losses = [[c[k].loss.item() for c in curves] for k in range(steps + 1)]
    accuracies = [c[-1].accuracy.item() for c in curves if c[-1].accuracy is not None]
    loss_by_step = [summarize(losses) for losses in per_step_losses]
    return {
        "steps": steps,
        "loss": loss_by_step[-1],
        "accuracy": summarize(accuracies) if accuracies else None,
        "loss_by_step": loss_by_step,
        # Kept so that several seeds can be pooled into one CI (gbml_ext.runner.compare).
        "per_task": {"loss_by_step": per_step_losses, "accuracy": accuracies or None},
    }
