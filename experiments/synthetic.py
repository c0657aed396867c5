"""The package's main job: the paper's synthetic finding, on a CPU, in a few minutes.

Meta-trains Shallow / Deep / Shallow+KFO on ill-conditioned linear regression and LogR /
LogR+LinNet / LogR+KFO on binary classification (Arnold, Iqbal & Sha, AISTATS 2021, Sec. 3),
each for several seeds on the same tasks and budget, then prints the post-adaptation query loss
after 0..k inner steps (mean ± 95% CI over every held-out task of every seed) and writes
results.json, results.md and synthetic.png.

    python -m experiments.synthetic                       # the default rows, seeds 0 1 2
    python -m experiments.synthetic --rows all --seeds 0 1 2 3 4
    python -m experiments.synthetic --set train.iterations=1000 --out runs/synthetic-1k
    python -m experiments.synthetic --resume              # keeps finished runs, resumes the rest
    python -m experiments.synthetic --resume --overwrite  # trains again (make demo ARGS=...)

--overwrite wins over --resume (`make demo` passes --resume): earlier runs, and the tables and
figure made from them, are moved aside, never deleted, and every run trains again.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from gbml_ext.compare import compare
from gbml_ext.fileio import move_files_aside
from gbml_ext.runner.plots import pyplot, save_figure
from gbml_ext.runner.report import format_metric, markdown_table
from gbml_ext.runner.rundir import read_history
from gbml_ext.runner.summaries import pooled_summary

CONFIGS = Path(__file__).resolve().parent / "configs" / "synthetic"
DEFAULT_ROWS = ["linreg_shallow", "linreg_deep", "linreg_kfo",
                "logreg", "logreg_linnet", "logreg_kfo"]
OUTPUTS = ("results.md", "results.json", "synthetic.png")
ALL_ROWS = DEFAULT_ROWS + ["linreg_shallow_fomaml", "linreg_kfo_fomaml", "logreg_reptile",
                           "logreg_linnet_reptile"]


def run_rows(rows: Sequence[str], seeds: Sequence[int], out: Path, overrides: Sequence[str],
             resume: bool, overwrite: bool = False) -> Dict[str, List[dict]]:
    """Trains every row for every seed in this process, through the runner's `compare`; returns
    {row: [result per seed]}, each result with its logged `history`. Runs draw no training.png
    of their own: synthetic.png shows every run's training curve."""
    overrides = ["train.plot=false", *overrides]
    runs = compare([CONFIGS / f"{row}.toml" for row in rows], seeds, overrides, isolate=False,
                   resume=resume, out=out, overwrite=overwrite)
    by_row = dict(zip(rows, runs.values(), strict=True))
    for results in by_row.values():
        for result in results:
            result["history"] = read_history(result["run_dir"])
    return by_row


def move_outputs_aside(out: Path) -> Optional[Path]:
    """Moves the tables and figure of an earlier invocation (`OUTPUTS` under `out`) into
    `out/synthetic.old-<UTC time>/`, never deleting them; returns that folder, or None."""
    aside = move_files_aside(out, OUTPUTS, "synthetic")
    if aside is not None:
        moved = ", ".join(n for n in OUTPUTS if (aside / n).exists())
        print(f"moved the previous {moved} aside to {aside}", file=sys.stderr)
    return aside


def _step_cell(summary: Dict[str, float], before: float) -> str:
    if not math.isfinite(summary["mean"]) or summary["mean"] > 10 * before:
        return f"diverges ({summary['mean']:.2g})"
    return format_metric(summary, digits=3)


def family_table(runs: Dict[str, List[dict]], source: str) -> Optional[str]:
    rows = [r for r in runs if runs[r][0]["config"]["data"]["source"] == source]
    if not rows:
        return None
    steps = runs[rows[0]][0]["evaluation"]["steps"]
    classification = pooled_summary(runs[rows[0]], "accuracy") is not None
    header = ["model", "seeds"] + [f"loss after {k} step{'s' * (k != 1)}" for k in range(steps + 1)]
    header += [f"accuracy % ({steps} steps)"] if classification else []
    header += ["meta-train s / seed"]
    body = []
    for row in rows:
        results = runs[row]
        cells = [results[0]["name"], len(results)]
        before = pooled_summary(results, "loss", 0)["mean"]
        cells += [_step_cell(pooled_summary(results, "loss", k), before) for k in range(steps + 1)]
        if classification:
            cells.append(format_metric(pooled_summary(results, "accuracy"), 100, 1))
        cells.append(f"{statistics.mean(r['train_seconds'] for r in results):.1f}")
        body.append(cells)
    return markdown_table(header, body)


def plot(runs: Dict[str, List[dict]], path: Path) -> None:
    """Top: post-adaptation (1 step) validation loss against meta-iteration, mean over seeds.
    Bottom: test loss against inner step at the end of meta-training (log scale)."""
    plt = pyplot()
    import matplotlib.ticker

    sources = ["linear-regression", "logistic-regression"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for column, source in enumerate(sources):
        for results in runs.values():
            if results[0]["config"]["data"]["source"] != source:
                continue
            label = results[0]["name"]
            curves = [[(h["iteration"], h["loss_by_step"][1]) for h in r["history"]
                       if h["split"] == "validation"] for r in results]
            if curves[0]:
                iterations = [i for i, _ in curves[0]]
                mean = [statistics.mean(c[j][1] for c in curves) for j in range(len(iterations))]
                axes[0, column].plot(iterations, mean, marker="o", label=label)
            by_step = [pooled_summary(results, "loss", k)["mean"]
                       for k in range(results[0]["evaluation"]["steps"] + 1)]
            # A diverging model would squash every other curve: clip it at 10x its starting
            # loss and mark the clipped points with an upward triangle.
            cap = 10 * by_step[0]
            clipped = [min(v, cap) if math.isfinite(v) else cap for v in by_step]
            line, = axes[1, column].plot(range(len(by_step)), clipped, marker="o", label=label)
            for k, v in enumerate(by_step):
                if not (math.isfinite(v) and v <= cap):
                    axes[1, column].plot(k, cap, marker="^", markersize=12, color=line.get_color())
                    axes[1, column].annotate(f"{v:.1g}", (k, cap), textcoords="offset points",
                                             xytext=(6, -4), color=line.get_color())
        axes[0, column].set(title=f"{source}: meta-training", xlabel="meta-iteration",
                            ylabel="query loss after 1 inner step (validation)")
        axes[1, column].set(title=f"{source}: adaptation after meta-training", xlabel="inner steps",
                            ylabel="test query loss", yscale="log")
        axes[1, column].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        for ax in axes[:, column]:
            if ax.get_legend_handles_labels()[0]:  # none when no run has this panel's data
                ax.legend(fontsize="small")
            ax.grid(alpha=0.3)
    fig.suptitle("MAML adapts slowly with shallow models; "
                 "depth or a Kronecker meta-optimizer helps")
    save_figure(fig, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.synthetic",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", default=DEFAULT_ROWS,
                        help=f"config names in {CONFIGS} ('all' for {len(ALL_ROWS)} rows)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="section.key=value applied to every row (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("runs/synthetic"))
    parser.add_argument("--resume", action="store_true",
                        help="reuse finished runs of the same config, resume interrupted ones")
    parser.add_argument("--overwrite", action="store_true",
                        help="move earlier runs in --out aside and train again")
    args = parser.parse_args(argv)
    rows = ALL_ROWS if args.rows == ["all"] else args.rows
    resume = args.resume and not args.overwrite  # `make demo ARGS=--overwrite` trains again
    if args.overwrite:
        move_outputs_aside(args.out)
    tic = time.perf_counter()
    runs = run_rows(rows, args.seeds, args.out, args.overrides, resume, args.overwrite)
    wall = time.perf_counter() - tic
    env = next(iter(runs.values()))[0]["environment"]
    families = ("linear-regression", "logistic-regression")
    tables = [t for t in (family_table(runs, s) for s in families) if t]
    report = ("\n".join(tables) +
              f"\nPost-adaptation query loss, mean ± 95% CI over all held-out tasks of seeds "
              f"{args.seeds}. {env['hardware']}, torch {env['torch']}, "
              f"{env['date']}; this invocation took {wall:.0f} s.\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(report)
    summary = {row: [{k: v for k, v in r.items() if k != "history"} for r in results]
               for row, results in runs.items()}
    (args.out / "results.json").write_text(
        json.dumps({"rows": summary, "wall_seconds": wall}, indent=1))
    plot(runs, args.out / "synthetic.png")
    print("\n" + report)
    print(f"wrote {args.out}/results.md, results.json, synthetic.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
