"""Meta-batch sampling and the runner end to end: the targets of the meta-batches-as-tensors work.

Three measurements, each interleaved over `--rounds` rounds, medians reported:

1. `sampling`: one meta-batch of 32 Omniglot 5w1s tasks with 15 queries (the real images, from
   `--omniglot`), drawn by the tensor sampler and by learn2learn's `Taskset`; and 16 synthetic
   linear-regression tasks, drawn in one vectorised call and one at a time.
2. `synthetic`: `gbml-train experiments/configs/synthetic/linreg_kfo.toml
   algorithm.transform=none train.iterations=150`, alternating `algorithm.name=l2l-maml` and
   `maml`: seconds per meta-iteration (results.json's median) and their ratio.
3. `omniglot`: `gbml-train experiments/configs/omniglot/5w1s/maml.toml` on the per-task path,
   `train.iterations=30`, with `data.sampler` tensor and learn2learn alternating.

    python -m benchmarks.sampling --rounds 3 --baseline 17c8cb9 --json docs/data/sampling.json
    python -m benchmarks.sampling --only sampling synthetic

With `--baseline REV`, the runner measurements also run that git revision (checked out into a
temporary worktree) in every round, with its own defaults.

Each gbml-train run is its own process, so the runs do not share caches. Run it on a quiet
machine: the numbers are ratios within one run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from .demo_speed import worktree
from .runner_speed import train_results

__all__ = ["main", "time_call"]

REPO = Path(__file__).resolve().parents[1]
OMNIGLOT = REPO.parent / "shared" / "data" / "omniglot" / "omniglot-py.tar.gz"
CONFIGS = REPO / "experiments" / "configs"


def time_call(fn: Callable[[], object], repeats: int = 200) -> float:
    """Milliseconds per call of `fn`, after one warm-up call."""
    fn()
    tic = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - tic) / repeats * 1e3


def sampling(rounds: int, omniglot: Path, threads: Sequence[int]) -> Dict[str, List[float]]:
    """ms per meta-batch of each sampler, for each torch thread count in `threads`."""
    import torch

    from gbml_ext.data import FewShotTasks, LinearRegressionTasks, TensorFewShotTasks
    from gbml_ext.data.omniglot import load_omniglot

    draws: Dict[str, Callable[[], object]] = {}
    if omniglot.exists():
        split = load_omniglot(omniglot, splits=("train",))["train"]
        tensor = TensorFewShotTasks(split, 5, 1, 15, seed=0)
        taskset = FewShotTasks(split, 5, 1, 15, seed=0)
        draws["omniglot 5w1s q15, 32 tasks: tensor"] = lambda: tensor.sample_batch(32)
        draws["omniglot 5w1s q15, 32 tasks: learn2learn"] = lambda: taskset.sample_batch(32)
    else:
        print(f"sampling: no Omniglot at {omniglot} (pass --omniglot); its rows are left out.",
              file=sys.stderr)
    vectorised = LinearRegressionTasks(dim=8, n_support=64, n_query=64, seed=0)
    one_by_one = LinearRegressionTasks(dim=8, n_support=64, n_query=64, seed=0,
                                       one_at_a_time=True)
    draws["linear regression, 16 tasks: tensor"] = lambda: vectorised.sample_batch(16)
    draws["linear regression, 16 tasks: one at a time"] = lambda: one_by_one.sample_batch(16)
    times: Dict[str, List[float]] = {}
    for _ in range(rounds):
        for count in threads:
            torch.set_num_threads(count)
            for name, draw in draws.items():
                times.setdefault(f"{name}, {count} thread{'s' * (count > 1)}", []).append(
                    time_call(draw, 5 if "learn2learn" in name else 200))
    return times


def _train(config: Path, overrides: Sequence[str], out: Path, cwd: Path = REPO) -> float:
    return 1e3 * train_results(config, overrides, out, cwd)["seconds_per_iteration"]


def runner(rounds: int, config: Path, variants: Dict[str, Sequence[str]],
           common: Sequence[str], baseline: Optional[Path] = None,
           baseline_variants: Optional[Dict[str, Sequence[str]]] = None
           ) -> Dict[str, List[float]]:
    """ms per iteration of each variant (and of each baseline variant, run in `baseline`),
    interleaved over `rounds`."""
    runs = [(name, REPO, overrides) for name, overrides in variants.items()]
    if baseline is not None:
        runs += [(name, baseline, overrides) for name, overrides in
                 (baseline_variants or {}).items()]
    times: Dict[str, List[float]] = {name: [] for name, _, _ in runs}
    with tempfile.TemporaryDirectory(prefix="sampling-bench-") as scratch:
        for r in range(rounds):
            for i, (name, cwd, overrides) in enumerate(runs):
                out = Path(scratch) / f"{i}-{r}"
                times[name].append(_train(cwd / config.relative_to(REPO),
                                          [*common, *overrides], out, cwd))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} ms" for k, v in times.items()),
                  file=sys.stderr, flush=True)
    return times


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sampling",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=("sampling", "synthetic", "omniglot"),
                        default=["sampling", "synthetic", "omniglot"])
    parser.add_argument("--omniglot", type=Path, default=OMNIGLOT)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="torch thread counts for `sampling`")
    parser.add_argument("--baseline", default=None, help="git revision to time the runner of too")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with worktree(args.baseline) as baseline:
        return _measure(args, baseline, argv)


def _measure(args: argparse.Namespace, baseline: Optional[Path],
             argv: Optional[Sequence[str]]) -> int:
    report: Dict[str, object] = {
        "command": "python -m benchmarks.sampling " + " ".join(sys.argv[1:] if argv is None
                                                                else argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    tables: Dict[str, Dict[str, List[float]]] = {}
    if "sampling" in args.only:
        tables["sampling (ms per meta-batch)"] = sampling(args.rounds, args.omniglot,
                                                          args.threads)
    if "synthetic" in args.only:
        tables["synthetic runner (ms per iteration)"] = runner(
            args.rounds, CONFIGS / "synthetic" / "linreg_kfo.toml",
            {"l2l-maml": ["algorithm.name=l2l-maml"], "maml": ["algorithm.name=maml"]},
            ["algorithm.transform=none", "train.iterations=150", "train.plot=false"],
            baseline, {f"l2l-maml at {args.baseline}": ["algorithm.name=l2l-maml"],
                       f"maml at {args.baseline}": ["algorithm.name=maml"]})
    if "omniglot" in args.only:
        if not args.omniglot.exists():
            print(f"sampling: no Omniglot at {args.omniglot}; the omniglot runner is left out.",
                  file=sys.stderr)
        else:
            tables["omniglot 5w1s MAML per-task runner (ms per iteration)"] = runner(
                args.rounds, CONFIGS / "omniglot" / "5w1s" / "maml.toml",
                {"sampler learn2learn": ["data.sampler=learn2learn"],
                 "sampler tensor": ["data.sampler=tensor"]},
                [f"data.root='{args.omniglot}'", "algorithm.path=per-task",
                 "train.iterations=30", "evaluation.tasks=10", "train.eval_every=0",
                 "train.plot=false"],
                baseline, {f"at {args.baseline}": []})
    for title, times in tables.items():
        print(f"\n{title}\n\n| what | median | rounds |\n|---|---:|---|")
        for name, values in times.items():
            print(f"| {name} | {statistics.median(values):.3f} | "
                  + ", ".join(f"{v:.3f}" for v in values) + " |")
    report["medians"] = {title: {n: statistics.median(v) for n, v in t.items()}
                         for title, t in tables.items()}
    report["rounds"] = tables
    synthetic = tables.get("synthetic runner (ms per iteration)")
    if synthetic:
        ratios = [a / b for a, b in zip(synthetic["l2l-maml"], synthetic["maml"], strict=True)]
        report["synthetic_ratio_median"] = statistics.median(ratios)
        print("\nsynthetic runner, l2l-maml / maml per round: "
              + ", ".join(f"{r:.2f}x" for r in ratios))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
