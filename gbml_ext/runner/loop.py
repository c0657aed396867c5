"""The experiment runner: meta-training, checkpoints and resume, evaluation, results.

`train` reads as its steps: claim the run folder (`rundir`), build the run, restore a checkpoint
or record the config, meta-train, evaluate, write results. The loop does not know which
algorithm it runs: each step it draws one `TaskBatch` from the training source, asks the
learner for its meta-gradient (`accumulate_meta_gradient` over the batch's task views, or the
batched path on its stacked tensors), averages it across ranks when distributed, and steps the
outer optimizer.
"""
from __future__ import annotations

import contextlib
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from ..data.tasks import sample_batch
from ..measure import start_peak_watch
from ..precision import precision_context
from .checkpoint import save_checkpoint
from .config import Config, load_config
from .distributed import DistributedContext, all_reduce_gradients
from .errors import MetaLossDiverged, NonFiniteLossError, RunInterrupted
from .evaluate import run_path
from .guards import (
    OUT_OF_MEMORY,
    StopSignals,
    check_evaluation,
    check_meta_loss,
    explain_divergence,
    is_out_of_memory,
    out_of_memory,
    unadapted_loss,
)
from .plots import plot_training_curves
from .records import final_results, log_record, validate
from .report import write_results
from .rundir import keep_previous_results, run_lock
from .start import RunContext, join_run, start_run
from .state import TrainingState, build_run, cpu_threads, resolve_device, seed_everything

__all__ = ["NonFiniteLossError", "RunResult", "TrainingState", "build_run", "check_evaluation",
           "resolve_device", "seed_everything", "train"]


@dataclass
class RunResult:
    """What `train` returns: the trained learner, the logged history and the final results.

    Attributes:
        algorithm: the meta-trained learner (GBML, ANIL, ...), on the run's device.
        history: the logged records, as in metrics.jsonl: `iteration`, `split`, `loss`, ...
        results: the results.json record: `evaluation` (as `evaluate` returns it), `config`, ...
        run_dir: the run folder the files were written to.
        config: the run's resolved config.

    Example:
        >>> result = train("experiments/configs/synthetic/linreg_shallow.toml")  # doctest: +SKIP
        >>> result.results["evaluation"]["loss"]["mean"], result.run_dir  # doctest: +SKIP
    """

    algorithm: torch.nn.Module
    history: List[Dict[str, Any]]
    results: Dict[str, Any]
    run_dir: Path
    config: Optional[Config] = field(repr=False, default=None)


def train(config: Config | str | Path | None, overrides: Sequence[str] = (), resume: bool = False,
          progress: bool = True, overwrite: bool = False,
          allow_change: Sequence[str] = (), shared_process: bool = False) -> RunResult:
    """Meta-trains, evaluates and writes results for one config.

    Arguments:
        config: a `Config`, or the path of a TOML config (None: the defaults).
        overrides: `section.key=value` strings applied on top of the file.
        resume: continue from the run folder's newest checkpoint (on the CPU, with the same
            seed, the resumed run ends bit-identical to an uninterrupted one). With no
            checkpoint there, says so and starts fresh.
        progress: show a progress bar with the live meta-loss and accuracy.
        overwrite: move an existing run in the folder aside (`<folder>.old-<time>`) first.
        allow_change: keys among `ALLOWED_CHANGES` that may differ from the checkpoint's config
            on resume; each change is recorded in results.json.
        shared_process: other runs share this process (gbml-compare --in-process), so on the
            CPU its resident memory is not this run's: the peak is then recorded as None with
            the reason (`report.training_memory`).

    Writes to `config.run_dir()`: `config.json`, `metrics.jsonl` (one line per logged
    iteration and per evaluation), `checkpoint.pt` (+ the previous one), `results.json`,
    `results.md` and `training.png`.

    Example:
        >>> result = train(None, ["train.iterations=3", "data.options={dim=4}",
        ...                       "evaluation.tasks=5", "output_dir=/tmp/gbml_doctest"],
        ...                progress=False, overwrite=True)   # doctest: +SKIP
    """
    if not isinstance(config, Config):
        config = load_config(config, overrides)
    run = join_run(config, allow_change, progress)
    lock = run_lock(run.run_dir) if run.dist.is_main else contextlib.nullcontext()
    with lock, cpu_threads(config.threads), precision_context(config.precision, run.device):
        state = start_run(run, resume, overwrite, allow_change)
        memory_baseline, first_iteration = start_peak_watch(run.device), state.iteration
        chunking = _meta_train_explained(run, state)
        results: Dict[str, Any] = {}
        if run.dist.is_main:
            results = _finish(run, state, memory_baseline, first_iteration, shared_process)
            results["chunking"] = chunking
            _write(run, state, results)
    return RunResult(state.algorithm, state.history, results, run.run_dir, config)


def _meta_train_explained(run: RunContext, state: TrainingState) -> Optional[Dict[str, Any]]:
    """`_meta_train`, with a diverged meta-loss or memory that ran out worded for the user."""
    config = run.config
    try:
        return _meta_train(run, state)
    except MetaLossDiverged as error:
        train_tasks = state.sources["train"]
        raise explain_divergence(
            error, state.algorithm,
            lambda: sample_batch(train_tasks, min(4, config.train.meta_batch)).to(run.device),
            state.reference_loss, state.last_checkpoint, config) from None
    except (*OUT_OF_MEMORY, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        raise out_of_memory(error, config, run.device, "meta-training",
                            state.last_checkpoint) from None


def _finish(run: RunContext, state: TrainingState, memory_baseline: int, first_iteration: int,
            shared_process: bool) -> Dict[str, Any]:
    """The final evaluation and the results record (rank 0 only)."""
    try:
        return final_results(state, run.config, run.device, run.dist, memory_baseline,
                             run.progress, first_iteration, shared_process)
    except (*OUT_OF_MEMORY, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        raise out_of_memory(error, run.config, run.device, "the final evaluation",
                            state.last_checkpoint) from None


def _write(run: RunContext, state: TrainingState, results: Dict[str, Any]) -> None:
    """Writes results.json and results.md (keeping a replaced results.json), and the plot."""
    keep_previous_results(run.run_dir)
    write_results(run.run_dir, results)
    if run.config.train.plot:
        plot_training_curves({run.config.name: state.history}, run.run_dir / "training.png")


def _meta_gradient_fn(config: Config, algorithm) -> Callable:
    """The meta-gradient of a meta-batch on the run's path (`algorithm.path`, see `run_path`)."""
    path = run_path(config.algorithm, algorithm, training=True)
    if path == "batched" and (config.algorithm.tasks_per_chunk or config.train.memory_budget_mb):
        from ..fast import ChunkedMetaGradient

        return ChunkedMetaGradient(algorithm, config.algorithm.tasks_per_chunk,
                                   config.train.memory_budget_mb)
    if path == "batched":
        from ..fast import batched_meta_gradient

        return lambda tasks, steps: batched_meta_gradient(algorithm, tasks, steps)
    if path == "compiled":
        from ..fast import compiled_meta_gradient

        return lambda tasks, steps: compiled_meta_gradient(algorithm, tasks, steps)
    return algorithm.accumulate_meta_gradient


def _meta_train(run: RunContext, state: TrainingState) -> Optional[Dict[str, Any]]:
    """Meta-trains until `train.iterations` (or `train.max_minutes`, or a signal); returns how
    the batched path chunked the meta-batch (`ChunkPlan.to_dict`), or None when it did not."""
    from tqdm.auto import tqdm

    config, dist = run.config, run.dist
    meta_gradient = _meta_gradient_fn(config, state.algorithm)
    last_save = time.monotonic()
    bar = tqdm(total=config.train.iterations, initial=state.iteration, desc=config.name,
               disable=not (run.progress and dist.is_main), dynamic_ncols=True)
    with bar, StopSignals().installed() as stop:
        out_of_time = _out_of_time(state, config, dist)  # resumed with its minutes used up
        while not out_of_time and state.iteration < config.train.iterations:
            record = _meta_step(run, state, meta_gradient)
            _show(bar, record)
            out_of_time = _out_of_time(state, config, dist)
            if not dist.is_main:
                continue
            stopping = "signal" if stop.received is not None else "time" if out_of_time else None
            if _record(run, state, record, stopping, last_save):
                last_save = time.monotonic()
            if stop.received is not None:
                raise RunInterrupted(
                    f"{signal.Signals(stop.received).name} at iteration {state.iteration} of "
                    f"{config.train.iterations}; a checkpoint is in {run.run_dir}. Continue with "
                    f"the same command and --resume.", stop.received)
    plan = getattr(meta_gradient, "plan", None)
    return None if plan is None else plan.to_dict()


def _meta_step(run: RunContext, state: TrainingState, meta_gradient: Callable) -> Dict[str, Any]:
    """One outer step on a fresh meta-batch, averaged over the processes; returns its record
    (a metrics.jsonl line)."""
    config, device, dist = run.config, run.device, run.dist
    tic = time.perf_counter()
    batch = sample_batch(state.sources["train"],
                         config.train.meta_batch // dist.world_size).to(device)
    if state.reference_loss is None:
        state.reference_loss = unadapted_loss(state.algorithm, batch)
    state.optimizer.zero_grad(set_to_none=True)
    outcomes = meta_gradient(batch, config.algorithm.train_steps)
    if dist.enabled:
        all_reduce_gradients(state.algorithm.parameters(), dist.world_size)
    loss = torch.stack([o.loss for o in outcomes]).mean().item()
    check_meta_loss(loss, state.iteration + 1, state.reference_loss, state.last_checkpoint,
                    config)
    state.optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - tic
    state.iteration_seconds.append(seconds)
    state.train_seconds += seconds
    state.iteration += 1
    accuracies = [o.accuracy for o in outcomes if o.accuracy is not None]
    accuracy = torch.stack(accuracies).mean().item() if accuracies else None
    return {"iteration": state.iteration, "split": "train", "loss": loss, "accuracy": accuracy,
            "seconds": seconds}


def _show(bar: Any, record: Dict[str, Any]) -> None:
    """Moves the progress bar one step, showing the meta-loss (and accuracy)."""
    accuracy = record["accuracy"]
    bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False,
                    **({"acc": f"{accuracy:.3f}"} if accuracy is not None else {}))
    bar.update(1)


def _record(run: RunContext, state: TrainingState, record: Dict[str, Any], stopping: Optional[str],
            last_save: float) -> bool:
    """Logs, validates and checkpoints after a step as the config asks (rank 0). `stopping`:
    None, or why training ends here ("signal", "time"), which makes a checkpoint due; at the
    time limit the last iteration is logged too. Returns whether a checkpoint was written."""
    train_cfg, done = run.config.train, state.iteration
    logged = bool(train_cfg.log_every) and (done % train_cfg.log_every == 0
                                            or done == train_cfg.iterations)
    if logged:
        log_record(run.run_dir, state.history, record)
    if train_cfg.eval_every and done % train_cfg.eval_every == 0:
        validate(state, run.config, run.device, run.run_dir, done)
    minutes = (time.monotonic() - last_save) / 60
    saved = bool(stopping is not None or done == train_cfg.iterations
                 or (train_cfg.checkpoint_every and done % train_cfg.checkpoint_every == 0)
                 or (train_cfg.checkpoint_minutes and minutes >= train_cfg.checkpoint_minutes))
    if saved:
        save_checkpoint(run.run_dir, state.checkpoint_payload(run.config))
        state.last_checkpoint = done
    if stopping == "time" and train_cfg.log_every and not logged:
        log_record(run.run_dir, state.history, record)  # the last iteration's loss
    return saved


def _out_of_time(state: TrainingState, config: Config, dist: DistributedContext) -> bool:
    """Whether the meta-iterations have used up `train.max_minutes` (never when it is 0). With
    several processes rank 0's clock decides, so that every rank stops at the same iteration."""
    limit = config.train.max_minutes
    if not limit:
        return False
    out = state.train_seconds >= 60 * limit
    if dist.enabled:
        import torch.distributed

        flag = torch.tensor([float(out)], device=next(state.algorithm.parameters()).device)
        torch.distributed.broadcast(flag, src=0)
        out = bool(flag.item())
    return out
