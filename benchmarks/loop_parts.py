"""Where a runner meta-iteration's time goes: its parts, timed one by one.

Builds a run of CONFIG (with `key=value` overrides) as `gbml-train` does
(`gbml_ext.runner.state.build_run`, the path from `gbml_ext.runner.loop`), then makes the calls
of one meta-iteration of `gbml_ext.runner.loop._meta_step` in order, timing each: drawing the
meta-batch, `zero_grad`, the meta-step on the run's path, reading the meta-loss, and the
optimizer's step. Prints the median milliseconds of each over `--iterations` iterations (after
`--warmup`, which includes compiling on the compiled path).

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
from typing import Dict, List, Optional, Sequence

import torch

__all__ = ["PARTS", "main", "time_parts"]

PARTS = ("draw the meta-batch", "zero_grad", "meta-step", "read the meta-loss",
         "optimizer step", "whole iteration")


def time_parts(config_path: Path, overrides: Sequence[str], iterations: int, warmup: int
               ) -> Dict[str, List[float]]:
    """Seconds of each of `PARTS`, per iteration."""
    from gbml_ext.data.tasks import sample_batch
    from gbml_ext.runner.config import load_config
    from gbml_ext.runner.evaluate import training_step
    from gbml_ext.runner.state import build_run, resolve_device

    config = load_config(config_path, list(overrides))
    device = resolve_device(config.device)
    state = build_run(config, device)
    meta_gradient = training_step(config, state.algorithm)
    source, steps = state.sources["train"], config.algorithm.train_steps
    times: Dict[str, List[float]] = {part: [] for part in PARTS}

    def iteration() -> List[float]:
        marks = [time.perf_counter()]
        batch = sample_batch(source, config.train.meta_batch).to(device)
        marks.append(time.perf_counter())
        state.optimizer.zero_grad(set_to_none=True)
        marks.append(time.perf_counter())
        outcomes = meta_gradient(batch, steps)
        marks.append(time.perf_counter())
        torch.stack([o.loss for o in outcomes]).mean().item()
        marks.append(time.perf_counter())
        state.optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        marks.append(time.perf_counter())
        return [b - a for a, b in zip(marks, marks[1:], strict=False)] + [marks[-1] - marks[0]]

    for _ in range(warmup):
        iteration()
    for _ in range(iterations):
        for part, seconds in zip(PARTS, iteration(), strict=True):
            times[part].append(seconds)
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
