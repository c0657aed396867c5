"""The runner's guards: stop cleanly on SIGINT / SIGTERM in every phase of a run, refuse a
diverging inner loop with a message that names the last good checkpoint and the command that
continues from it, and stop a run whose folder vanished. (Memory or disk space that ran out:
`limits`.)"""
from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, cast

import torch

from .. import engine
from ..data.tasks import Task
from .config import Config
from .errors import (
    MetaLossDiverged,
    NonFiniteLossError,
    RunFolderError,
    RunInterrupted,
)
from .rundir import CONFIG_FILE, LOCK_FILE, METRICS_FILE

__all__ = ["OUT_OF_MEMORY", "SignalStop", "StopSignals", "check_evaluation", "check_meta_loss",
           "check_run_folder", "divergence_message", "explain_divergence", "interrupted",
           "is_out_of_memory", "unadapted_loss"]

# What running out of memory raises: Python's MemoryError (the CPU) and torch's
# OutOfMemoryError (a GPU); torch's CPU allocator raises a RuntimeError (`is_out_of_memory`).
OUT_OF_MEMORY = (MemoryError, torch.OutOfMemoryError)
_CPU_ALLOCATOR_FAILED = "DefaultCPUAllocator: can't allocate memory"
def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` says that memory ran out: one of `OUT_OF_MEMORY`, or the RuntimeError of
    torch's CPU allocator.

    Example:
        >>> is_out_of_memory(MemoryError()), is_out_of_memory(RuntimeError("shape mismatch"))
        (True, False)
    """
    return isinstance(error, OUT_OF_MEMORY) or (
        isinstance(error, RuntimeError) and _CPU_ALLOCATOR_FAILED in str(error))


class SignalStop(KeyboardInterrupt):
    """A SIGINT or SIGTERM that stops the run at once: one that arrived outside the
    meta-iterations, or a second one. `train` words it as a `RunInterrupted`."""

    def __init__(self, signal_number: int):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


class StopSignals:
    """Turns SIGINT / SIGTERM into a stop: while `deferred` (the meta-iterations) the first one
    is kept in `received`, for the loop to checkpoint and stop at the end of its iteration;
    otherwise, and for a second one, the handler raises `SignalStop` at once.

    Example:
        >>> stop = StopSignals()
        >>> with stop.installed(), stop.deferred():
        ...     signal.raise_signal(signal.SIGTERM)
        >>> signal.Signals(stop.received).name
        'SIGTERM'
    """

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._deferring = False
        self._previous: Dict[signal.Signals, Any] = {}

    def _handle(self, number: int, frame: Any) -> None:
        if self._deferring and self.received is None:
            self.received = number
            return
        self.received = self.received or number
        raise SignalStop(number)

    @contextlib.contextmanager
    def deferred(self) -> Iterator["StopSignals"]:
        """Within the block, the first signal is only kept in `received`."""
        self._deferring = True
        try:
            yield self
        finally:
            self._deferring = False

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopSignals"]:
        """Handles SIGINT and SIGTERM within the block (in the main thread only: elsewhere
        signals cannot be handled, and the block runs as it is)."""
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


def interrupted(signal_number: int, phase: str, run_dir: Path, done: int, iterations: int,
                checkpoint: int) -> RunInterrupted:
    """The one-line error of a run stopped by a signal in `phase`: "iteration" (at the end of
    a meta-iteration, checkpointed), "meta-training" (at once: a second signal), "starting"
    or "evaluating" (the final evaluation), after `done` of `iterations` meta-iterations, the
    newest checkpoint being of iteration `checkpoint` (0: none).

    Example:
        >>> str(interrupted(15, "evaluating", Path("runs/a"), 6, 6, 6))  # doctest: +ELLIPSIS
        'SIGTERM during the final evaluation, after 6 of 6 meta-iterations; the checkpoint ...'
    """
    name = signal.Signals(signal_number).name
    if phase == "starting":
        return RunInterrupted(f"{name} while the run was starting, before any meta-iteration; "
                              f"nothing in {run_dir} was lost. Start it with the same command "
                              f"and --resume (which continues a checkpoint, if there is one).",
                              signal_number)
    kept = (f"the checkpoint of iteration {checkpoint} in {run_dir} is kept" if checkpoint
            else f"no checkpoint was written in {run_dir} yet")
    if phase == "evaluating":
        return RunInterrupted(f"{name} during the final evaluation, after {done} of {iterations} "
                              f"meta-iterations; {kept}. The same command with --resume "
                              f"evaluates it and writes the results.", signal_number)
    what = (f"{name} at iteration {done} of {iterations}" if phase == "iteration" else
            f"{name} again at iteration {done} of {iterations}: stopped at once")
    return RunInterrupted(f"{what}; {kept}. Continue with the same command and --resume.",
                          signal_number)


def check_run_folder(run_dir: Path, done: int, iterations: int) -> None:
    """Raises `RunFolderError` if the run folder, or a file the run wrote there as it started
    (config.json, metrics.jsonl, its lock), has vanished: someone deleted it while the run
    trained, and writing on would make a folder that looks like a run of its own.

    Arguments:
        run_dir: the run folder; done, iterations: where the run is, for the message.

    Example:
        >>> check_run_folder(Path("/no/such/run"), 7, 20)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gbml_ext.runner.errors.RunFolderError: the run folder /no/such/run was deleted while ...
    """
    where = f"at iteration {done} of {iterations}"
    if not run_dir.is_dir():
        raise RunFolderError(f"the run folder {run_dir} was deleted while the run trained; it "
                             f"stopped {where}, wrote nothing more and is not done. Start it "
                             f"again with the same command to have it.")
    missing = [name for name in (CONFIG_FILE, METRICS_FILE, LOCK_FILE)
               if not (run_dir / name).is_file()]
    if missing:
        raise RunFolderError(f"{' and '.join(missing)} vanished from {run_dir} while the run "
                             f"trained; it stopped {where}, wrote nothing more and is not done. "
                             f"Continue it from its checkpoint with the same command and "
                             f"--resume, or start over with --overwrite.")


def unadapted_loss(algorithm: torch.nn.Module, tasks: Sequence[Task]) -> float:
    """Mean query loss of the meta-batch before any adaptation: the scale a meta-loss is
    compared with to detect an exploding inner loop."""
    learner = cast(engine.Algorithm, algorithm)  # the run's meta-learner
    losses = [engine.adaptation_curve(learner, task, 0)[0].loss.item() for task in tasks]
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
