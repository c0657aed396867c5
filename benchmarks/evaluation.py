"""Final-evaluation speed: `gbml_ext.runner.evaluate` on N held-out Omniglot 5w1s tasks
(CNN4-64, 15 queries, 3 inner steps: the loss after 0..3 steps of every task), on the per-task
engine, on the per-task engine with channels-last weights (`model.channels_last`) and on the
batched fast path, interleaved over rounds; medians reported.

Inputs are random images of Omniglot's shape (the cost does not depend on pixel values), drawn
by a seeded source so that both paths see the same tasks.

    python -m benchmarks.evaluation --tasks 600 --rounds 3
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

import torch

from gbml_ext import Task
from gbml_ext.measure import hardware_description
from gbml_ext.runner import evaluate, load_config
from gbml_ext.runner.build import build_learner

__all__ = ["main"]


class RandomOmniglotTasks:
    """5-way 1-shot tasks of random 28×28 images, 15 queries per class, from a seed."""

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self) -> Task:
        labels = torch.arange(5)
        return Task(torch.rand(5, 1, 28, 28, generator=self.generator), labels,
                    torch.rand(75, 1, 28, 28, generator=self.generator), labels.repeat(15))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.evaluation",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--algorithms", nargs="+", default=["maml", "anil"])
    args = parser.parse_args(argv)
    variants = [("per-task", False), ("per-task NHWC", True), ("batched", False)]
    seconds: Dict[str, List[float]] = {}
    losses: Dict[str, float] = {}
    for _ in range(args.rounds):
        for algorithm in args.algorithms:
            for path, nhwc in variants:
                config = load_config(None, [
                    "data.source=omniglot", "model.name=omniglot_cnn4",
                    f"algorithm.name={algorithm}", "algorithm.inner_lr=0.4",
                    f"model.channels_last={str(nhwc).lower()}"])
                torch.manual_seed(0)
                learner = build_learner(config)
                tic = time.perf_counter()
                result = evaluate(learner, RandomOmniglotTasks(), args.tasks, args.steps,
                                  path=path.split()[0])
                seconds.setdefault(f"{algorithm} {path}", []).append(time.perf_counter() - tic)
                losses[f"{algorithm} {path}"] = result["loss"]["mean"]
    print(f"| algorithm | path | median s ({args.tasks} tasks, {args.steps} steps) | "
          f"speed-up | mean final loss |\n|---|---|---|---|---|")
    for algorithm in args.algorithms:
        base = statistics.median(seconds[f"{algorithm} per-task"])
        for path, _ in variants:
            median = statistics.median(seconds[f"{algorithm} {path}"])
            print(f"| {algorithm} | {path} | {median:.2f} | {base / median:.2f}x | "
                  f"{losses[f'{algorithm} {path}']:.6f} |")
    print(f"\n{hardware_description(torch.device('cpu'))}, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.rounds} rounds, "
          f"interleaved.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
