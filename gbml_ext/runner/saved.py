"""Saved runs are first-class: load a trained learner, or re-evaluate it without retraining.

    run = load_run("runs/omniglot-5w1s-maml/seed0")        # learner + config, no side effects
    run.learner(images)                                     # the meta-trained model
    reevaluate("runs/...", tasks=2000, steps=10, split="validation")   # writes eval-*.json
"""
from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from ..fileio import atomic_write_json, atomic_write_text
from .build import build_learner, build_sources
from .checkpoint import load_latest_checkpoint
from .config import Config, ConfigError, apply_overrides, config_from_dict, config_to_dict
from .errors import CheckpointError
from .evaluate import evaluate, run_path
from .report import environment_info, results_markdown
from .rundir import CONFIG_FILE, stored_config

__all__ = ["LoadedRun", "load_run", "reevaluate"]


@dataclass
class LoadedRun:
    """A trained run read back from its folder.

    learner: the meta-learner (GBML, ANIL, ...) with the checkpoint's weights, in eval-ready
        state on `device`; `learner.clone()` / `adapt()` work as after training.
    config: the run's config (with any overrides given to `load_run`).
    iteration: the meta-iteration the checkpoint was written at.
    history: the logged training and validation records up to that iteration.
    """

    learner: torch.nn.Module
    config: Config
    iteration: int
    history: List[Dict[str, Any]]


@contextlib.contextmanager
def _private_random_state() -> Iterator[None]:
    """Restores Python's, NumPy's and torch's global random state on exit."""
    python, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy_state)


def _read_config(run_dir: Path, overrides: Sequence[str]) -> Config:
    data = stored_config(run_dir)
    if data is None:
        raise CheckpointError(f"{run_dir} holds no gbml_ext run ({CONFIG_FILE} is missing); "
                              f"give the folder a training run wrote, e.g. runs/<name>/seed0.")
    try:
        return config_from_dict(apply_overrides(data, overrides))
    except ConfigError as error:
        raise ConfigError(f"{error} (in the config saved in {run_dir})") from error


def load_run(run_dir: str | Path, overrides: Sequence[str] = (), device: str = "cpu") -> LoadedRun:
    """Returns the trained learner and config of a run folder, without touching the global
    random state.

    Arguments:
        run_dir: a folder written by `gbml-train` / `train` (holds config.json and a checkpoint).
        overrides: `key=value` changes to the saved config, e.g. `data.root=...` if the data
            moved. Changes that alter the model make the checkpoint not fit, which is an error.
        device: where to put the learner.

    Example:
        >>> run = load_run("runs/experiment/seed0")   # doctest: +SKIP
        >>> learner = run.learner.clone()              # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    config = _read_config(run_dir, overrides)
    found = load_latest_checkpoint(run_dir)
    if found is None:
        raise CheckpointError(f"{run_dir} has no checkpoint to load; finish or resume the run "
                              f"first (gbml-train CONFIG --resume).")
    checkpoint, path = found
    with _private_random_state():
        learner = build_learner(config)
    try:
        learner.load_state_dict(checkpoint["algorithm"])
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not fit the model of its config ({error}).") from error
    return LoadedRun(learner.to(device), config, checkpoint["iteration"], checkpoint["history"])


def reevaluate(run_dir: str | Path, tasks: Optional[int] = None, steps: Optional[int] = None,
               split: Optional[str] = None, overrides: Sequence[str] = (),
               device: str = "cpu", progress: bool = False) -> Dict[str, Any]:
    """Evaluates a saved run again and writes `eval-<split>-<steps>steps-<tasks>tasks.{json,md}`
    beside its results; returns the written dict. Defaults come from the run's config. The
    test tasks depend on the run's seed only, so the first N are those the run's own final
    evaluation saw."""
    run_dir = Path(run_dir)
    extra = [f"evaluation.tasks={tasks}"] if tasks is not None else []
    extra += [f"algorithm.test_steps={steps}"] if steps is not None else []
    extra += [f"evaluation.split='{split}'"] if split is not None else []
    run = load_run(run_dir, list(overrides) + extra, device)
    config = run.config
    with _private_random_state():
        sources = build_sources(config.data, config.seed)
        evaluation = evaluate(run.learner, sources[config.evaluation.split],
                              config.evaluation.tasks, config.algorithm.test_steps,
                              torch.device(device), progress=progress,
                              path=run_path(config.algorithm, run.learner))
    from .guards import check_evaluation

    check_evaluation(evaluation, config.train.explode_factor, f"evaluation of {run_dir}")
    result = {"name": config.name, "seed": config.seed, "run_dir": str(run_dir),
              "iteration": run.iteration, "split": config.evaluation.split,
              "config": config_to_dict(config),
              "environment": environment_info(torch.device(device)), "evaluation": evaluation}
    stem = (f"eval-{config.evaluation.split}-{config.algorithm.test_steps}steps-"
            f"{config.evaluation.tasks}tasks")
    atomic_write_json(run_dir / f"{stem}.json", result)
    atomic_write_text(run_dir / f"{stem}.md", results_markdown(result))
    result["path"] = str(run_dir / f"{stem}.json")
    return result
