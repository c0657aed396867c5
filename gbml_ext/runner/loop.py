"""The experiment runner: meta-training, checkpoints and resume, evaluation, results.

The loop does not know which algorithm it runs: it asks the learner for a meta-gradient over a
meta-batch of tasks (`accumulate_meta_gradient`, or the batched path), averages it across ranks
when distributed, and steps the outer optimizer.
"""
from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence

import torch

from ..measure import peak_resident_bytes, reset_peak_resident, resident_bytes
from .build import build_algorithm, build_model, build_optimizer, build_task_sources
from .checkpoint import load_checkpoint, save_checkpoint
from .config import Config, ConfigError, config_to_dict, load_config
from .distributed import all_reduce_gradients, broadcast_parameters, init_distributed
from .evaluate import evaluate
from .report import environment_info, write_results

__all__ = ["train", "RunResult", "NonFiniteLossError", "resolve_device", "seed_everything"]


class NonFiniteLossError(FloatingPointError):
    """The meta-loss became NaN or infinite; the message says where and what to lower."""


@dataclass
class RunResult:
    """What `train` returns: the trained learner, the logged history and the final results."""

    algorithm: torch.nn.Module
    history: List[Dict[str, Any]]
    results: Dict[str, Any]
    run_dir: Path
    config: Config = field(repr=False, default=None)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device = 'cuda' but torch sees no GPU here; use device=cpu or auto.")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _start_memory_watch(device: torch.device) -> int:
    """Resets the peak and returns the baseline, so the peak is meta-training's own and not
    the dataset's or the libraries'."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    reset_peak_resident()
    return resident_bytes()


def _peak_memory_mb(device: torch.device, baseline: int) -> float:
    if device.type == "cuda":
        return (torch.cuda.max_memory_allocated(device) - baseline) / 2**20
    return (peak_resident_bytes() - baseline) / 2**20


def _source_states(sources) -> Dict[str, Any]:
    return {k: s.state_dict() for k, s in sources.items() if hasattr(s, "state_dict")}


def _meta_gradient_fn(config: Config, algorithm):
    if config.algorithm.batched:
        from ..batched import batched_meta_gradient

        return lambda tasks, steps: batched_meta_gradient(algorithm, tasks, steps)
    return algorithm.accumulate_meta_gradient


def train(config: Config | str | Path, overrides: Sequence[str] = (), resume: bool = False,
          progress: bool = True) -> RunResult:
    """Meta-trains, evaluates and writes results for one config.

    Arguments:
        config: a `Config`, or the path of a TOML config.
        overrides: `section.key=value` strings applied on top of the file.
        resume: continue from `<run_dir>/checkpoint.pt` if it exists. On the CPU, with the same
            seed, the resumed run ends bit-identical to an uninterrupted one.
        progress: show a progress bar with the live meta-loss and accuracy.

    Writes to `config.run_dir()`: `metrics.jsonl` (one line per logged iteration and per
    evaluation), `checkpoint.pt`, `results.json` and `results.md`.

    Example:
        >>> result = train(None, ["train.iterations=3", "data.options={dim=4}",
        ...                       "evaluation.tasks=5", "output_dir=/tmp/gbml_doctest"],
        ...                progress=False)   # doctest: +SKIP
    """
    if not isinstance(config, Config):
        config = load_config(config, overrides)
    device = resolve_device(config.device)
    dist_ctx = init_distributed(device)
    if dist_ctx.enabled and device.type == "cuda":  # one GPU per process on each node
        device = torch.device("cuda", dist_ctx.local_rank)
        torch.cuda.set_device(device)
    run_dir = config.run_dir()
    seed_everything(config.seed)
    model = build_model(config.model, config.data)
    algorithm = build_algorithm(config.algorithm, model).to(device)
    optimizer = build_optimizer(config, algorithm)
    if dist_ctx.enabled:
        broadcast_parameters(algorithm)
        if config.train.meta_batch % dist_ctx.world_size:
            raise ValueError(f"train.meta_batch={config.train.meta_batch} must be divisible by "
                             f"the {dist_ctx.world_size} processes.")
    sources = build_task_sources(config.data, config.seed, rank=dist_ctx.rank)
    # Each rank draws its own stream of training tasks from the global generators too.
    seed_everything(config.seed + 7919 * dist_ctx.rank)

    start, history, train_seconds = 0, [], 0.0
    iteration_seconds: List[float] = []
    checkpoint_path = run_dir / "checkpoint.pt"
    if resume:
        state = load_checkpoint(checkpoint_path)
        if state is not None:
            _check_same_run(state["config"], config_to_dict(config), checkpoint_path)
            algorithm.load_state_dict(state["algorithm"])
            optimizer.load_state_dict(state["optimizer"])
            for name, source_state in state["sources"].items():
                sources[name].load_state_dict(source_state)
            start, history = state["iteration"], state["history"]
            train_seconds, iteration_seconds = state["train_seconds"], state["iteration_seconds"]
    if dist_ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _rewrite_metrics(run_dir / "metrics.jsonl", history)

    meta_gradient = _meta_gradient_fn(config, algorithm)
    local_batch = config.train.meta_batch // dist_ctx.world_size
    memory_baseline = _start_memory_watch(device)
    from tqdm.auto import tqdm

    bar = tqdm(range(start, config.train.iterations), initial=start, total=config.train.iterations,
               desc=config.name, disable=not (progress and dist_ctx.is_main), dynamic_ncols=True)
    for iteration in bar:
        tic = time.perf_counter()
        tasks = [sources["train"].sample().to(device) for _ in range(local_batch)]
        optimizer.zero_grad(set_to_none=True)
        outcomes = meta_gradient(tasks, config.algorithm.train_steps)
        if dist_ctx.enabled:
            all_reduce_gradients(algorithm.parameters(), dist_ctx.world_size)
        loss = sum(o.loss.item() for o in outcomes) / len(outcomes)
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"meta-loss is {loss} at iteration {iteration + 1} of {config.name}. Lower "
                f"algorithm.inner_lr (now {config.algorithm.inner_lr}) or train.lr (now "
                f"{config.train.lr}); rerun with --resume to continue from the last checkpoint.")
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        iteration_seconds.append(time.perf_counter() - tic)
        train_seconds += iteration_seconds[-1]
        done = iteration + 1
        accuracies = [o.accuracy.item() for o in outcomes if o.accuracy is not None]
        record = {"iteration": done, "split": "train", "loss": loss,
                  "accuracy": sum(accuracies) / len(accuracies) if accuracies else None,
                  "seconds": iteration_seconds[-1]}
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False,
                        **({"acc": f"{record['accuracy']:.3f}"} if accuracies else {}))
        if not dist_ctx.is_main:
            continue
        if config.train.log_every and (done % config.train.log_every == 0 or done == config.train.iterations):
            _log(run_dir, history, record)
        if config.train.eval_every and done % config.train.eval_every == 0:
            evaluation = evaluate(algorithm, sources["validation"], config.train.eval_tasks,
                                  config.algorithm.test_steps, device)
            _log(run_dir, history, {"iteration": done, "split": "validation",
                                    "loss": evaluation["loss"]["mean"],
                                    "accuracy": (evaluation["accuracy"] or {}).get("mean"),
                                    "loss_by_step": [s["mean"] for s in evaluation["loss_by_step"]]})
        if config.train.checkpoint_every and (done % config.train.checkpoint_every == 0
                                              or done == config.train.iterations):
            save_checkpoint(checkpoint_path, {
                "algorithm": algorithm.state_dict(), "optimizer": optimizer.state_dict(),
                "sources": _source_states(sources), "iteration": done, "history": history,
                "train_seconds": train_seconds, "iteration_seconds": iteration_seconds,
                "config": config_to_dict(config)})
    bar.close()

    results: Dict[str, Any] = {}
    if dist_ctx.is_main:
        final = evaluate(algorithm, sources[config.evaluation.split], config.evaluation.tasks,
                         config.algorithm.test_steps, device, progress=progress)
        results = {
            "name": config.name, "seed": config.seed, "config": config_to_dict(config),
            "environment": environment_info(device), "world_size": dist_ctx.world_size,
            "evaluation": final,
            "final_train_loss": next((h["loss"] for h in reversed(history) if h["split"] == "train"), None),
            "train_seconds": train_seconds,
            "seconds_per_iteration": statistics.median(iteration_seconds) if iteration_seconds else None,
            "peak_memory_mb": _peak_memory_mb(device, memory_baseline),
            "peak_memory_kind": ("cuda_max_allocated_increase" if device.type == "cuda"
                                 else "peak_rss_increase"),
        }
        write_results(run_dir, results, history)
    return RunResult(algorithm, history, results, run_dir, config)


def _flatten(data: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "options":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _check_same_run(saved: Dict[str, Any], current: Dict[str, Any], path: Path) -> None:
    """A checkpoint only resumes the run that wrote it; more iterations may be asked for."""
    saved, current = _flatten(saved), _flatten(current)
    differ = sorted(k for k in saved.keys() | current.keys()
                    if k != "train.iterations" and saved.get(k) != current.get(k))
    if differ:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differ)
        raise ConfigError(f"{path} was written by a different config ({details}). Resume with "
                          f"the same settings, or start a new run in another output_dir.")


def _log(run_dir: Path, history: List[Dict[str, Any]], record: Dict[str, Any]) -> None:
    history.append(record)
    with open(run_dir / "metrics.jsonl", "a") as stream:
        stream.write(json.dumps(record) + "\n")


def _rewrite_metrics(path: Path, history: List[Dict[str, Any]]) -> None:
    """On (re)start the metrics file holds exactly the checkpointed history: lines written after
    the last checkpoint of an interrupted run are dropped, as that work is redone."""
    with open(path, "w") as stream:
        for record in history:
            stream.write(json.dumps(record) + "\n")
