"""Where a runner meta-iteration's time goes: its parts, timed inside the runner's own step.

Builds a run of CONFIG (with `key=value` overrides) as `gbml-train` does
(`gbml_ext.runner.state.build_run`, the path from `gbml_ext.runner.evaluate.training_step`),
then calls the runner's meta-iteration itself (`gbml_ext.runner.loop._meta_step`) with its parts
wrapped in timers: drawing the meta-batch, `zero_grad`, the meta-step on the run's path and the
optimizer's step; "the rest" is what the iteration spends outside them (reading the meta-loss,
the divergence check, the record). Prints the median milliseconds of each over `--iterations`
iterations (after `--warmup`, which includes compiling on the compiled path).

    python -m benchmarks.loop_parts experiments/configs/synthetic/linreg_shallow.toml \\
        algorithm.path=compiled --threads 1 --json parts.json

Run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

__all__ = ["PARTS", "main", "time_parts"]

PARTS = ("draw the meta-batch", "zero_grad", "meta-step", "optimizer step", "the rest",
         "whole iteration")


def _timed(function: Callable[..., Any], into: List[float]) -> Callable[..., Any]:
    """`function`, appending the seconds each call takes to `into`."""
    def timed(*args: Any, **kwargs: Any) -> Any:
        tic = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - tic)
    return timed


def time_parts(config_path: Path, overrides: Sequence[str], iterations: int, warmup: int
               ) -> Dict[str, List[float]]:
    """Seconds of each of `PARTS`, per iteration, of `iterations` calls of the runner's
    `_meta_step` after `warmup` more."""
    from gbml_ext.runner import loop
    from gbml_ext.runner.config import load_config
    from gbml_ext.runner.evaluate import training_step
    from gbml_ext.runner.start import join_run
    from gbml_ext.runner.state import build_run

    config = load_config(config_path, list(overrides))
    run = join_run(config, (), progress=False)
    state = build_run(config, run.device)
    spent: Dict[str, List[float]] = {part: [] for part in PARTS[:4]}
    meta_gradient = _timed(training_step(config, state.algorithm, says=False),
                           spent["meta-step"])
    state.optimizer.zero_grad = _timed(state.optimizer.zero_grad,  # type: ignore[method-assign]
                                       spent["zero_grad"])
    state.optimizer.step = _timed(state.optimizer.step,  # type: ignore[method-assign]
                                  spent["optimizer step"])
    real_draw = loop.sample_batch
    loop.sample_batch = _timed(real_draw, spent["draw the meta-batch"])
    times: Dict[str, List[float]] = {part: [] for part in PARTS}
    try:
        for done in range(warmup + iterations):
            for values in spent.values():
                values.clear()
            seconds = loop._meta_step(run, state, meta_gradient)["seconds"]
            if done < warmup:
                continue
            parts = {part: sum(values) for part, values in spent.items()}
            for part, value in parts.items():
                times[part].append(value)
            times["the rest"].append(seconds - sum(parts.values()))
            times["whole iteration"].append(seconds)
    finally:
        loop.sample_batch = real_draw
    return times


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loop_parts",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("overrides", nargs="*", help="key=value config changes")
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    times = time_parts(args.config, args.overrides, args.iterations, args.warmup)
    medians = {part: 1e3 * statistics.median(values) for part, values in times.items()}
    print("| part | median ms |\n|---|---:|")
    for part, value in medians.items():
        print(f"| {part} | {value:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({
            "command": "python -m benchmarks.loop_parts " + " ".join(
                sys.argv[1:] if argv is None else argv),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "threads": args.threads, "median_ms": medians}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
