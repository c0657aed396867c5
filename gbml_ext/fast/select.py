"""Which path runs a meta-learner: "auto" as a rule over the entries of `PATHS`.

The rule, for meta-training (evaluation never compiles under "auto": its few calls cannot pay
for compiling):

1. Only a path whose `unsupported(learner, device, training)` is None is a candidate, so "auto"
   never takes a path that cannot run the learner.
2. "compiled" when compiling pays: the run's expected meta-iterations (`iterations`, capped at
   `time_limit_s` over the step time) times the seconds a compiled step saves are at least
   `PAYBACK_MARGIN` times the compile time. The step times and compile time are
   `COMPILE_ESTIMATES`, per device type and whether the model has convolutions; where one of
   them is not measured (None) compiling is never taken to pay.
3. "batched" on CUDA, or on a CPU for models without convolutions: the batched path removes
   per-task launch and Python overhead, which dominates on a GPU and for small models, but on
   a CPU vmap turns each convolution into a grouped one, which runs at about half the dense
   throughput. Measured on 2 CPU threads (docs/performance.md, 2026-11-24): batched 4.2x the
   per-task speed on the synthetic linear model, but 0.5-0.8x on the Omniglot and
   mini-ImageNet CNN4s, and 0.4-0.6x for evaluating them.
4. "per-task" otherwise (it runs every learner).

An explicitly asked path that cannot run the learner is refused with its reason.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from .paths import PATHS
from .support import PER_TASK_HINT

__all__ = ["COMPILE_ESTIMATES", "PATH_CHOICES", "PAYBACK_MARGIN", "CompileEstimate", "choose_path",
           "compiling_pays", "has_convolutions"]

PATH_CHOICES = ("auto", *PATHS.names())
_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class CompileEstimate:
    """What compiling costs and saves on one kind of run (seconds; None: not measured).

    Attributes:
        compile_s: the compiled path's first meta-iteration, compiling included, with a cold
            inductor cache (results.json's `first_call_s`).
        step_s: a runner meta-iteration on the path "auto" takes otherwise (batched or
            per-task): results.json's `seconds_per_iteration`.
        compiled_step_s: a runner meta-iteration on the compiled path, after compiling.
        source: the command and configuration the numbers come from.
    """

    compile_s: Optional[float] = None
    step_s: Optional[float] = None
    compiled_step_s: Optional[float] = None
    source: str = "to be measured"

    def saving_s(self) -> Optional[float]:
        """Seconds a compiled meta-iteration saves (None: not measured)."""
        if self.step_s is None or self.compiled_step_s is None:
            return None
        return self.step_s - self.compiled_step_s


# Keyed by (device type, the model has convolutions). Measured through the runner, so that
# sampling and the optimizer step are counted: `python -m benchmarks.runner_speed` (config s,
# models without convolutions), or gbml-train on config a with algorithm.path=compiled and
# with the path "auto" takes otherwise (models with convolutions). The benchmark's peers
#   python -m benchmarks.inner_loop --device DEVICE --configs s,a --peers compiled,batched,gbml_ext
# time the meta-step alone. Where a number is None (not measured yet) "auto" does not compile.
_TO_MEASURE = "to be measured: python -m benchmarks.inner_loop --peers compiled,batched,gbml_ext"
COMPILE_ESTIMATES: Dict[Tuple[str, bool], CompileEstimate] = {
    # Measured 2026-12-07 06:51-06:58 UTC on an AMD EPYC, one thread, commit 20ee32a, through
    # the runner (docs/data/runner-s-2026-12-07.json): python -m benchmarks.runner_speed
    # --rounds 3 --baseline 7922e7b. gbml-train on config s: batched 1.49 ms a meta-iteration,
    # compiled 1.11 ms (warm cache), its first meta-step 9.8 s with a cold inductor cache. A
    # saving of 0.39 ms a step against 9.8 s: "auto" compiles runs of ~51,000 steps or more.
    ("cpu", False): CompileEstimate(compile_s=9.8, step_s=0.00149, compiled_step_s=0.00111,
                                    source="benchmarks.runner_speed, 2026-12-07"),
    ("cpu", True): CompileEstimate(source=f"{_TO_MEASURE} --configs a"),
    ("cuda", False): CompileEstimate(source=f"{_TO_MEASURE} --configs s --device cuda"),
    ("cuda", True): CompileEstimate(source=f"{_TO_MEASURE} --configs a --device cuda"),
}
# Compile only when the expected saving is at least this many times the compile time: the
# estimates come from one config per kind, and a run's model and meta-batch differ from it.
# A choice, not a measurement.
PAYBACK_MARGIN = 2.0


def has_convolutions(module: nn.Module) -> bool:
    """Whether any submodule is a convolution (what runs slower batched on a CPU).

    Arguments:
        module: a model or a meta-learner wrapping one.

    Example:
        >>> import gbml_ext
        >>> has_convolutions(gbml_ext.nn.omniglot_cnn4(ways=5, hidden=4))
        True
        >>> has_convolutions(gbml_ext.MAML(torch.nn.Linear(8, 1)))
        False
    """
    return any(isinstance(m, _CONVOLUTIONS) for m in module.modules())


def compiling_pays(estimate: CompileEstimate, iterations: Optional[int],
                   time_limit_s: Optional[float] = None) -> bool:
    """Whether `iterations` meta-iterations (at most `time_limit_s` seconds of them) save at
    least `PAYBACK_MARGIN` times the compile time. False when anything is unknown.

    Example:
        >>> estimate = CompileEstimate(compile_s=20.0, step_s=1e-3, compiled_step_s=1e-4)
        >>> compiling_pays(estimate, 300), compiling_pays(estimate, 60_000)
        (False, True)
        >>> compiling_pays(estimate, 60_000, time_limit_s=10.0)   # 10 s: 10,000 steps at most
        False
        >>> compiling_pays(CompileEstimate(), 10**9)              # not measured
        False
    """
    saving = estimate.saving_s()
    if not iterations or saving is None or saving <= 0 or estimate.compile_s is None:
        return False
    expected = float(iterations)
    if time_limit_s and estimate.step_s:
        expected = min(expected, math.floor(time_limit_s / estimate.step_s))
    return expected * saving >= PAYBACK_MARGIN * estimate.compile_s


def _device_of(algorithm: nn.Module, device: Optional[torch.device | str]) -> torch.device:
    if device is None:
        parameters = list(algorithm.parameters())
        return parameters[0].device if parameters else torch.device("cpu")
    return torch.device(device)


def choose_path(requested: str, algorithm: nn.Module,
                device: Optional[torch.device | str] = None, training: bool = False,
                iterations: Optional[int] = None, time_limit_s: Optional[float] = None) -> str:
    """Resolves a requested path to the name of an entry of `PATHS` (see the module doc).

    Arguments:
        requested: "auto" or a name in `PATHS` ("per-task", "batched", "compiled").
        algorithm: the meta-learner.
        device: where it runs; None: the device of its first parameter.
        training: resolve the path of meta-training steps (else of evaluation).
        iterations: the meta-iterations the run expects (None: unknown, so "auto" does not
            compile).
        time_limit_s: the run's time limit (train.max_minutes), which caps `iterations`.

    Raises:
        ValueError: an unknown `requested`.
        BatchedPathUnsupported: a path asked for that cannot run the algorithm, with its reason
            (the path's `refusal`: `CompiledPathUnsupported`, a subclass, for the compiled
            path).

    Example:
        >>> import gbml_ext
        >>> choose_path("auto", gbml_ext.MAML(torch.nn.Linear(8, 1)), "cpu")
        'batched'
        >>> choose_path("auto", gbml_ext.Reptile(torch.nn.Linear(8, 1)), "cpu")
        'per-task'
    """
    if requested not in PATH_CHOICES:
        raise ValueError(f"path {requested!r} is unknown; choose one of "
                         f"{', '.join(PATH_CHOICES)}.")
    where = _device_of(algorithm, device)
    if requested != "auto":
        path = PATHS[requested]
        reason = path.unsupported(algorithm, where, training)
        if reason is not None:
            raise path.refusal(f"{reason} {PER_TASK_HINT}")
        return requested
    usable = [name for name, path in PATHS.items()
              if path.unsupported(algorithm, where, training) is None]
    convolutions = has_convolutions(algorithm)
    estimate = COMPILE_ESTIMATES.get((where.type, convolutions), CompileEstimate())
    if training and "compiled" in usable and compiling_pays(estimate, iterations, time_limit_s):
        return "compiled"
    if "batched" in usable and (where.type == "cuda" or not convolutions):
        return "batched"
    return "per-task"

