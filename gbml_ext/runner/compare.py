"""Side-by-side comparison of several configs on the same tasks and seeds.

`compare` runs each config for each seed (by default each in its own process, so that peak
memory is that run's alone), then tabulates training time, time per iteration, peak memory,
test accuracy (or loss) with its 95% CI, and final training loss, with ratios against the
first config: the layout of the well-known "MAML vs FOMAML" table.

    python -m gbml_ext.runner.compare CONFIG_A CONFIG_B ... --seeds 0 1 2 --set train.iterations=500
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .config import load_config
from .evaluate import summarize
from .report import format_metric, markdown_table

__all__ = ["compare", "compare_table", "pooled_summary", "main"]


def pooled_summary(results: Sequence[Dict[str, Any]], metric: str, step: int = -1) -> Optional[Dict[str, float]]:
    """Mean and 95% CI over every evaluated task of every seed, for `metric` "loss" or
    "accuracy" after inner step `step` (loss only: -1 is the last)."""
    values: List[float] = []
    for result in results:
        per_task = result["evaluation"]["per_task"]
        if metric == "accuracy":
            if per_task["accuracy"] is None:
                return None
            values += per_task["accuracy"]
        else:
            values += per_task["loss_by_step"][step]
    return summarize(values)


def _run(config_path: str, seed: int, overrides: Sequence[str], isolate: bool,
         resume: bool) -> Dict[str, Any]:
    args = [f"seed={seed}", *overrides]
    config = load_config(config_path, args)
    results_path = config.run_dir() / "results.json"
    if resume and results_path.is_file():
        return json.loads(results_path.read_text())
    if isolate:
        command = [sys.executable, "-m", "gbml_ext.runner", config_path, *args, "--no-progress"]
        completed = subprocess.run(command + (["--resume"] if resume else []))
        if completed.returncode:
            raise RuntimeError(f"run {config_path} seed {seed} failed (exit {completed.returncode}).")
    else:
        from .loop import train

        train(config, resume=resume, progress=True)
    return json.loads(results_path.read_text())


def compare(config_paths: Sequence[str], seeds: Sequence[int] = (0,), overrides: Sequence[str] = (),
            isolate: bool = True, resume: bool = False) -> Dict[str, List[Dict[str, Any]]]:
    """Runs every config for every seed; returns {config name: [results.json per seed]}.

    With `resume`, finished runs are read back and interrupted ones continue from their
    checkpoint."""
    runs: Dict[str, List[Dict[str, Any]]] = {}
    for path in config_paths:
        for seed in seeds:
            result = _run(path, seed, overrides, isolate, resume)
            runs.setdefault(result["name"], []).append(result)
    return runs


def compare_table(runs: Dict[str, List[Dict[str, Any]]]) -> str:
    """Markdown table of the runs, with ratios against the first one."""
    names = list(runs)
    base = runs[names[0]]

    def median(results, key):
        return statistics.median(r[key] for r in results)

    classification = pooled_summary(base, "accuracy") is not None
    header = ["run", "seeds", "train time s", "s / iteration", "peak memory MB",
              "test accuracy %" if classification else "test loss", "final train loss",
              "speed-up", "memory saved", "accuracy Δ" if classification else "loss Δ"]
    rows = []
    base_quality = (pooled_summary(base, "accuracy") or pooled_summary(base, "loss"))["mean"]
    for name in names:
        results = runs[name]
        quality = pooled_summary(results, "accuracy") if classification else pooled_summary(results, "loss")
        scale = 100 if classification else 1
        rows.append([
            name, len(results), f"{median(results, 'train_seconds'):.1f}",
            f"{median(results, 'seconds_per_iteration'):.4f}", f"{median(results, 'peak_memory_mb'):.0f}",
            format_metric(quality, scale, 2 if classification else 4),
            f"{median(results, 'final_train_loss'):.4f}",
            f"{median(base, 'seconds_per_iteration') / median(results, 'seconds_per_iteration'):.2f}x",
            f"{1 - median(results, 'peak_memory_mb') / median(base, 'peak_memory_mb'):+.0%}",
            f"{(quality['mean'] - base_quality) * scale:+.2f}",
        ])
    kind = base[0]["peak_memory_kind"]
    env = base[0]["environment"]
    return (markdown_table(header, rows) +
            f"\nRatios against {names[0]}. Peak memory: {kind}. Times are medians over seeds. "
            f"{env['hardware']}, torch {env['torch']}, {env['date']}.\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="gbml-compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", help="TOML configs; the first is the baseline")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="section.key=value applied to every config (repeatable)")
    parser.add_argument("--in-process", action="store_true",
                        help="run in this process (faster; peak memory is then shared)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse finished runs and resume interrupted ones")
    parser.add_argument("--out", default=None, help="write the table and the raw results here")
    args = parser.parse_args(argv)
    runs = compare(args.configs, args.seeds, args.overrides, isolate=not args.in_process,
                   resume=args.resume)
    table = compare_table(runs)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(table)
        (out / "compare.json").write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
