"""Saved runs are first-class: load a trained learner, or re-evaluate it without retraining.

    run = load_run("runs/omniglot-5w1s-maml/seed0")        # learner + config, no side effects
    run.learner(images)                                     # the meta-trained model
    reevaluate("runs/...", tasks=2000, steps=10, split="validation")   # writes eval-*.json
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..fileio import atomic_write_json, atomic_write_text, timestamped_path
from ..measure import peak_increase_since, start_peak_watch
from .build import build_learner, build_sources
from .checkpoint import load_latest_checkpoint
from .compat import flatten
from .config import Config, ConfigError, apply_overrides, config_from_dict, config_to_dict
from .errors import CheckpointError, DamagedFileError, DeviceError, ResultNotSaved
from .evaluate import final_evaluation, run_path
from .guards import check_evaluation
from .report import environment_info, results_markdown
from .rundir import CONFIG_FILE, stored_config

__all__ = ["LoadedRun", "load_run", "read_run_config", "reevaluate"]

# The devices a saved run can be put on: those a config's `device` key allows.
# The settings an evaluation's file name states as they are: split, steps and tasks.
_NAMED = ("evaluation.split", "algorithm.test_steps", "evaluation.tasks")
DEVICES: Tuple[str, ...] = next(
    f.metadata["choices"] for f in dataclasses.fields(Config) if f.name == "device")


@dataclass
class LoadedRun:
    """A trained run read back from its folder: what `load_run` returns.

    Attributes:
        learner: the meta-learner (GBML, ANIL, ...) with the checkpoint's weights, in
            eval-ready state on `device`; `learner.clone()` / `adapt()` work as after training.
        config: the run's config (with any overrides given to `load_run`).
        iteration: the meta-iteration the checkpoint was written at.
        history: the logged training and validation records up to that iteration.

    Example:
        >>> run = load_run("runs/experiment/seed0")  # doctest: +SKIP
        >>> import gbml_ext   # here one built by hand, of the kind load_run returns
        >>> run = LoadedRun(gbml_ext.MAML(torch.nn.Linear(4, 1)), Config(), 100, [])
        >>> task = gbml_ext.Task(torch.randn(8, 4), torch.randn(8, 1), torch.randn(8, 4),
        ...                      torch.randn(8, 1))
        >>> steps = run.config.algorithm.test_steps
        >>> gbml_ext.run_task(run.learner, task, steps, train=False).loss.shape
        torch.Size([])
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


def _saved_config(run_dir: Path) -> Dict[str, Any]:
    """The config a run folder holds: its config.json, or, if that file is damaged, the copy
    in its newest checkpoint (saying so)."""
    try:
        data = stored_config(run_dir)
    except DamagedFileError as error:
        found = load_latest_checkpoint(run_dir)
        if found is None or not isinstance(found[0].get("config"), dict):
            raise
        print(f"gbml_ext: {error.path} is damaged; using the config saved in {found[1]} "
              f"instead. `gbml-train CONFIG --resume` with the run's config writes it again.",
              file=sys.stderr)
        return found[0]["config"]
    if data is None:
        raise CheckpointError(f"{run_dir} holds no gbml_ext run ({CONFIG_FILE} is missing); "
                              f"give the folder a training run wrote, e.g. runs/<name>/seed0.")
    return data


def read_run_config(run_dir: str | Path, overrides: Sequence[str] = (),
                    tasks: Optional[int] = None, steps: Optional[int] = None,
                    split: Optional[str] = None) -> Config:
    """A run folder's config with `overrides` and the evaluation settings applied.

    A config error names its source: the saved config, an override, or an argument (`tasks`:
    gbml-eval's --tasks, `steps`: --steps, `split`: --split).

    Example:
        >>> read_run_config("runs/experiment/seed0", tasks=1)  # doctest: +SKIP
        ConfigError: --tasks 1: config key 'evaluation.tasks' must be >= 2, got 1.
    """
    return _config_of(Path(run_dir), _saved_config(Path(run_dir)), overrides, tasks, steps, split)


def _config_of(run_dir: Path, data: Dict[str, Any], overrides: Sequence[str],
               tasks: Optional[int], steps: Optional[int], split: Optional[str]) -> Config:
    """`read_run_config` on the saved config `data` already read from `run_dir`."""
    try:
        config_from_dict(copy.deepcopy(data))
    except ConfigError as error:
        raise ConfigError(f"{error} (in {run_dir / CONFIG_FILE}, the config the run was "
                          f"trained with)") from error
    config = config_from_dict(apply_overrides(copy.deepcopy(data), overrides))
    flags = {"--tasks": ("evaluation.tasks", tasks), "--steps": ("algorithm.test_steps", steps),
             "--split": ("evaluation.split", None if split is None else repr(split))}
    for flag, (key, value) in flags.items():
        if value is None:
            continue
        try:
            config = config_from_dict(apply_overrides(config_to_dict(config), [f"{key}={value}"]))
        except ConfigError as error:
            raise ConfigError(f"{flag} {value}: {error}") from error
    return config


def _device(name: str) -> torch.device:
    """The torch device for gbml-eval's --device / `load_run(device=...)`: one of `DEVICES`,
    and "cuda" only where torch sees a GPU."""
    if name not in DEVICES:
        raise ConfigError(f"device {name!r} is not one of {', '.join(DEVICES)}; for example "
                          f"--device cpu.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' is asked for but torch sees no GPU here; use --device "
                          "cpu (in Python: device='cpu') or auto.")
    return torch.device(name)


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
    return _load(Path(run_dir), read_run_config(run_dir, overrides), _device(str(device)))


def _load(run_dir: Path, config: Config, device: torch.device) -> LoadedRun:
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
    return LoadedRun(learner.to(device), config, checkpoint["iteration"],
                     checkpoint["history"])


def _changed_settings(saved: Dict[str, Any], config: Config) -> Dict[str, Any]:
    """{key: value} of the settings an evaluation changed from the run's saved config, other
    than those its file name already says (split, steps, tasks)."""
    try:
        before = flatten(config_to_dict(config_from_dict(copy.deepcopy(saved))))
    except ConfigError:
        before = flatten(saved)
    after = flatten(config_to_dict(config))
    return {key: after[key] for key in sorted(after)
            if key not in _NAMED and before.get(key) != after[key]}


def _suffix(changed: Dict[str, Any]) -> str:
    """The part of an evaluation's file name that says what it changed: '' for none,
    '-algorithm.inner_lr=0.05' for a few, a short digest of them when they would be long."""
    if not changed:
        return ""
    words = "-".join(f"{key}={value}" for key, value in changed.items())
    words = re.sub(r"[^A-Za-z0-9._=+-]+", "_", words).strip("_")
    if len(words) <= 80:
        return f"-{words}"
    digest = hashlib.sha1(json.dumps(changed, sort_keys=True, default=str).encode()).hexdigest()
    return f"-changed-{digest[:10]}"


def _keep_earlier(folder: Path, stem: str) -> None:
    """An earlier evaluation of the same name (the same settings) is kept beside the new one
    as `<stem>-<UTC time>.{json,md}`, never replaced."""
    for ext in ("json", "md"):
        old = folder / f"{stem}.{ext}"
        if old.is_file():
            old.rename(timestamped_path(folder, f"{stem}-", f".{ext}"))


def reevaluate(run_dir: str | Path, tasks: Optional[int] = None, steps: Optional[int] = None,
               split: Optional[str] = None, overrides: Sequence[str] = (),
               device: str = "cpu", progress: bool = False,
               out: Optional[str | Path] = None) -> Dict[str, Any]:
    """Evaluates a saved run again and writes `eval-<split>-<steps>steps-<tasks>tasks.{json,md}`
    beside its results (or in `out`); returns the written dict, its path under "path".

    Evaluations never replace each other: one that changes other settings of the run's config
    (`overrides`) adds them to its name (`...-5tasks-algorithm.inner_lr=0.05.json`, or a short
    digest when they are many) and records them under "changed"; an earlier evaluation of the
    same name is kept as `<name>-<UTC time>.json` (and .md).

    Defaults come from the run's config. The test tasks depend on the run's seed only, so the
    first N are those the run's own final evaluation saw. The dict records the evaluation's
    own peak memory as `evaluation_peak_memory_mb`.

    Raises:
        ResultNotSaved: the evaluation finished but its files could not be written (a
            read-only folder); the error's `result` holds it.

    Example:
        >>> reevaluate("runs/experiment/seed0", tasks=2000, steps=5)  # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    torch_device = _device(str(device))
    saved = _saved_config(run_dir)
    config = _config_of(run_dir, saved, overrides, tasks, steps, split)
    run = _load(run_dir, config, torch_device)
    with _private_random_state():
        sources = build_sources(config.data, config.seed)
        baseline = start_peak_watch(torch_device)
        evaluation = final_evaluation(run.learner, sources, config, torch_device, progress,
                                      path=run_path(config.algorithm, run.learner))
        peak = peak_increase_since(torch_device, baseline) / 2**20
    check_evaluation(evaluation, config.train.explode_factor, f"evaluation of {run_dir}")
    result = {"name": config.name, "seed": config.seed, "run_dir": str(run_dir),
              "iteration": run.iteration, "split": config.evaluation.split,
              "config": config_to_dict(config),
              "environment": environment_info(torch_device), "evaluation": evaluation,
              "evaluation_peak_memory_mb": peak,
              "peak_memory_kind": ("cuda_max_allocated_increase" if torch_device.type == "cuda"
                                   else "peak_rss_increase")}
    changed = _changed_settings(saved, config)
    result["changed"] = changed
    stem = (f"eval-{config.evaluation.split}-{config.algorithm.test_steps}steps-"
            f"{config.evaluation.tasks}tasks{_suffix(changed)}")
    folder = run_dir if out is None else Path(out)
    path = folder / f"{stem}.json"
    result["path"] = str(path)
    try:
        _keep_earlier(folder, stem)
        atomic_write_json(path, {k: v for k, v in result.items() if k != "path"})
        atomic_write_text(folder / f"{stem}.md", results_markdown(result))
    except OSError as error:
        raise ResultNotSaved(
            f"the evaluation above is not saved: cannot write {error.filename or path} "
            f"({error.strerror or error}). Save it elsewhere with --out DIR (in Python: "
            f"reevaluate(..., out=DIR)).", path, result) from error
    return result
