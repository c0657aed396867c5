"""The experiment runner: meta-training, checkpoints and resume, evaluation, results.

`train` reads as its steps: start the run (`start`), meta-train, evaluate, write results, and
word what stopped it (a signal, a full disk, memory: `guards`, `limits`). The loop does not know
which algorithm it runs: each step it draws one `TaskBatch` from the training source, asks the
learner for its meta-gradient, averages it across ranks when distributed, steps the outer
optimizer, records the step (rank 0), and every rank agrees on whether to stop.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import torch

from ..data.tasks import sample_batch
from ..measure import start_peak_watch
from ..precision import precision_context
from ..trackers import RunTrackers
from .checkpoint import save_checkpoint
from .config import Config, load_config
from .distributed import agree, all_reduce_gradients, on_rank0
from .errors import MetaLossDiverged, NonFiniteLossError, RunError
from .evaluate import training_step
from .guards import (
    OUT_OF_MEMORY,
    SignalStop,
    StopSignals,
    check_evaluation,
    check_meta_loss,
    check_run_folder,
    explain_divergence,
    interrupted,
    is_out_of_memory,
    unadapted_loss,
)
from .limits import NO_SPACE, cannot_write_run, out_of_memory
from .records import (
    RunResult,
    final_results,
    log_record,
    log_validation,
    open_trackers,
    write_run_results,
)
from .rundir import run_lock
from .start import RunContext, join_run, start_run
from .state import TrainingState, build_run, cpu_threads, resolve_device, seed_everything
from .stopfile import stop_asked, stopped_by_file

__all__ = ["NonFiniteLossError", "RunResult", "TrainingState", "build_run", "check_evaluation",
           "resolve_device", "seed_everything", "train"]


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
    stop, phase, state = StopSignals(), "starting", None
    trackers = open_trackers(config, run.run_dir, run.dist.is_main)  # logging.backends
    try:
        with lock, stop.installed(), cpu_threads(config.threads), \
                precision_context(config.precision, run.device), trackers:
            state = start_run(run, resume, overwrite, allow_change)
            memory_baseline, first_iteration = start_peak_watch(run.device), state.iteration
            phase = "meta-training"
            chunking = _meta_train_explained(run, state, stop, trackers)
            phase, results = "evaluating", {}
            if run.dist.is_main:
                results = final_results(state, config, run.device, run.dist, memory_baseline,
                                        progress, first_iteration, shared_process)
                results["chunking"] = chunking
                check_run_folder(run.run_dir, state.iteration, config.train.iterations)
                write_run_results(run.run_dir, run.config, state.history, results)
                trackers.finish(state.history, results, [run.run_dir / "training.png"])
    except (SignalStop, OSError, *OUT_OF_MEMORY, RuntimeError) as error:
        worded = _worded(error, phase, run, state)
        if worded is None:
            raise
        raise worded from None
    return RunResult(state.algorithm, state.history, results, run.run_dir, config)


def _worded(error: BaseException, phase: str, run: RunContext,
            state: Optional[TrainingState]) -> Optional[RunError]:
    """The user's one-line error for what stopped the run in `phase`: a signal that stops at
    once (outside the meta-iterations, or a second one), a disk that filled or turned
    read-only after the start, memory that ran out; None for anything else."""
    iterations = run.config.train.iterations
    done, kept = (0, 0) if state is None else (state.iteration, state.last_checkpoint)
    if isinstance(error, SignalStop):
        return interrupted(error.signal_number, phase, run.run_dir, done, iterations, kept)
    if isinstance(error, OSError):  # at the start: a folder that cannot be written at all
        return (cannot_write_run(error, phase, run.run_dir, done, iterations, kept)
                if error.errno in NO_SPACE and phase != "starting" else None)
    if not is_out_of_memory(error) or isinstance(error, RunError):
        return None
    return out_of_memory(error, run.config, run.device, phase, kept,
                         None if state is None else state.algorithm, run.dist.world_size)


def _meta_train_explained(run: RunContext, state: TrainingState, stop: StopSignals,
                          trackers: RunTrackers) -> Optional[Dict[str, Any]]:
    """`_meta_train`, with a diverged meta-loss worded for the user: which loop diverged."""
    config = run.config
    try:
        return _meta_train(run, state, stop, trackers)
    except MetaLossDiverged as error:
        train_tasks = state.sources["train"]
        raise explain_divergence(
            error, state.algorithm,
            lambda: sample_batch(train_tasks, min(4, config.train.meta_batch)).to(run.device),
            state.reference_loss, state.last_checkpoint, config) from None


def _meta_train(run: RunContext, state: TrainingState, stop: StopSignals,
                trackers: RunTrackers) -> Optional[Dict[str, Any]]:
    """Meta-trains until `train.iterations`, or until every process agrees to stop early
    (`train.max_minutes`, a signal); returns how the batched path chunked the meta-batch
    (`ChunkPlan.to_dict`), or None when it did not."""
    from tqdm.auto import tqdm

    config = run.config
    meta_gradient = training_step(config, state.algorithm, says=run.dist.is_main)
    last_save, record = time.monotonic(), None
    bar = tqdm(total=config.train.iterations, initial=state.iteration, desc=config.name,
               disable=not (run.progress and run.dist.is_main), dynamic_ncols=True)
    with bar, stop.deferred():
        reason = _agree_stop(run, state, stop)  # resumed with its minutes used up
        while reason is None and state.iteration < config.train.iterations:
            record = _meta_step(run, state, meta_gradient)
            _show(bar, record)
            saved, error = on_rank0(run.dist, _record, run, state, record, last_save)
            last_save = time.monotonic() if saved else last_save
            trackers.sync(state.history)  # logging.backends: copies of the new records
            reason = _agree_stop(run, state, stop, error)
        if reason is not None:
            _stop_early(run, state, reason, record)
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
    try:  # this process's part; a failure on any rank stops them all before the all-reduce
        outcomes = meta_gradient(batch, config.algorithm.train_steps)
        loss = torch.stack([o.loss for o in outcomes]).mean().item()
        check_meta_loss(loss, state.iteration + 1, state.reference_loss, state.last_checkpoint,
                        config)
        error: Optional[Exception] = None
    except Exception as failure:  # noqa: BLE001 (re-raised by agree, here and everywhere)
        if not dist.enabled:
            raise
        error = failure
    if dist.enabled:
        agree([], dist, device, error)
        all_reduce_gradients(state.algorithm.parameters(), dist.world_size)
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


def _log_due(train_cfg: Any, done: int) -> bool:
    return bool(train_cfg.log_every) and (done % train_cfg.log_every == 0
                                          or done == train_cfg.iterations)


def _record(run: RunContext, state: TrainingState, record: Dict[str, Any],
            last_save: float) -> bool:
    """Logs, validates and checkpoints after a step as the config asks (rank 0); returns
    whether a checkpoint was written."""
    train_cfg, done = run.config.train, state.iteration
    logs, validates = _log_due(train_cfg, done), bool(
        train_cfg.eval_every and done % train_cfg.eval_every == 0)
    minutes = (time.monotonic() - last_save) / 60
    saved = bool(done == train_cfg.iterations
                 or (train_cfg.checkpoint_every and done % train_cfg.checkpoint_every == 0)
                 or (train_cfg.checkpoint_minutes and minutes >= train_cfg.checkpoint_minutes))
    if logs or validates or saved:
        check_run_folder(run.run_dir, done, train_cfg.iterations)
    if logs:
        log_record(run.run_dir, state.history, record)
    if validates:
        log_validation(state, run.config, run.device, run.run_dir, done)
    if saved:
        save_checkpoint(run.run_dir, state.checkpoint_payload(run.config))
        state.last_checkpoint = done
    return saved


def _stop_early(run: RunContext, state: TrainingState, reason: int | str,
                record: Optional[Dict[str, Any]]) -> None:
    """Ends meta-training for the agreed `reason` (a signal's number, "file" or "time"): rank 0
    checkpoints, unless this iteration's checkpoint is written, and at the time limit logs the
    last iteration; every process waits for it; after a signal each raises `RunInterrupted`,
    after the stop file `RunStopped`."""
    train_cfg, done = run.config.train, state.iteration

    def checkpoint() -> None:
        check_run_folder(run.run_dir, done, train_cfg.iterations)
        if state.last_checkpoint != done:
            save_checkpoint(run.run_dir, state.checkpoint_payload(run.config))
            state.last_checkpoint = done
        if reason == "time" and record is not None and train_cfg.log_every and not _log_due(
                train_cfg, done):
            log_record(run.run_dir, state.history, record)  # the last iteration's loss

    agree([], run.dist, run.device, on_rank0(run.dist, checkpoint)[1])
    if isinstance(reason, int):
        raise interrupted(reason, "iteration", run.run_dir, done, train_cfg.iterations, done)
    if reason == "file":
        raise stopped_by_file(run.run_dir, done, train_cfg.iterations)


def _agree_stop(run: RunContext, state: TrainingState, stop: StopSignals,
                error: Optional[Exception] = None) -> Optional[int | str]:
    """Why every process stops meta-training now: the number of a signal that any of them
    received, "file" when rank 0 found the run folder's `STOP_FILE`, "time" when rank 0's
    clock has used up `train.max_minutes`, else None. Rank 0's `error` stops them all
    (`distributed.agree`)."""
    limit = run.config.train.max_minutes
    late = run.dist.is_main and bool(limit) and state.train_seconds >= 60 * limit
    asked = run.dist.is_main and stop_asked(run.run_dir)
    number, by_file, out_of_time = agree([stop.received or 0, float(asked), float(late)],
                                         run.dist, run.device, error)
    if number:
        return int(number)
    return "file" if by_file else "time" if out_of_time else None
