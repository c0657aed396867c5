"""A run that reaches a limit of its machine: memory that ran out (`out_of_memory`), worded
with the size asked for, the keys that set it and advice that works; a disk that is full, or
a folder that turned read-only, while the run writes (`cannot_write_run`)."""
from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Optional

import torch

from ..data.synthetic import SYNTHETIC_SOURCES
from .config import Config
from .errors import OutOfMemory, UnwritableError
from .evaluate import run_path

__all__ = ["NO_SPACE", "cannot_write_run", "out_of_memory"]

# The errors of a file system that stops taking a run's files: full, over quota, read-only.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def cannot_write_run(error: OSError, phase: str, run_dir: Path, done: int, iterations: int,
                     checkpoint: int) -> UnwritableError:
    """The one-line error for a file the run could not write during `phase` ("starting",
    "meta-training" or "evaluating"): the file, the reason, how far training got and which
    checkpoint is kept, and how to continue once there is space.

    Arguments:
        error: the OSError (one of `NO_SPACE`); its `filename` is the file, when it names one.
        run_dir: the run folder; done, iterations: meta-iterations done and asked for;
        checkpoint: the iteration of the newest checkpoint written (0: none).

    Example:
        >>> str(cannot_write_run(OSError(errno.ENOSPC, "No space left on device", "r/a.json"),
        ...                      "evaluating", Path("r"), 6, 6, 6))  # doctest: +ELLIPSIS
        'cannot write r/a.json (No space left on device): training finished (6 of 6 ...'
    """
    path = Path(error.filename) if error.filename else run_dir
    what = f"cannot write {error.filename or f'a file in {run_dir}'} ({error.strerror or error})"
    kept = (f"the checkpoint of iteration {checkpoint} is kept" if checkpoint
            else "no checkpoint was written")
    fix = "Free space in (or make writable) its folder" if error.errno != errno.EROFS else (
        "Make its folder writable, or move the run folder somewhere writable and set output_dir")
    if phase == "evaluating":
        ended = "finished" if done >= iterations else "ended by train.max_minutes"
        return UnwritableError(
            f"{what}: training {ended} ({done} of {iterations} meta-iterations) and {kept}, but "
            f"the results were not written. {fix}, then the same command with --resume "
            f"evaluates it again and writes them.", path)
    where = (f"at iteration {done} of {iterations}: training stopped there" if phase ==
             "meta-training" else "while the run was starting, before any meta-iteration")
    return UnwritableError(f"{what} {where}; {kept}. {fix}, then continue with the same "
                           f"command and --resume.", path)


def out_of_memory(error: BaseException, config: Config, device: torch.device, phase: str,
                  checkpoint: int, algorithm: Optional[torch.nn.Module] = None,
                  processes: int = 1) -> OutOfMemory:
    """The one-line error for memory that ran out during `phase` ("starting": building the
    run, "meta-training" or "evaluating": the final evaluation): the size that could not be
    allocated, the keys that set it, and only advice that works: keys `--resume` accepts, or
    a new run for the keys it refuses.

    Arguments:
        error: what ran out (`guards.is_out_of_memory`).
        checkpoint: the iteration of the newest checkpoint (0: none).
        algorithm: the learner, whose path (`run_path`) says whether chunking applies.
        processes: the processes that share the meta-batch.

    Example:
        >>> from gbml_ext.runner.config import load_config
        >>> str(out_of_memory(MemoryError(), load_config(None), torch.device("cpu"),
        ...                   "meta-training", 0))[:57]
        'out of CPU memory in meta-training at train.meta_batch=16'
    """
    what = "GPU" if isinstance(error, torch.OutOfMemoryError) or device.type == "cuda" else "CPU"
    size = _allocation(error)
    sized = f"{_task_keys(config)}, {_model_keys(config)}"
    if phase == "starting":
        return OutOfMemory(
            f"out of {what} memory building the run{size}: its task sources and model are "
            f"sized by {sized}. Nothing was trained; lower the value that is too large and start "
            f"the run again (with --overwrite if its folder holds a run: resume accepts no "
            f"change of these keys).")
    kept = (f"the checkpoint of iteration {checkpoint} is kept" if checkpoint
            else "no checkpoint was written yet")
    resume = ("continue it with the same command, the change and --resume" if checkpoint
              else "start again with the change and --overwrite")
    if phase == "evaluating":
        fix = (f"Lower algorithm.test_steps, which --resume accepts: {kept}; {resume}" +
               ("; or evaluate on the CPU with gbml-eval RUN_DIR --device cpu"
                if device.type == "cuda" else ""))
        return OutOfMemory(f"out of {what} memory in the final evaluation at "
                           f"algorithm.test_steps={config.algorithm.test_steps}, {sized}{size}. "
                           f"{fix}.")
    batch = config.train.meta_batch
    at = f"train.meta_batch={batch}" + (f" ({batch // processes} per process)"
                                        if processes > 1 else "")
    new_run = ("a new run with a lower train.meta_batch or algorithm.train_steps (resume "
               "refuses a change of either; --overwrite or another output_dir)")
    chunk = _chunk_advice(config, algorithm, batch // processes)
    fix = (f"Set {chunk}, which --resume accepts ({kept}: {resume}); or start {new_run}"
           if chunk else f"Start {new_run}; {kept}")
    return OutOfMemory(f"out of {what} memory in meta-training at {at}, algorithm.train_steps="
                       f"{config.algorithm.train_steps}, {sized}{size}. {fix}.")


def _chunk_advice(config: Config, algorithm: Optional[torch.nn.Module],
                  local_batch: int) -> Optional[str]:
    """The chunking keys to offer, where chunking can still lower the memory: on the batched
    path, with chunks of more than one task."""
    if algorithm is None or run_path(config.algorithm, algorithm, training=True) != "batched":
        return None
    chunk = config.algorithm.tasks_per_chunk or local_batch
    if chunk <= 1:
        return None
    return (f"algorithm.tasks_per_chunk={max(1, chunk // 4)} (fewer tasks adapted at once) or "
            f"train.memory_budget_mb=MB")


def _task_keys(config: Config) -> str:
    """The keys that size a task: a synthetic source's options, or a dataset's ways, shots and
    queries."""
    data = config.data
    source = SYNTHETIC_SOURCES.get(data.source)
    if source is not None:
        return ", ".join(f"data.options.{key}={value}"
                         for key, value in source.sizes(data.options).items())
    return f"data.ways={data.ways}, data.shots={data.shots}, data.queries={data.queries}"


def _model_keys(config: Config) -> str:
    model = config.model
    keys = f"model.name={model.name}"
    if model.options:
        keys += f", model.options={model.options}"
    if model.linnet_depth > 1:
        keys += f", model.linnet_depth={model.linnet_depth}"
    return keys


def _allocation(error: BaseException) -> str:
    """" (N GiB could not be allocated)" from the allocator's message, or ""."""
    text = str(error)
    cpu = re.search(r"tried to allocate (\d+) bytes", text)
    if cpu:
        amount, unit = float(cpu.group(1)), "bytes"
        for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
            if amount < 1024 or unit == "EiB":
                break
            amount /= 1024
        return f" ({amount:.3g} {unit} could not be allocated)"
    cuda = re.search(r"Tried to allocate ([\d.]+ [KMGTP]?i?B)", text)
    return f" ({cuda.group(1)} could not be allocated)" if cuda else ""
