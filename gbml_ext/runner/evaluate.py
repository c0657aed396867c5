"""Final and periodic evaluation: many held-out tasks, mean and 95% confidence interval.

Tasks are drawn as `TaskBatch`es of `EVAL_TASKS_PER_CHUNK` from the split's seeded source, the
same tasks for every algorithm and path, and adapted one by one (the per-task engine, over the
batch's task views) or a batch at a time (the fast path, `gbml_ext.fast`), so both paths give
the same numbers up to float rounding. `run_path` turns a config's `algorithm.path` into the
path a run takes.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
from torch import nn

from .. import engine
from ..data.tasks import TaskSource, sample_batch
from ..fast import batched_adaptation_curves, choose_path, compiled_adaptation_curves
from .config import ConfigError
from .schema import AlgorithmConfig
from .summaries import confidence_interval, summarize

__all__ = ["EVAL_TASKS_PER_CHUNK", "confidence_interval", "evaluate",
           "run_path", "summarize"]

# Tasks drawn at a time, and adapted together by the fast path's evaluation (which bounds its
# memory to one chunk's step). Every path draws the same chunks, hence the same tasks.
EVAL_TASKS_PER_CHUNK = 64


def run_path(config: AlgorithmConfig, algorithm: nn.Module, training: bool = False) -> str:
    """The path ("per-task", "batched" or "compiled") a run of `config` takes for
    `algorithm`, in its meta-training steps when `training`, else in evaluation.

    `algorithm.batched = true` means `algorithm.path = "batched"`; "auto" is resolved by
    `gbml_ext.fast.choose_path` on the algorithm's device.

    Raises:
        ConfigError: `batched = true` together with `path = "per-task"`.
        BatchedPathUnsupported: the batched path is asked for an algorithm it cannot run.

    Example:
        >>> import gbml_ext
        >>> run_path(AlgorithmConfig(path="per-task"), gbml_ext.MAML(torch.nn.Linear(4, 1)))
        'per-task'
    """
    requested = config.path
    if config.batched:
        if requested == "per-task":
            raise ConfigError("algorithm.batched = true contradicts algorithm.path = 'per-task'; "
                              "drop algorithm.batched (a synonym of path = 'batched').")
        requested = "batched"
    return choose_path(requested, algorithm, training=training)


def evaluate(algorithm: nn.Module, source: TaskSource, num_tasks: int, steps: int,
             device: torch.device | str = "cpu", loss_fn: Optional[engine.LossFn] = None,
             progress: bool = False, path: str = "auto") -> Dict[str, Any]:
    """Adapts to `num_tasks` tasks from `source` and summarizes the query results.

    Arguments:
        algorithm: the meta-learner (its parameters are not changed).
        source: where tasks are drawn, in order (`gbml_ext.data.TaskSource`).
        num_tasks: how many tasks.
        steps: the inner steps scored (0..steps).
        device: where tasks are moved (the algorithm must be there already).
        loss_fn: as for `engine.adaptation_curve`.
        progress: show a progress bar.
        path: "per-task", "batched" (`EVAL_TASKS_PER_CHUNK` tasks at a time), "compiled"
            or "auto" (`gbml_ext.fast.choose_path`). Every path sees the same tasks in the
            same order: they are drawn `EVAL_TASKS_PER_CHUNK` at a time whatever the path.

    Returns:
        a dict with `steps`; for the final step, `loss` and `accuracy` summaries ({mean, ci95,
        n}: the 95% confidence interval's half-width; accuracy is None for regression);
        `loss_by_step`: the summary after 0..steps steps; and `per_task`: the raw per-task
        values behind them.

    Raises:
        ValueError: an unknown `path`.
        BatchedPathUnsupported: `path` "batched" or "compiled" for a learner it cannot run.

    Example:
        >>> import gbml_ext
        >>> from gbml_ext.data import LinearRegressionTasks
        >>> maml = gbml_ext.MAML(torch.nn.Linear(4, 1), lr=0.1)
        >>> tasks = LinearRegressionTasks(dim=4, n_support=8, n_query=8)
        >>> result = evaluate(maml, tasks, num_tasks=2, steps=1)
        >>> sorted(result["loss"]), result["loss"]["n"], len(result["loss_by_step"])
        (['ci95', 'mean', 'n'], 2, 2)
    """
    from tqdm.auto import tqdm

    chosen = choose_path(path, algorithm, device)
    curves: List[List[engine.TaskOutcome]] = []
    with tqdm(total=num_tasks, desc="evaluate", leave=False, disable=not progress) as bar:
        while len(curves) < num_tasks:
            batch = sample_batch(source, min(EVAL_TASKS_PER_CHUNK,
                                             num_tasks - len(curves))).to(device)
            if chosen == "batched":
                curves.extend(batched_adaptation_curves(algorithm, batch, steps, loss_fn, None))
            elif chosen == "compiled":
                curves.extend(compiled_adaptation_curves(algorithm, batch, steps, loss_fn))
            else:
                curves.extend(engine.adaptation_curve(algorithm, task, steps, loss_fn)
                              for task in batch)
            bar.update(len(batch))
    per_step_losses = [[c[k].loss.item() for c in curves] for k in range(steps + 1)]
    accuracies = [c[-1].accuracy.item() for c in curves if c[-1].accuracy is not None]
    loss_by_step = [summarize(losses) for losses in per_step_losses]
    return {
        "steps": steps,
        "loss": loss_by_step[-1],
        "accuracy": summarize(accuracies) if accuracies else None,
        "loss_by_step": loss_by_step,
        # Kept so that several seeds can be pooled into one CI (gbml_ext.compare).
        "per_task": {"loss_by_step": per_step_losses, "accuracy": accuracies or None},
    }
