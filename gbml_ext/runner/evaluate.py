"""Final and periodic evaluation: many held-out tasks, mean and 95% confidence interval.

Tasks are drawn as `TaskBatch`es of `EVAL_TASKS_PER_CHUNK` from the split's seeded source, the
same tasks for every algorithm and path, and adapted one by one (the per-task engine, over the
batch's task views) or a batch at a time (the fast path, `gbml_ext.fast`), so both paths give
the same numbers up to float rounding. `run_path` turns a config's `algorithm.path` into the
path a run takes, and `training_step` binds it to the learner for the loop.
`final_evaluation` is a run's final evaluation as its config asks: every step up to
`evaluation_steps(config)` scored, and the steps reported fixed or chosen on validation
tasks (`evaluation.choose_steps`).
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

from .. import engine
from ..data.tasks import TaskBatch, TaskSource, sample_batch
from ..fast import PATHS, choose_path
from .config import ConfigError
from .schema import AlgorithmConfig, Config
from .summaries import at_step, best_step, confidence_interval, step_summaries, summarize

__all__ = ["CHOICE_RULE", "EVAL_TASKS_PER_CHUNK", "confidence_interval", "evaluate",
           "evaluation_steps", "final_evaluation", "run_path", "summarize", "training_path",
           "training_step"]

# Tasks drawn at a time, and adapted together by the fast path's evaluation (which bounds its
# memory to one chunk's step). Every path draws the same chunks, hence the same tasks.
EVAL_TASKS_PER_CHUNK = 64
# How `evaluation.choose_steps = "validation"` chooses, as results.json records it.
CHOICE_RULE = ("the step among 1..K with the best mean validation accuracy (lowest loss for "
               "regression), the fewest steps on a tie")


def run_path(config: AlgorithmConfig, algorithm: nn.Module, training: bool = False,
             iterations: Optional[int] = None, time_limit_s: Optional[float] = None) -> str:
    """The path (a name in `gbml_ext.fast.PATHS`: "per-task", "batched" or "compiled") a run
    of `config` takes for `algorithm`, in its meta-training steps when `training`, else in
    evaluation.

    `algorithm.batched = true` means `algorithm.path = "batched"`; "auto" is resolved by
    `gbml_ext.fast.choose_path` on the algorithm's device, for `iterations` meta-iterations
    within `time_limit_s` seconds (the run's length, which decides whether compiling pays).

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
    return choose_path(requested, algorithm, training=training, iterations=iterations,
                       time_limit_s=time_limit_s)


def training_path(config: Config, algorithm: nn.Module) -> str:
    """The path of a run's meta-training steps: `run_path` for `train.iterations`
    meta-iterations within `train.max_minutes` (results.json's "train_path").

    Example:
        >>> import gbml_ext
        >>> from gbml_ext.runner.config import load_config
        >>> training_path(load_config(None, []), gbml_ext.MAML(torch.nn.Linear(4, 1)))
        'batched'
    """
    train = config.train
    return run_path(config.algorithm, algorithm, training=True, iterations=train.iterations,
                    time_limit_s=60 * train.max_minutes or None)


def training_step(config: Config, algorithm: nn.Module, says: bool = True) -> Callable:
    """The meta-gradient of a meta-batch on the run's path (`training_path`), as the loop
    calls it (`gbml_ext.fast.step.MetaStep`): its entry of `gbml_ext.fast.PATHS`, chunked
    (`Chunked`) when `algorithm.tasks_per_chunk` or `train.memory_budget_mb` asks for it and
    the path adapts tasks together; when `says` (rank 0), it says on stderr when the path
    compiles."""
    from tqdm.auto import tqdm

    from ..fast import PATHS, Chunked
    from ..fast.step import MetaStep

    path = PATHS[training_path(config, algorithm)]
    if path.batches_tasks and (config.algorithm.tasks_per_chunk or config.train.memory_budget_mb):
        path = Chunked(path, config.algorithm.tasks_per_chunk, config.train.memory_budget_mb)
    return MetaStep(path, algorithm,
                    (lambda line: tqdm.write(f"gbml_ext: {line}", file=sys.stderr))
                    if says else None)


def _padded_if_compiled(path: Any, algorithm: nn.Module, batch: TaskBatch, steps: int
                        ) -> TaskBatch:
    """`batch` with copies of its last task up to `EVAL_TASKS_PER_CHUNK` tasks when its own
    size would compile the path again and the full size is compiled already (the last, short
    chunk of an evaluation on the compiled path); else `batch`. Tasks adapt independently, so
    the copies change no other task's numbers, and the caller drops their curves."""
    missing = EVAL_TASKS_PER_CHUNK - len(batch)
    if missing <= 0 or not path.will_compile(algorithm, batch, steps, training=False):
        return batch
    padded = batch[list(range(len(batch))) + [len(batch) - 1] * missing]
    return batch if path.will_compile(algorithm, padded, steps, training=False) else padded


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
        path: a name in `gbml_ext.fast.PATHS` ("per-task"; "batched" and "compiled" adapt
            `EVAL_TASKS_PER_CHUNK` tasks at a time) or "auto" (`gbml_ext.fast.choose_path`).
            Every path sees the same tasks in the same order: they are drawn
            `EVAL_TASKS_PER_CHUNK` at a time whatever the path. While a path compiles, the
            progress bar says so.

    Returns:
        a dict with `steps` and `max_steps` (both `steps`); for the final step, `loss` and
        `accuracy` summaries ({mean, ci95, n}: the 95% confidence interval's half-width;
        accuracy is None for regression); `loss_by_step` and `accuracy_by_step`: the summaries
        after 0..steps steps (`accuracy_by_step` None for regression); and `per_task`: the raw
        per-task values behind them (`loss_by_step`, `accuracy_by_step`, and `accuracy` after
        the final step). `summaries.at_step` reads the same dict after fewer steps.

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
        >>> result["accuracy_by_step"] is None   # regression: no accuracy
        True
    """
    from tqdm.auto import tqdm

    chosen = PATHS[choose_path(path, algorithm, device)]
    curves: List[List[engine.TaskOutcome]] = []
    with tqdm(total=num_tasks, desc="evaluate", leave=False, disable=not progress) as bar:
        while len(curves) < num_tasks:
            batch = sample_batch(source, min(EVAL_TASKS_PER_CHUNK,
                                             num_tasks - len(curves))).to(device)
            drawn = len(batch)
            batch = _padded_if_compiled(chosen, algorithm, batch, steps)
            compiling = chosen.will_compile(algorithm, batch, steps, training=False)
            if compiling:
                bar.set_postfix_str(f"compiling ({chosen.name} path)")
            curves.extend(chosen.curves(algorithm, batch, steps, loss_fn)[:drawn])
            if compiling:
                bar.set_postfix_str("")
            bar.update(len(batch))
    per_step_losses = [[c[k].loss.item() for c in curves] for k in range(steps + 1)]
    classification = all(c[-1].accuracy is not None for c in curves)
    per_step_accuracies = ([[a.item() for c in curves if (a := c[k].accuracy) is not None]
                            for k in range(steps + 1)] if classification else None)
    return step_summaries(per_step_losses, per_step_accuracies, steps)


def evaluation_steps(config: Config) -> int:
    """K, the most inner steps a run's evaluations score: max(algorithm.test_steps,
    evaluation.max_steps).

    Example:
        >>> from gbml_ext.runner.config import load_config
        >>> evaluation_steps(load_config(None, ["algorithm.test_steps=3"]))
        3
        >>> evaluation_steps(load_config(None, ["evaluation.max_steps=10"]))
        10
    """
    return max(config.algorithm.test_steps, config.evaluation.max_steps)


def final_evaluation(algorithm: nn.Module, sources: Dict[str, TaskSource], config: Config,
                     device: torch.device | str = "cpu", progress: bool = False,
                     path: str = "auto") -> Dict[str, Any]:
    """`evaluate` on `config.evaluation.tasks` tasks of its `evaluation.split` after 0..K steps
    (`evaluation_steps`), reporting `loss` and `accuracy` after the steps the config says
    (`evaluation.choose_steps`): `algorithm.test_steps`, or the steps chosen on
    `evaluation.choice_tasks` validation tasks (`CHOICE_RULE`). The choice reads the validation
    curve only; with `split = "test"` the test tasks are drawn after it and never enter it.

    Arguments:
        algorithm: the meta-learner (its parameters are not changed).
        sources: the run's task sources by split ("validation" and the evaluation's split).
        config: the run's config.
        device, progress, path: as for `evaluate`.

    Returns:
        `evaluate`'s dict, reporting the chosen steps, with `steps_chosen` (None when fixed)
        and `chosen_on` (None when fixed): {split, tasks, metric, candidates, rule,
        loss_by_step, accuracy_by_step} of the validation curve the steps were chosen on.

    Example:
        >>> import gbml_ext
        >>> from gbml_ext.data import LogisticRegressionTasks
        >>> from gbml_ext.runner.config import load_config
        >>> config = load_config(None, ["evaluation.choose_steps=validation",
        ...                             "evaluation.max_steps=4", "evaluation.tasks=3",
        ...                             "evaluation.choice_tasks=3"])
        >>> sources = {s: LogisticRegressionTasks(dim=4, n_support=8, n_query=8, seed=i)
        ...            for i, s in enumerate(("validation", "test"))}
        >>> result = final_evaluation(gbml_ext.MAML(torch.nn.Linear(4, 2)), sources, config)
        >>> result["max_steps"], result["steps"] == result["steps_chosen"]
        (4, True)
    """
    evaluation, steps = config.evaluation, evaluation_steps(config)
    choose = evaluation.choose_steps == "validation"
    chosen_on = None
    if choose and evaluation.split != "validation":  # first: the test tasks come after it
        chosen_on = evaluate(algorithm, sources["validation"], evaluation.choice_tasks, steps,
                             device, path=path)
    final = evaluate(algorithm, sources[evaluation.split], evaluation.tasks, steps, device,
                     progress=progress, path=path)
    if not choose:
        return {**at_step(final, config.algorithm.test_steps), "steps_chosen": None,
                "chosen_on": None}
    chosen_on = chosen_on or final
    try:
        chosen = best_step(chosen_on, range(1, steps + 1))
    except ValueError:  # no finite validation loss: report the configured steps (it says why)
        chosen = config.algorithm.test_steps
    return {**at_step(final, chosen), "steps_chosen": chosen, "chosen_on": {
        "split": "validation", "tasks": chosen_on["loss"]["n"],
        "metric": "loss" if chosen_on["accuracy_by_step"] is None else "accuracy",
        "candidates": [1, steps], "rule": CHOICE_RULE,
        "loss_by_step": chosen_on["loss_by_step"],
        "accuracy_by_step": chosen_on["accuracy_by_step"]}}
