"""The synthetic runner end to end: `gbml-train` on config s, each path against learn2learn.

Runs `gbml-train experiments/configs/synthetic/linreg_shallow.toml train.iterations=N` (config s:
linear regression, an 8-dim linear model, 64 + 64 points, meta-batch 16, 1 step, second-order
MAML, one thread) once per variant per round, interleaved, each in its own process and output
folder, and reads results.json: the median seconds per meta-iteration (what the runner records),
the seconds of the first compiled call of training and of evaluation, and the process's wall
time. Variants:

    l2l-maml           learn2learn's MAML through the same runner (`algorithm.name=l2l-maml`)
    batched            `algorithm.path=batched` (what `auto` takes for this config)
    compiled cold      `algorithm.path=compiled`, inductor's on-disk cache empty
    compiled warm      the same, the cache that the cold run filled
    compiled + fused   compiled warm with `train.fused_optimizer=true`
    batched at REV     `--baseline REV`: the config's default path at an older commit

    python -m benchmarks.runner_speed --rounds 3 --baseline 7922e7b \\
        --json docs/data/runner-s.json --png docs/img/runner-s.png

Run it on a quiet machine: the numbers are ratios within one run.
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
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .demo_speed import worktree

__all__ = ["main", "train_results"]

REPO = Path(__file__).resolve().parents[1]
CONFIG = Path("experiments/configs/synthetic/linreg_shallow.toml")
REFERENCE = "l2l-maml"


def train_results(config: Path, overrides: Sequence[str], out: Path, cwd: Path = REPO,
                  env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """results.json of `gbml-train config overrides` run in its own process from `cwd`, with
    the process's wall seconds added as `wall_s`."""
    command = [sys.executable, "-m", "gbml_ext.runner", str(config), *overrides,
               f"output_dir='{out}'", "--no-progress"]
    tic = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(cwd), **(env or {})})
    if done.returncode:
        raise SystemExit(f"benchmark: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    results = json.loads((out / "results.json").read_text())
    results["wall_s"] = time.perf_counter() - tic
    return results


def _variants(baseline: Optional[str]) -> List[Tuple[str, bool, List[str], str]]:
    """(name, runs in the baseline tree, overrides, inductor cache: "" none, "cold", "warm")."""
    variants = [(REFERENCE, False, ["algorithm.name=l2l-maml"], ""),
                ("batched", False, ["algorithm.path=batched"], ""),
                ("compiled cold", False, ["algorithm.path=compiled"], "cold"),
                ("compiled warm", False, ["algorithm.path=compiled"], "warm"),
                ("compiled + fused", False, ["algorithm.path=compiled",
                                             "train.fused_optimizer=true"], "warm")]
    if baseline:
        variants.append((f"batched at {baseline}", True, [], ""))
    return variants


def measure(rounds: int, iterations: int, baseline: Optional[Path], revision: Optional[str]
            ) -> Dict[str, List[Dict[str, Any]]]:
    """Each variant's results (per round), interleaved."""
    runs: Dict[str, List[Dict[str, Any]]] = {}
    common = [f"train.iterations={iterations}", "train.plot=false"]
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as scratch:
        for r in range(rounds):
            cache = Path(scratch) / f"inductor-{r}"  # empty for this round's cold run
            for i, (name, old, overrides, kind) in enumerate(_variants(revision)):
                env = {"TORCHINDUCTOR_CACHE_DIR": str(cache)} if kind else None
                cwd = baseline if old and baseline is not None else REPO
                result = train_results(cwd / CONFIG, [*common, *overrides],
                                       Path(scratch) / f"{r}-{i}", cwd, env)
                runs.setdefault(name, []).append(
                    {key: result.get(key) for key in (
                        "seconds_per_iteration", "first_call_s", "evaluation_first_call_s",
                        "train_path", "wall_s", "train_seconds")})
            print(f"round {r + 1}: " + ", ".join(
                f"{k} {1e3 * v[-1]['seconds_per_iteration']:.3f} ms" for k, v in runs.items()),
                file=sys.stderr, flush=True)
    return runs


def _median(values: Sequence[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def table(runs: Dict[str, List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """One row per variant: medians over rounds, and the speed-up over learn2learn's MAML
    (the median of the per-round ratios)."""
    reference = [r["seconds_per_iteration"] for r in runs[REFERENCE]]
    rows = []
    for name, results in runs.items():
        per_it = [r["seconds_per_iteration"] for r in results]
        rows.append({
            "variant": name, "path": results[0]["train_path"] or "not recorded",
            "ms_per_iteration": 1e3 * statistics.median(per_it),
            "vs_l2l": statistics.median(a / b for a, b in zip(reference, per_it, strict=True)),
            "first_call_s": _median([r["first_call_s"] for r in results]),
            "evaluation_first_call_s": _median([r["evaluation_first_call_s"] for r in results]),
            "wall_s": statistics.median(r["wall_s"] for r in results),
            "rounds_ms": [round(1e3 * v, 4) for v in per_it]})
    return rows


def markdown(rows: Sequence[Dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    def seconds(value: Optional[float]) -> str:
        return "" if value is None else f"{value:.1f}"

    lines = ["| variant | path | ms / meta-iteration | vs l2l-maml | first compiled call s "
             "(training / evaluation) | process wall s |", "|---|---|---:|---:|---|---:|"]
    for row in rows:
        compile_s = (f"{seconds(row['first_call_s'])} / "
                     f"{seconds(row['evaluation_first_call_s'])}"
                     if row["first_call_s"] is not None else "")
        lines.append(f"| {row['variant']} | {row['path']} | {row['ms_per_iteration']:.3f} | "
                     f"{row['vs_l2l']:.1f}x | {compile_s} | {row['wall_s']:.1f} |")
    return "\n".join(lines)


def figure(rows: Sequence[Dict[str, Any]], png: Path, title: str) -> None:
    """Milliseconds per meta-iteration of each variant, as horizontal bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.2))
    names = [row["variant"] for row in rows][::-1]
    values = [row["ms_per_iteration"] for row in rows][::-1]
    ax.barh(names, values, color="tab:blue")
    for y, (value, row) in enumerate(zip(values, rows[::-1], strict=True)):
        ax.text(value, y, f" {value:.2f} ms ({row['vs_l2l']:.1f}x)", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("ms per meta-iteration (median; log scale)")
    ax.set_title(title, fontsize=8, wrap=True)
    ax.set_xlim(min(values) / 2, max(values) * 4)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runner_speed",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--baseline", default=None, help="git revision to time as well")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--png", type=Path, default=None)
    parser.add_argument("--from-json", type=Path, default=None,
                        help="measure nothing: draw --png from this earlier --json")
    args = parser.parse_args(argv)
    if args.from_json is not None:
        stored = json.loads(args.from_json.read_text())
        runs, date = stored["runs"], stored["date"]
        args.rounds = len(next(iter(runs.values())))
        args.iterations = stored.get("iterations", args.iterations)
        args.json = None
    else:
        with worktree(args.baseline) as baseline:
            runs = measure(args.rounds, args.iterations, baseline, args.baseline)
        date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = table(runs)
    print(markdown(rows))
    command = "python -m benchmarks.runner_speed " + " ".join(
        sys.argv[1:] if argv is None else argv)
    if args.json:
        args.json.write_text(json.dumps({"command": command, "date": date,
                                         "iterations": args.iterations, "rows": rows,
                                         "runs": runs}, indent=1))
        print(f"wrote {args.json}")
    if args.png:
        figure(rows, args.png, f"gbml-train, config s, {args.iterations} meta-iterations, "
                               f"medians of {args.rounds} rounds, {date}")
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
