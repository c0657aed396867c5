"""Seconds per meta-iteration of every row of the every-algorithm Omniglot tables.

For each row config of a setting (experiments/configs/omniglot/<setting>-all/), a few
meta-iterations with `gbml-train`, each run in its own process, the rows interleaved and the
whole round repeated (each round starts one row later, so no row always runs first); the
first meta-iteration of a run is a warm-up and left out. Writes
docs/data/algorithm-costs-<setting>.json after every round, which
`python -m experiments.algorithms report` reads for its "s / meta-iteration" column.

    python -m benchmarks.algorithm_costs --setting 5w1s --root data/omniglot-py.tar.gz
    python -m benchmarks.algorithm_costs --setting all --iterations 8 --repeats 5 --root DATA
    python -m benchmarks.algorithm_costs --setting 20w1s --rows maml imaml --root DATA device=cuda

Run it on a quiet machine: other jobs inflate every number.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from experiments.algorithms_grid import SETTINGS, config_folder, rows
from experiments.algorithms_report import timing_file

__all__ = ["main", "measure", "time_row"]

REPO = Path(__file__).resolve().parents[1]


def time_row(config: Path, overrides: Sequence[str], out: Path) -> Dict[str, Any]:
    """One `gbml-train` run of `config` in its own process: the median seconds of its
    meta-iterations after the first, its peak memory and its environment."""
    command = [sys.executable, "-m", "gbml_ext.runner", str(config), *overrides,
               "train.log_every=1", "train.eval_every=0", "train.plot=false",
               "evaluation.tasks=2", f"output_dir='{out}'", "--no-progress"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode:
        raise SystemExit(f"algorithm_costs: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    results = json.loads((out / "results.json").read_text())
    seconds = [record["seconds"] for record in map(json.loads, (out / "metrics.jsonl")
                                                   .read_text().splitlines())
               if record["split"] == "train" and record["iteration"] > 1]
    if not seconds:
        raise SystemExit("algorithm_costs: --iterations must be at least 2 (the first is a "
                         "warm-up).")
    return {"seconds": statistics.median(seconds), "peak_memory_mb": results["peak_memory_mb"],
            "peak_memory_kind": results["peak_memory_kind"],
            "environment": results["environment"]}


def measure(setting: str, root: Path, iterations: int, repeats: int,
            chosen: Optional[Sequence[str]] = None, overrides: Sequence[str] = (),
            out: Optional[Path] = None, command: str = "") -> Dict[str, Any]:
    """Times every row of `setting` (or the `chosen` ones), interleaved over `repeats` rounds,
    and writes the JSON to `out` (default: `timing_file(setting)`) after every round.

    Returns:
        {"setting", "command", "iterations", "repeats", "overrides", "environment",
         "rows": {row: {"seconds_per_iteration": median over rounds, "rounds": [...],
         "peak_memory_mb": median, "peak_memory_kind"}}}
    """
    order = [r for r in rows(setting) if not chosen or r in chosen]
    if not order:
        raise SystemExit(f"algorithm_costs: {setting} has none of the rows "
                         f"{', '.join(chosen or ())}; its rows are {', '.join(rows(setting))}.")
    common = [f"data.root='{root}'", f"train.iterations={iterations}", *overrides]
    out = out or timing_file(setting)
    runs: Dict[str, List[Dict[str, Any]]] = {row: [] for row in order}
    report: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="algorithm-costs-") as scratch:
        for r in range(repeats):
            for row in order[r % len(order):] + order[:r % len(order)]:
                runs[row].append(time_row(config_folder(setting) / f"{row}.toml", common,
                                          Path(scratch) / f"{row}-{r}"))
            report = {
                "setting": setting, "command": command, "iterations": iterations,
                "repeats": r + 1, "overrides": list(overrides),
                "environment": runs[order[0]][0]["environment"],
                "rows": {row: {"seconds_per_iteration":
                               statistics.median(x["seconds"] for x in done),
                               "rounds": [x["seconds"] for x in done],
                               "peak_memory_mb": statistics.median(x["peak_memory_mb"]
                                                                   for x in done),
                               "peak_memory_kind": done[0]["peak_memory_kind"]}
                         for row, done in runs.items()}}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=1) + "\n")
            print(f"algorithm_costs {setting}, round {r + 1}/{repeats}: " + ", ".join(
                f"{row} {v['rounds'][-1]:.3f} s" for row, v in report["rows"].items()),
                file=sys.stderr, flush=True)
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.algorithm_costs",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--setting", choices=(*SETTINGS, "all"), default="all")
    parser.add_argument("--root", type=Path, required=True,
                        help="Omniglot: the omniglot-py folder or its .tar.gz")
    parser.add_argument("--iterations", type=int, default=6,
                        help="meta-iterations per run, the first a warm-up (at least 2)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the rows")
    parser.add_argument("--rows", nargs="+", default=None, help="only these rows")
    parser.add_argument("--json", type=Path, default=None,
                        help="output file (default docs/data/algorithm-costs-<setting>.json; "
                             "one setting only)")
    parser.add_argument("overrides", nargs="*", help="key=value for every run, e.g. device=cuda")
    args = parser.parse_args(argv)
    if not args.root.exists():
        parser.exit(2, f"algorithm_costs: Omniglot not found at {args.root}; pass --root with "
                       f"the omniglot-py folder or its .tar.gz.\n")
    if args.iterations < 2 or args.repeats < 1:
        parser.exit(2, "algorithm_costs: --iterations must be at least 2 and --repeats at "
                       "least 1.\n")
    settings: Sequence[str] = SETTINGS if args.setting == "all" else (args.setting,)
    known = {row for setting in settings for row in rows(setting)}
    unknown = sorted(set(args.rows or ()) - known)
    if unknown:
        parser.exit(2, f"algorithm_costs: no row {', '.join(unknown)}; the rows are "
                       f"{', '.join(sorted(known))}.\n")
    settings = tuple(s for s in settings if not args.rows or set(args.rows) & set(rows(s)))
    if args.json is not None and len(settings) > 1:
        parser.exit(2, "algorithm_costs: --json names one file: pass one --setting with it.\n")
    command = "python -m benchmarks.algorithm_costs " + " ".join(
        sys.argv[1:] if argv is None else argv)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for setting in settings:
        report = measure(setting, args.root, args.iterations, args.repeats, args.rows,
                         args.overrides, args.json, command)
        print(f"algorithm_costs: {setting} (started {started}): " + ", ".join(
            f"{row} {v['seconds_per_iteration']:.3f} s" for row, v in report["rows"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
