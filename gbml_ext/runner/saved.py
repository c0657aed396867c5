"""Saved runs are first-class: load a trained learner, or re-evaluate it without retraining.

    run = load_run("runs/omniglot-5w1s-maml/seed0")        # learner + config, no side effects
    run.learner(images)                                     # the meta-trained model
    reevaluate("runs/...", tasks=2000, steps=10, split="validation")   # writes eval-*.json
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..fileio import atomic_write_json, atomic_write_text, timestamped_path
from ..measure import peak_increase_since, start_peak_watch
from ..precision import precision_context
from .build import build_learner, build_sources
from .checkpoint import load_latest_checkpoint
from .compat import FREE_KEYS
from .config import Config, ConfigError, config_to_dict
from .errors import CheckpointError, DeviceError, ResultNotSaved
from .evaluate import final_evaluation, run_path
from .guards import check_evaluation
from .report import environment_info, results_markdown
from .runconfig import (
    changed_settings,
    read_run_config,
    refuse_unread_overrides,
    saved_config,
    saved_values,
)
from .state import cpu_threads

__all__ = ["LoadedRun", "load_run", "read_run_config", "reevaluate"]

# The devices a saved run can be put on: those a config's `device` key allows.
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


def load_run(run_dir: str | Path, overrides: Sequence[str] = (), device: str = "cpu",
             trust: bool = False) -> LoadedRun:
    """Returns the trained learner and config of a run folder, without touching the global
    random state.

    Arguments:
        run_dir: a folder written by `gbml-train` / `train` (holds config.json and a checkpoint).
        overrides: `key=value` changes to the saved config, e.g. `data.root=...` if the data
            moved. Changes that alter the model make the checkpoint not fit, which is an error.
        device: where to put the learner.
        trust: read the checkpoint with full unpickling, which runs any code it holds; only
            for a checkpoint refused as unsafe (`UnsafeCheckpoint`) that you know who wrote.

    Example:
        >>> run = load_run("runs/experiment/seed0")   # doctest: +SKIP
        >>> learner = run.learner.clone()              # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    saved = saved_config(run_dir, trust)
    config = read_run_config(run_dir, overrides, data=saved)
    return _load(run_dir, config, _device(str(device)), saved, trust)


def _misfit(model: Dict[str, torch.Tensor], stored: Dict[str, Any]) -> str:
    """How a checkpoint's weights `stored` differ from the state dict `model`, in a few words."""
    for key, tensor in model.items():
        if key in stored and torch.is_tensor(stored[key]) and stored[key].shape != tensor.shape:
            return (f"{key} is {tuple(stored[key].shape)} in the checkpoint, "
                    f"{tuple(tensor.shape)} in the model")
    missing = [key for key in model if key not in stored]
    extra = [key for key in stored if key not in model]
    words = [f"the model has {len(missing)} tensor(s) the checkpoint lacks, e.g. {missing[0]}"
             if missing else "",
             f"the checkpoint has {len(extra)} the model lacks, e.g. {extra[0]}" if extra else ""]
    return "; ".join(w for w in words if w) or "its tensors do not load into the model"


def _load(run_dir: Path, config: Config, device: torch.device, saved: Dict[str, Any],
          trust: bool) -> LoadedRun:
    found = load_latest_checkpoint(run_dir, trust)
    if found is None:
        raise CheckpointError(f"{run_dir} has no checkpoint to load; finish or resume the run "
                              f"first (gbml-train CONFIG --resume).")
    checkpoint, path = found
    with _private_random_state():
        learner = build_learner(config)
    try:
        learner.load_state_dict(checkpoint["algorithm"])
    except RuntimeError as error:
        detail = _misfit(learner.state_dict(), checkpoint["algorithm"])
        changed = {k: v for k, v in changed_settings(saved, config).items()
                   if k not in FREE_KEYS}
        if not changed:
            raise CheckpointError(f"{path} does not fit the model of its config ({detail}); "
                                  f"it was written by another config or version.") from None
        own = ", ".join(f"{k}={v!r}" for k, v in saved_values(saved, list(changed)).items())
        words = ", ".join(f"{k}={v}" for k, v in changed.items())
        raise ConfigError(f"{words} changes the model, so the run's checkpoint {path} does not "
                          f"fit it ({detail}); the run was trained with {own}. Evaluate it "
                          f"without that change.") from error
    return LoadedRun(learner.to(device), config, checkpoint["iteration"],
                     checkpoint["history"])


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
               out: Optional[str | Path] = None, trust: bool = False) -> Dict[str, Any]:
    """Evaluates a saved run again and writes `eval-<split>-<steps>steps-<tasks>tasks.{json,md}`
    beside its results (or in `out`); returns the written dict, its path under "path".

    Evaluations never replace each other: one that changes other settings of the run's config
    (`overrides`) adds them to its name (`...-5tasks-algorithm.inner_lr=0.05.json`, or a short
    digest when they are many) and records them under "changed"; an earlier evaluation of the
    same name is kept as `<name>-<UTC time>.json` (and .md). Overrides of keys an evaluation
    never reads (meta-training's, `output_dir`, `device`) are refused, and so are those that
    change the model so that the checkpoint no longer fits it.

    Defaults come from the run's config; the evaluation runs at the run's `precision` and
    `threads`, as its own final evaluation did. The test tasks depend on the run's seed only,
    so the first N are those the run's own final evaluation saw. The dict records the
    checkpoint's "iteration" (the .md says "checkpoint of iteration N of M" when the run had
    not finished) and the evaluation's own peak memory as `evaluation_peak_memory_mb`.
    `trust`: as in `load_run`.

    Raises:
        ResultNotSaved: the evaluation finished but its files could not be written (a
            read-only folder); the error's `result` holds it.

    Example:
        >>> reevaluate("runs/experiment/seed0", tasks=2000, steps=5)  # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    torch_device = _device(str(device))
    saved = saved_config(run_dir, trust)
    config = read_run_config(run_dir, overrides, tasks, steps, split, data=saved)
    refuse_unread_overrides(saved, config)
    run = _load(run_dir, config, torch_device, saved, trust)
    with _private_random_state(), cpu_threads(config.threads), \
            precision_context(config.precision, torch_device):
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
    changed = changed_settings(saved, config)
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
