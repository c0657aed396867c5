"""How each method's cost grows with inner steps: MAML, FOMAML, Reptile and iMAML on Omniglot
5w1s (CNN4-64, meta-batch 8, 15 queries) at 1, 5, 10 and 20 inner steps.

One meta-iteration = zero the gradients, then add one meta-batch's meta-gradient to `.grad`
(`algorithm.accumulate_meta_gradient`, the runner's training step, without the outer
optimizer). Every (method, steps) cell runs in a fresh process, so its peak memory is its own:

- memory: peak RSS (VmHWM) during the first meta-iteration minus the RSS just before it, in MB;
  this is what the graph kept for the meta-gradient costs (plus allocator slack);
- time: median seconds over the timed meta-iterations that follow.

Cells run interleaved (every cell once per round, `--rounds` rounds), so machine noise hits
all alike; the table gives the median over rounds. Inputs are random images of Omniglot's
shape: the cost does not depend on pixel values.

    python -m benchmarks.steps --rounds 3 --out docs/img/steps.png --json steps.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

METHODS = ("maml", "fomaml", "reptile", "imaml")
STEPS = (1, 5, 10, 20)
LABELS = {"maml": "MAML", "fomaml": "FOMAML", "reptile": "Reptile", "imaml": "iMAML"}


def _cell(method: str, steps: int, iterations: int, seed: int = 0) -> Dict[str, float]:
    """Runs in the child process: builds the learner, measures one cell."""
    import torch

    from gbml_ext import Task
    from gbml_ext.measure import peak_resident_bytes, reset_peak_resident, resident_bytes
    from gbml_ext.runner import load_config
    from gbml_ext.runner.build import build_learner

    torch.manual_seed(seed)
    config = load_config(None, ["data.source=omniglot", "model.name=omniglot_cnn4",
                                f"algorithm.name={method}", "algorithm.inner_lr=0.4",
                                f"algorithm.train_steps={steps}"])
    learner: Any = build_learner(config)  # a MetaLearner module
    generator = torch.Generator().manual_seed(seed)

    def task() -> Task:
        labels = torch.arange(5)
        return Task(torch.rand(5, 1, 28, 28, generator=generator), labels,
                    torch.rand(75, 1, 28, 28, generator=generator), labels.repeat(15))

    batches = [[task() for _ in range(8)] for _ in range(iterations + 1)]
    reset_peak_resident()
    before = resident_bytes()
    learner.zero_grad(set_to_none=True)
    learner.accumulate_meta_gradient(batches[0], steps)
    peak_mb = (peak_resident_bytes() - before) / 2**20
    seconds = []
    for batch in batches[1:]:
        learner.zero_grad(set_to_none=True)
        tic = time.perf_counter()
        learner.accumulate_meta_gradient(batch, steps)
        seconds.append(time.perf_counter() - tic)
    return {"seconds": statistics.median(seconds), "peak_mb": peak_mb}


def measure(methods: Sequence[str], steps: Sequence[int], rounds: int,
            iterations: int) -> Dict[Tuple[str, int], List[Dict[str, float]]]:
    cells: Dict[Tuple[str, int], List[Dict[str, float]]] = {}
    for round_ in range(rounds):
        for method in methods:
            for k in steps:
                command = [sys.executable, "-m", "benchmarks.steps", "--child", method, str(k),
                           str(iterations)]
                out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                cells.setdefault((method, k), []).append(json.loads(out.splitlines()[-1]))
                print(f"round {round_ + 1}/{rounds} {method} {k} steps: "
                      f"{cells[(method, k)][-1]}", file=sys.stderr, flush=True)
    return cells


def table(cells: Dict[Tuple[str, int], List[Dict[str, float]]], methods: Sequence[str],
          steps: Sequence[int]) -> str:
    header = ["method"] + [f"{k} step{'s' * (k > 1)}: s / it" for k in steps] + \
        [f"{k}: peak MB" for k in steps]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        times = [statistics.median(c["seconds"] for c in cells[(method, k)]) for k in steps]
        peaks = [statistics.median(c["peak_mb"] for c in cells[(method, k)]) for k in steps]
        lines.append("| " + " | ".join([LABELS[method]] + [f"{t:.3f}" for t in times] +
                                       [f"{p:.0f}" for p in peaks]) + " |")
    return "\n".join(lines) + "\n"


def figure(cells: Dict[Tuple[str, int], List[Dict[str, float]]], methods: Sequence[str],
           steps: Sequence[int], path: Path, title: str) -> None:
    from gbml_ext.runner.plots import pyplot

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for method in methods:
        times = [statistics.median(c["seconds"] for c in cells[(method, k)]) for k in steps]
        peaks = [statistics.median(c["peak_mb"] for c in cells[(method, k)]) for k in steps]
        left.plot(steps, times, marker="o", label=LABELS[method])
        right.plot(steps, peaks, marker="o", label=LABELS[method])
    left.set(xlabel="inner steps", ylabel="seconds per meta-iteration (median)", xticks=steps)
    right.set(xlabel="inner steps", ylabel="peak memory of one meta-iteration, MB", xticks=steps)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        print(json.dumps(_cell(argv[1], int(argv[2]), int(argv[3]))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.steps",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations per cell")
    parser.add_argument("--out", type=Path, default=Path("runs/steps.png"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch

    from gbml_ext.measure import hardware_description

    cells = measure(args.methods, args.steps, args.rounds, args.iterations)
    text = table(cells, args.methods, args.steps)
    hardware = hardware_description(torch.device("cpu"))
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    title = (f"Omniglot 5w1s CNN4-64, meta-batch 8: {hardware}, torch {torch.__version__}, "
             f"{stamp}, median of {args.rounds} rounds")
    print(text + "\n" + title)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure(cells, args.methods, args.steps, args.out, title)
    if args.json:
        args.json.write_text(json.dumps({"title": title, "cells": [
            {"method": m, "steps": k, "runs": runs} for (m, k), runs in cells.items()]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
