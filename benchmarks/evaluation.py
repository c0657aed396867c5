"""Final-evaluation speed: `gbml_ext.runner.evaluate` on N held-out Omniglot 5w1s tasks
(CNN4-64, 15 queries, 3 inner steps: the loss after 0..3 steps of every task), on the per-task
engine, on the per-task engine with channels-last weights (`model.channels_last`) and on the
batched fast path, interleaved over rounds; medians reported.

Inputs are random images of Omniglot's shape (the cost does not depend on pixel values), drawn
by a seeded source so that both paths see the same tasks.

    python -m benchmarks.evaluation --tasks 600 --rounds 3 --variants per-task nhwc \
        --json eval.json
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
from torch import nn

from gbml_ext import Task
from gbml_ext.measure import hardware_description
from gbml_ext.runner import evaluate, load_config
from gbml_ext.runner.build import build_learner

__all__ = ["VARIANTS", "main"]

# name: (evaluation path, channels-last weights)
VARIANTS = {"per-task": ("per-task", False), "nhwc": ("per-task", True),
            "batched": ("batched", False), "compiled": ("compiled", False),
            "compiled-nhwc": ("compiled", True)}


class RandomOmniglotTasks:
    """5-way 1-shot tasks of random 28×28 images, 15 queries per class, from a seed."""

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self) -> Task:
        labels = torch.arange(5)
        return Task(torch.rand(5, 1, 28, 28, generator=self.generator), labels,
                    torch.rand(75, 1, 28, 28, generator=self.generator), labels.repeat(15))


def _compile(learner: nn.Module, steps: int, first_call: Dict[str, float], name: str) -> None:
    """Compiles the learner's loss on one extra task, outside the timed region (the compiled
    functions are cached per module), and records how long that took."""
    tic = time.perf_counter()
    evaluate(learner, RandomOmniglotTasks(seed=1), 1, steps, path="compiled")
    first_call.setdefault(name, time.perf_counter() - tic)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.evaluation",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--algorithms", nargs="+", default=["maml", "anil"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="per-task (the baseline, always run), nhwc, batched, "
                             "compiled, compiled-nhwc (MAML only)")
    parser.add_argument("--json", default=None, help="write the times to this file")
    args = parser.parse_args(argv)
    chosen = ["per-task"] + [v for v in args.variants if v != "per-task"]
    variants = [(name, *VARIANTS[name]) for name in chosen]
    seconds: Dict[str, List[float]] = {}
    losses: Dict[str, float] = {}
    first_call: Dict[str, float] = {}
    for _ in range(args.rounds):
        for algorithm in args.algorithms:
            for name, path, nhwc in variants:
                config = load_config(None, [
                    "data.source=omniglot", "model.name=omniglot_cnn4",
                    f"algorithm.name={algorithm}", "algorithm.inner_lr=0.4",
                    f"model.channels_last={str(nhwc).lower()}"])
                if path == "compiled" and algorithm != "maml":
                    continue  # ANIL's adapted head is a Linear: nothing worth compiling
                torch.manual_seed(0)
                learner = build_learner(config)
                if path == "compiled":
                    _compile(learner, args.steps, first_call, name)
                tic = time.perf_counter()
                result = evaluate(learner, RandomOmniglotTasks(), args.tasks, args.steps,
                                  path=path)
                seconds.setdefault(f"{algorithm} {name}", []).append(time.perf_counter() - tic)
                losses[f"{algorithm} {name}"] = result["loss"]["mean"]
    print(f"| algorithm | path | median s ({args.tasks} tasks, {args.steps} steps) | "
          f"speed-up | mean final loss |\n|---|---|---|---|---|")
    for algorithm in args.algorithms:
        base = statistics.median(seconds[f"{algorithm} per-task"])
        for name, _, _ in variants:
            if f"{algorithm} {name}" not in seconds:
                continue
            median = statistics.median(seconds[f"{algorithm} {name}"])
            print(f"| {algorithm} | {name} | {median:.2f} | {base / median:.2f}x | "
                  f"{losses[f'{algorithm} {name}']:.6f} |")
    footer = (f"{hardware_description(torch.device('cpu'))}, "
              f"torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"{args.rounds} rounds, interleaved.")
    print("\n" + footer)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"command": "python -m benchmarks.evaluation " + " ".join(sys.argv[1:]),
             "environment": footer, "tasks": args.tasks, "steps": args.steps,
             "seconds": seconds, "final_loss": losses,
             "compile_seconds": first_call}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
