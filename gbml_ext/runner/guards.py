"""The runner's guards: stop cleanly on SIGINT / SIGTERM, and refuse a diverging inner loop
with a message that names the last good checkpoint and the command that continues from it."""
from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
from typing import Any, Dict, Iterator, Optional, Sequence

from .. import engine
from .config import Config
from .errors import NonFiniteLossError

__all__ = ["StopSignals", "check_evaluation", "check_meta_loss", "unadapted_loss"]


class StopSignals:
    """Turns SIGINT / SIGTERM into a request to checkpoint and stop at the end of the current
    meta-iteration; a second signal stops at once."""

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._previous: Dict[signal.Signals, Any] = {}

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
    """Raises `NonFiniteLossError` if the meta-loss is not finite or above
    `train.explode_factor` times `reference` (the unadapted loss of the first meta-batch)."""
    factor = config.train.explode_factor
    reference = reference if reference is not None else math.inf
    if math.isfinite(loss) and loss <= factor * max(reference, 1e-12):
        return
    what = ("not finite" if not math.isfinite(loss)
            else f"{loss / reference:.3g}x the unadapted loss {reference:.3g} (train.explode_factor"
                 f" = {factor:g})")
    lower = config.algorithm.inner_lr / 10
    if last_checkpoint:
        how = (f"The checkpoint of iteration {last_checkpoint} is from before it: continue "
               f"from it with a lower rate, e.g. `--resume --allow-change algorithm.inner_lr "
               f"algorithm.inner_lr={lower:g}`, or start over with --overwrite and a lower rate.")
    else:
        how = (f"No checkpoint was written before it: start over with a lower rate, e.g. "
               f"`--overwrite algorithm.inner_lr={lower:g}` (or lower train.lr).")
    raise NonFiniteLossError(f"meta-loss {loss:.4g} at iteration {iteration} of {config.name} is "
                             f"{what}: the inner loop diverges. {how}")


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
