"""The runner's guards: stop cleanly on SIGINT / SIGTERM, and refuse a diverging inner loop
with a message that names the last good checkpoint and the command that continues from it."""
from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

import torch

from .. import engine
from .config import Config
from .distributed import DistributedContext
from .errors import (
    MetaLossDiverged,
    NonFiniteLossError,
    OutOfMemory,
    RunInterrupted,
    RunStopped,
)

__all__ = ["OUT_OF_MEMORY", "STOP_FILE", "StopSignals", "check_evaluation", "check_meta_loss",
           "divergence_message", "explain_divergence", "is_out_of_memory", "out_of_memory",
           "unadapted_loss"]

# What running out of memory raises: Python's MemoryError (the CPU) and torch's
# OutOfMemoryError (a GPU); torch's CPU allocator raises a RuntimeError (`is_out_of_memory`).
OUT_OF_MEMORY = (MemoryError, torch.OutOfMemoryError)
_CPU_ALLOCATOR_FAILED = "DefaultCPUAllocator: can't allocate memory"
# A file in a run folder that asks the run to checkpoint and stop at the end of its current
# meta-iteration, as SIGTERM does; its first line is the reason (gbml-tune prunes a trial so).
STOP_FILE = "stop"


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` says that memory ran out: one of `OUT_OF_MEMORY`, or the RuntimeError of
    torch's CPU allocator.

    Example:
        >>> is_out_of_memory(MemoryError()), is_out_of_memory(RuntimeError("shape mismatch"))
        (True, False)
    """
    return isinstance(error, OUT_OF_MEMORY) or (
        isinstance(error, RuntimeError) and _CPU_ALLOCATOR_FAILED in str(error))


class StopSignals:
    """Turns SIGINT / SIGTERM, or the run folder's `STOP_FILE`, into a request to checkpoint
    and stop at the end of the current meta-iteration; a second signal stops at once.

    `received` is the signal's number, `STOP_FILE` for the file, or None.

    Example:
        >>> import tempfile
        >>> folder, stop = Path(tempfile.mkdtemp()), StopSignals()
        >>> stop.check_file(folder, DistributedContext(), torch.device("cpu")), stop.received
        (False, None)
        >>> _ = (folder / STOP_FILE).write_text("pruned by the tuner")
        >>> stop.check_file(folder, DistributedContext(), torch.device("cpu"))
        True
        >>> error = stop.error(folder, 7, 10)
        >>> "(pruned by the tuner); stopped at iteration 7 of 10" in str(error), error.exit_code
        (True, 3)
        >>> (folder / STOP_FILE).exists()
        False
    """

    def __init__(self) -> None:
        self.received: Optional[int | str] = None
        self._previous: Dict[signal.Signals, Any] = {}

    def check_file(self, run_dir: Path, dist: DistributedContext, device: torch.device) -> bool:
        """Whether `run_dir/STOP_FILE` asks the run to stop (then `received` is `STOP_FILE`).
        The main process looks; with several processes its answer is broadcast, so that every
        rank stops at the same iteration."""
        asked = dist.is_main and (Path(run_dir) / STOP_FILE).exists()
        if dist.enabled:
            import torch.distributed

            flag = torch.tensor([float(asked)], device=device)
            torch.distributed.broadcast(flag, src=0)
            asked = bool(flag.item())
        if asked and self.received is None:
            self.received = STOP_FILE
        return asked

    def error(self, run_dir: Path, done: int, iterations: int) -> RunInterrupted:
        """The error of a run stopped at iteration `done` once its checkpoint is written:
        `RunInterrupted` naming the signal, or `RunStopped` giving the stop file's reason (the
        file is removed, so that `--resume` continues the run)."""
        if self.received != STOP_FILE:
            name = signal.Signals(int(self.received or 0)).name
            return RunInterrupted(
                f"{name} at iteration {done} of {iterations}; a checkpoint is in {run_dir}. "
                f"Continue with the same command and --resume.", int(self.received or 0))
        path = Path(run_dir) / STOP_FILE
        try:
            reason = (path.read_text(errors="replace").strip().splitlines() or [""])[0]
        except OSError:
            reason = ""
        path.unlink(missing_ok=True)
        return RunStopped(f"{path} asked the run to stop{f' ({reason})' if reason else ''}; "
                          f"stopped at iteration {done} of {iterations} with a checkpoint in "
                          f"{run_dir}. Continue with the same command and --resume.")

    def _handle(self, number: int, frame: Any) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = number

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopSignals"]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for number in (signal.SIGINT, signal.SIGTERM):
            self._previous[number] = signal.signal(number, self._handle)
        try:
            yield self
        finally:
            for number, handler in self._previous.items():
                signal.signal(number, handler)


def unadapted_loss(algorithm, tasks: Sequence) -> float:
    """Mean query loss of the meta-batch before any adaptation: the scale a meta-loss is
    compared with to detect an exploding inner loop."""
    losses = [engine.adaptation_curve(algorithm, task, 0)[0].loss.item() for task in tasks]
    return sum(losses) / len(losses)


def check_meta_loss(loss: float, iteration: int, reference: Optional[float],
                    last_checkpoint: int, config: Config) -> None:
    """Raises `MetaLossDiverged` if the meta-loss is not finite or above
    `train.explode_factor` times `reference` (the unadapted loss of the first meta-batch).

    The message blames the inner loop only at the first iteration, where the meta-parameters
    are still the initial ones; later it names both rates. `train` replaces it with one that
    says which loop diverged (`explain_divergence`)."""
    factor = config.train.explode_factor
    if math.isfinite(loss) and loss <= factor * max(reference if reference is not None
                                                    else math.inf, 1e-12):
        return
    outer = False if iteration == 1 else None
    raise MetaLossDiverged(divergence_message(loss, iteration, reference, last_checkpoint,
                                              config, outer), loss, iteration)


def divergence_message(loss: float, iteration: int, reference: Optional[float],
                       last_checkpoint: int, config: Config, outer: Optional[bool],
                       unadapted: Optional[float] = None) -> str:
    """What diverged and how to continue.

    Arguments:
        loss, iteration: the meta-loss and the meta-iteration (from 1) it belongs to.
        reference: the unadapted query loss of the first meta-batch.
        last_checkpoint: the iteration of the newest checkpoint (0: none); a checkpoint of
            iteration c holds the meta-parameters after c outer steps.
        outer: True if the meta-parameters themselves diverged (the outer step, train.lr),
            False if only the inner loop did (algorithm.inner_lr), None if unknown.
        unadapted: the loss before adaptation at the current meta-parameters, if measured.
    """
    factor = config.train.explode_factor
    what = ("not finite" if not math.isfinite(loss) or reference is None
            else f"{loss / max(reference, 1e-12):.3g}x the unadapted loss {reference:.3g} "
                 f"(train.explode_factor = {factor:g})")
    head = f"meta-loss {loss:.4g} at iteration {iteration} of {config.name} is {what}"
    measured = "" if unadapted is None else f" (the loss before adapting is {unadapted:.4g})"
    inner_lr, outer_lr = config.algorithm.inner_lr / 10, config.train.lr / 10
    if outer is False:
        cause = (f"the inner loop diverges{measured}" if unadapted is not None else
                 "the inner loop diverges (the meta-parameters are still the initial ones)"
                 if iteration == 1 else "the inner loop diverges")
        if last_checkpoint:
            how = (f"Continue from the checkpoint of iteration {last_checkpoint} with a lower "
                   f"rate: `--resume --allow-change algorithm.inner_lr "
                   f"algorithm.inner_lr={inner_lr:g}`, or start over with --overwrite.")
        else:
            how = (f"No checkpoint was written before it: start over with a lower rate, e.g. "
                   f"`--overwrite algorithm.inner_lr={inner_lr:g}`.")
    elif outer:
        cause = (f"the meta-parameters themselves diverge{measured}: the outer step "
                 f"train.lr = {config.train.lr:g} is too large")
        if last_checkpoint and last_checkpoint < iteration - 1:
            how = (f"The checkpoint of iteration {last_checkpoint} is from "
                   f"{iteration - 1 - last_checkpoint} outer steps earlier: continue from it "
                   f"with `--resume --allow-change train.lr train.lr={outer_lr:g}`, or start "
                   f"over with `--overwrite train.lr={outer_lr:g}`.")
        else:
            held = (f"The checkpoint of iteration {last_checkpoint} already holds these "
                    f"meta-parameters: start" if last_checkpoint else "Start")
            how = f"{held} over with a lower rate, e.g. `--overwrite train.lr={outer_lr:g}`."
    else:
        cause = "the inner or the outer loop diverges"
        how = (f"Start over with a lower rate: `--overwrite algorithm.inner_lr={inner_lr:g}` "
               f"(the inner step) or `--overwrite train.lr={outer_lr:g}` (the outer step).")
    return f"{head}: {cause}. {how}"


def explain_divergence(error: MetaLossDiverged, algorithm: torch.nn.Module,
                       tasks: Callable[[], Sequence[Any]], reference: Optional[float],
                       last_checkpoint: int, config: Config) -> NonFiniteLossError:
    """The error to raise for a diverged meta-loss, once it is known which loop diverged: the
    meta-parameters diverged if their own loss before adaptation, on fresh `tasks()`, is not
    finite or above `train.explode_factor` times `reference`; otherwise the inner loop did."""
    if error.iteration == 1:
        return error  # the meta-parameters are the initial ones: check_meta_loss said so
    if not all(torch.isfinite(p).all() for p in algorithm.parameters()):
        unadapted = math.inf
    else:
        unadapted = unadapted_loss(algorithm, tasks())
    factor = config.train.explode_factor
    limit = factor * max(reference if reference is not None else math.inf, 1e-12)
    outer = not math.isfinite(unadapted) or unadapted > limit
    return MetaLossDiverged(divergence_message(error.loss, error.iteration, reference,
                                               last_checkpoint, config, outer, unadapted),
                            error.loss, error.iteration)


def check_evaluation(evaluation: Dict[str, Any], factor: float, where: str) -> None:
    """Raises `NonFiniteLossError` if the evaluated query loss is not finite; warns (on stderr)
    if it ends above `factor` times the loss before adaptation, which is a finding to report
    (e.g. a model evaluated for more steps than it was trained for), not an error."""
    before, after = evaluation["loss_by_step"][0]["mean"], evaluation["loss"]["mean"]
    if not math.isfinite(after):
        raise NonFiniteLossError(
            f"{where}: the query loss after {evaluation['steps']} inner steps is {after} (it was "
            f"{before:.4g} before adapting): the inner loop diverges at test time. Lower "
            f"algorithm.inner_lr or algorithm.test_steps; `gbml-eval RUN_DIR --steps K` "
            f"re-evaluates a trained run without retraining.")
    if after > factor * max(before, 1e-12):
        print(f"gbml_ext: warning: {where}: the query loss grows from {before:.4g} before "
              f"adapting to {after:.4g} after {evaluation['steps']} steps (the inner loop "
              f"diverges at test time).", file=sys.stderr)


def out_of_memory(error: BaseException, config: Config, device: torch.device, stage: str,
                  last_checkpoint: int) -> OutOfMemory:
    """The one-line error for memory that ran out during `stage` ("meta-training" or "the final
    evaluation"): which memory, at which settings, what to lower, and the checkpoint kept.

    Example:
        >>> from gbml_ext.runner.config import load_config
        >>> str(out_of_memory(MemoryError(), load_config(None), torch.device("cpu"),
        ...                   "meta-training", 0))[:57]
        'out of CPU memory in meta-training at train.meta_batch=16'
    """
    what = "GPU" if isinstance(error, torch.OutOfMemoryError) or device.type == "cuda" else "CPU"
    data, algorithm = config.data, config.algorithm
    at = (f"train.meta_batch={config.train.meta_batch}, model.name={config.model.name}, "
          f"data.ways={data.ways}, data.shots={data.shots}, data.queries={data.queries}")
    if stage == "meta-training":
        at += f", algorithm.train_steps={algorithm.train_steps}"
        fix = ("lower train.meta_batch, or set algorithm.tasks_per_chunk (e.g. "
               f"{max(1, config.train.meta_batch // 4)}) or train.memory_budget_mb")
    else:
        at = f"algorithm.test_steps={algorithm.test_steps}, model.name={config.model.name}"
        fix = "lower algorithm.test_steps (gbml-eval RUN_DIR --steps K re-evaluates a trained run)"
        if device.type == "cuda":
            fix += ", or evaluate on the CPU with gbml-eval RUN_DIR --device cpu"
    kept = (f"the checkpoint of iteration {last_checkpoint} is kept; continue with the same "
            f"command, the change and --resume" if last_checkpoint
            else "no checkpoint was written yet; start again with the change and --overwrite")
    return OutOfMemory(f"out of {what} memory in {stage} at {at}: {fix}; {kept}.")

