"""Side-by-side comparison of several configs on the same tasks and seeds.

`compare` runs each config for each seed (by default each in its own process, so that peak
memory is that run's alone), then tabulates training time, time per iteration, peak memory,
test accuracy (or loss) with its 95% CI, and final training loss, with ratios against the
first config: the layout of the well-known "MAML vs FOMAML" table.

    gbml-compare CONFIG_A CONFIG_B ... --seeds 0 1 2 train.iterations=500 --out runs/cmp
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, overload

from ..fileio import atomic_write_json, atomic_write_text
from .cli import common_options, run_command, split_overrides
from .config import Config, config_to_dict, describe_config, load_config
from .errors import RunError
from .evaluate import summarize
from .plots import plot_comparison
from .report import format_metric, markdown_table
from .rundir import IMPLEMENTATION_KEYS, RESULTS_FILE, config_differences, flatten

__all__ = ["compare", "compare_table", "comparable_summaries", "pooled_summary", "main"]


@overload
def pooled_summary(results: Sequence[Dict[str, Any]], metric: Literal["loss"],
                   step: int = -1) -> Dict[str, float]: ...
@overload
def pooled_summary(results: Sequence[Dict[str, Any]], metric: str,
                   step: int = -1) -> Optional[Dict[str, float]]: ...
def pooled_summary(results: Sequence[Dict[str, Any]], metric: str,
                   step: int = -1) -> Optional[Dict[str, float]]:
    """Mean and 95% CI over every evaluated task of every seed, for `metric` "loss" or
    "accuracy" after inner step `step` (loss only: -1 is the last). None for "accuracy" when
    the runs have none (regression)."""
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


def comparable_summaries(runs: Dict[str, List[Dict[str, Any]]],
                         metric: str) -> Dict[str, Dict[str, float]]:
    """`pooled_summary(results, metric)` of every run; a ValueError names a run without it (a
    regression run in a comparison of classifiers)."""
    summaries = {}
    for name, results in runs.items():
        summary = pooled_summary(results, metric)
        if summary is None:
            raise ValueError(f"{name} has no test {metric} to compare with {next(iter(runs))}'s: "
                             "compare classification runs with classification runs.")
        summaries[name] = summary
    return summaries


def _run_config(config_path: str, seed: int, overrides: Sequence[str], out: Optional[str]):
    args = [f"seed={seed}", *overrides]
    config = load_config(config_path, args)
    if out is not None:  # every run of a comparison lives under its --out folder
        slug = config.run_dir().parent.name
        args.append(f"output_dir='{Path(out) / slug / f'seed{seed}'}'")
        config = load_config(config_path, args)
    return config, args


def _reusable(run_dir: Path, config: Config) -> bool:
    """A finished run is reused only if its stored config equals the requested one (paths,
    logging and checkpointing aside)."""
    results_path = run_dir / RESULTS_FILE
    if not results_path.is_file():
        return False
    saved = json.loads(results_path.read_text())["config"]
    return not config_differences(saved, config_to_dict(config), ignore=IMPLEMENTATION_KEYS) and (
        flatten(saved).get("train.iterations") == config.train.iterations)


def _run(config_path: str, seed: int, overrides: Sequence[str], isolate: bool, resume: bool,
         out: Optional[str], label: str, overwrite: bool) -> Dict[str, Any]:
    config, args = _run_config(config_path, seed, overrides, out)
    run_dir = config.run_dir()
    if resume and _reusable(run_dir, config):
        print(f"{label} {config.name} seed {seed}: reused {run_dir} (same config)", file=sys.stderr)
        return json.loads((run_dir / RESULTS_FILE).read_text())
    print(f"{label} {config.name} seed {seed}: {'resuming' if resume else 'training'} in "
          f"{run_dir} ...", file=sys.stderr, flush=True)
    tic = time.perf_counter()
    if isolate:
        command = [sys.executable, "-m", "gbml_ext.runner", config_path, *args, "--no-progress"]
        flags = ["--resume"] if resume else ["--overwrite"] if overwrite else []
        completed = subprocess.run(command + flags)
        if completed.returncode:
            raise RunError(f"run {config_path} seed {seed} failed (exit {completed.returncode}); "
                           f"its error is printed above. Fix it and rerun with --resume.")
    else:
        from .loop import train

        train(config, resume=resume, progress=True, overwrite=overwrite)
    results = json.loads((run_dir / RESULTS_FILE).read_text())
    print(f"{label} {config.name} seed {seed}: done in {time.perf_counter() - tic:.0f} s",
          file=sys.stderr)
    return results


def compare(config_paths: Sequence[str], seeds: Sequence[int] = (0,), overrides: Sequence[str] = (),
            isolate: bool = True, resume: bool = False, out: Optional[str | Path] = None,
            overwrite: bool = False) -> Dict[str, List[Dict[str, Any]]]:
    """Runs every config for every seed; returns {config name: [results.json per seed]}.

    With `out`, every run lives under `out/<name>/seed<N>`. With `resume`, a finished run is
    reused only when its stored config equals the requested one; other runs continue from
    their checkpoint (or re-evaluate, if only evaluation settings changed). With `overwrite`,
    existing runs are moved aside first."""
    runs: Dict[str, List[Dict[str, Any]]] = {}
    total = len(config_paths) * len(seeds)
    for i, path in enumerate(config_paths):
        for j, seed in enumerate(seeds):
            label = f"[{i * len(seeds) + j + 1}/{total}]"
            result = _run(str(path), seed, overrides, isolate, resume,
                          None if out is None else str(out), label, overwrite)
            runs.setdefault(result["name"], []).append(result)
    return runs


def _memory_saved(peak: float, base: float) -> str:
    """'+12%' memory saved against the baseline, or '–' when the baseline's peak is not
    positive (a CPU peak-RSS increase can be 0)."""
    return f"{1 - peak / base:+.0%}" if base > 0 else "–"


def compare_table(runs: Dict[str, List[Dict[str, Any]]]) -> str:
    """Markdown table of the runs, with ratios against the first one."""
    names = list(runs)
    base = runs[names[0]]

    def median(results, key):
        return statistics.median(r[key] for r in results)

    classification = pooled_summary(base, "accuracy") is not None
    summaries = comparable_summaries(runs, "accuracy" if classification else "loss")
    header = ["run", "seeds", "train time s", "s / iteration", "peak memory MB",
              "test accuracy %" if classification else "test loss", "final train loss",
              "speed-up", "memory saved", "accuracy Δ" if classification else "loss Δ"]
    rows = []
    base_quality = summaries[names[0]]["mean"]
    for name in names:
        results = runs[name]
        quality = summaries[name]
        scale = 100 if classification else 1
        speed_up = median(base, 'seconds_per_iteration') / median(results, 'seconds_per_iteration')
        rows.append([
            name, len(results), f"{median(results, 'train_seconds'):.1f}",
            f"{median(results, 'seconds_per_iteration'):.4f}",
            f"{median(results, 'peak_memory_mb'):.0f}",
            format_metric(quality, scale, 2 if classification else 4),
            f"{median(results, 'final_train_loss'):.4f}",
            f"{speed_up:.2f}x",
            _memory_saved(median(results, 'peak_memory_mb'), median(base, 'peak_memory_mb')),
            f"{(quality['mean'] - base_quality) * scale:+.2f}",
        ])
    kind = base[0]["peak_memory_kind"]
    env = base[0]["environment"]
    return (markdown_table(header, rows) +
            f"\nRatios against {names[0]}. Peak memory: {kind}. Times are medians over seeds. "
            f"{env['hardware']}, torch {env['torch']}, {env['date']}.\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`gbml-compare`: run configs side by side; table, JSON and PNG."""
    rest, overrides = split_overrides(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="gbml-compare", description=__doc__.split("\n\n")[0],
                                     epilog="Overrides are key=value words anywhere on the line.")
    parser.add_argument("configs", nargs="+", help="TOML configs; the first is the baseline")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", dest="set_overrides", action="append", default=[],
                        help="key=value applied to every config (same as a bare key=value)")
    parser.add_argument("--in-process", action="store_true",
                        help="run in this process (faster; peak memory is then shared)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse finished runs of the same config, resume interrupted ones")
    parser.add_argument("--overwrite", action="store_true",
                        help="move existing runs aside and train them again")
    parser.add_argument("--out", default=None,
                        help="put every run under this folder, with compare.{md,json,png}")
    parser.add_argument("--print-config", action="store_true",
                        help="print each resolved config with types and ranges, then exit")
    common_options(parser)
    args = parser.parse_args(rest)
    overrides = args.set_overrides + overrides

    def body() -> int:
        if args.print_config:
            for path in args.configs:
                print(f"# {path}\n" + describe_config(load_config(path, overrides)))
            return 0
        for path in args.configs:  # every config error before the first run starts
            _run_config(path, args.seeds[0], overrides, args.out)
        runs = compare(args.configs, args.seeds, overrides, isolate=not args.in_process,
                       resume=args.resume, out=args.out, overwrite=args.overwrite)
        table = compare_table(runs)
        print(table)
        if args.out:
            out = Path(args.out)
            atomic_write_text(out / "compare.md", table)
            atomic_write_json(out / "compare.json", runs)
            plot_comparison(runs, out / "compare.png")
            print(f"wrote {out}/compare.md, compare.json, compare.png", file=sys.stderr)
        return 0

    return run_command("gbml-compare", body, args.debug)


if __name__ == "__main__":
    sys.exit(main())
