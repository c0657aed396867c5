"""The budget study's tables and figure (docs/reproduction.md, "The budget study"), built from
the run folders of `python -m experiments.budget` only, and the archive of its finished runs.

    python -m experiments.budget report      # budget.md and budget.png under runs/budget
    python -m experiments.budget archive     # copy finished results to experiments/results/budget
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional

from experiments.budget_grid import (
    ABLATION,
    BUDGETS,
    FOLLOWUP_ITERATIONS,
    ROWS,
    ablation_dir,
    budget_folder,
    chosen_variant,
    row_run_dir,
)
from experiments.curve import point_name
from experiments.sweep import archive_runs, seed_folders, seed_results
from gbml_ext.runner.plots import pyplot, save_figure
from gbml_ext.runner.report import format_metric, markdown_table
from gbml_ext.runner.rundir import read_history
from gbml_ext.runner.summaries import pooled_summary, validation_accuracy

__all__ = ["ARCHIVE", "KEEP", "ablation_table", "archive", "budget_table", "followup_table",
           "report"]

ARCHIVE = Path(__file__).resolve().parent / "results" / "budget"
KEEP = ("config.json", "metrics.jsonl", "results.json", "eval-validation-1steps-400tasks.json",
        "eval-test-3steps-400tasks.json", "eval-test-1steps-400tasks.json")


def followup_table(out: Path) -> Optional[str]:
    folder = out / "followup" / "followup-kfo-3steps"
    results = [r for r in seed_results(folder) if r.get("iterations_done") == FOLLOWUP_ITERATIONS]
    if not results:
        return None
    summary = pooled_summary(results, "accuracy")
    steps = [pooled_summary(results, "loss", k)["mean"]
             for k in range(len(results[0]["evaluation"]["loss_by_step"]))]
    return markdown_table(["L2-H64, 1,200 meta-iterations", "seeds", "test acc % (3 steps)",
                           "test query loss after 0, 1, 2, 3 steps"],
                          [["MAML-KFO meta-trained with 3 inner steps", str(len(results)),
                            format_metric(summary, 100, 1),
                            " → ".join(f"{v:.2f}" for v in steps)]])


def _validation_curve(run_dir: Path) -> Dict[int, float]:
    return {i: 100 * a for i, a in validation_accuracy(read_history(run_dir)).items()}


def _evaluations(folder: Path, split: str, steps: int) -> List[dict]:
    name = f"eval-{split}-{steps}steps-400tasks.json"
    return [{"evaluation": json.loads((p / name).read_text())["evaluation"]}
            for p in seed_folders(folder) if (p / name).is_file()]


def _gap(kfo: dict, maml: dict) -> str:
    """KFO − MAML in points, with the CI of the difference (independent task sets)."""
    ci = 100 * (kfo["ci95"] ** 2 + maml["ci95"] ** 2) ** 0.5
    return f"{100 * (kfo['mean'] - maml['mean']):+.1f} ± {ci:.1f}"


def budget_table(out: Path) -> Optional[str]:
    """Test accuracy of MAML and MAML-KFO at every finished budget: after the 3 steps the curve
    scores (the run's own evaluation) and after the 1 step both were meta-trained for
    (`gbml-eval --steps 1`, from `test`)."""
    body = []
    for point, budgets in BUDGETS.items():
        for budget in budgets:
            folder = budget_folder(out, point, budget)
            cells = [point_name(*point), f"{budget:,}"]
            for steps in (1, 3):
                means = {}
                for row in ROWS:
                    runs = folder / f"omniglot-5w1s-curve-{row}"
                    results = ([r for r in seed_results(runs) if r.get("iterations_done") == budget]
                               if steps == 3 else _evaluations(runs, "test", 1))
                    summary = pooled_summary(results, "accuracy") if results else None
                    if summary is not None:
                        means[row] = summary
                    cells.append(format_metric(means[row], 100, 1) if row in means else "–")
                cells.append(_gap(means["maml_kfo"], means["maml"]) if len(means) == 2
                             else "–")
            if any(c != "–" for c in cells[2:]):
                body.append(cells)
    if not body:
        return None
    return markdown_table(["point", "meta-iterations", "MAML, 1 step", "MAML-KFO, 1 step",
                           "KFO − MAML, 1 step", "MAML, 3 steps", "MAML-KFO, 3 steps",
                           "KFO − MAML, 3 steps"], body)


def ablation_table(out: Path) -> Optional[str]:
    body = []
    for label in ABLATION:
        folder = ablation_dir(out, label)
        results = seed_results(folder)
        if not results:
            continue
        val = pooled_summary(results, "accuracy")
        one_step = _evaluations(folder, "validation", 1)
        tested = _evaluations(folder, "test", 3)
        steps = [pooled_summary(results, "loss", k)["mean"]
                 for k in range(len(results[0]["evaluation"]["loss_by_step"]))]
        body.append([label, str(len(results)),
                     format_metric(pooled_summary(one_step, "accuracy"), 100, 1) if one_step
                     else "–",
                     format_metric(val, 100, 1), " → ".join(f"{v:.2f}" for v in steps),
                     format_metric(pooled_summary(tested, "accuracy"), 100, 1) if tested
                     else "–"])
    if not body:
        return None
    return markdown_table(["L1-H64 variant", "seeds", "validation acc % (1 step)",
                           "validation acc % (3 steps)",
                           "validation query loss after 0, 1, 2, 3 steps",
                           "test acc % (3 steps)"], body)


def _figure(out: Path, path: Path) -> bool:
    plt = pyplot()
    fig, grid = plt.subplots(1, len(BUDGETS), figsize=(11, 4.3), sharey=True, squeeze=False)
    axes = list(grid[0])
    drawn = False
    for ax, (point, budgets) in zip(axes, BUDGETS.items(), strict=True):
        for row, colour in zip(ROWS, ("tab:blue", "tab:red"), strict=True):
            for seed in (0, 1):
                curve: Dict[int, float] = {}
                for budget in budgets:  # each longer run's history holds the shorter one's
                    curve.update(_validation_curve(
                        row_run_dir(budget_folder(out, point, budget), row, seed)))
                if curve:
                    xs = sorted(curve)
                    ax.plot(xs, [curve[x] for x in xs], color=colour,
                            linestyle="-" if seed == 0 else "--",
                            label=f"{row} seed {seed}")
                    drawn = True
            for budget in budgets:
                runs = budget_folder(out, point, budget) / f"omniglot-5w1s-curve-{row}"
                three = [r for r in seed_results(runs) if r.get("iterations_done") == budget]
                for results, marker in ((three, "o"), (_evaluations(runs, "test", 1), "s")):
                    s = pooled_summary(results, "accuracy") if results else None
                    if s is not None:
                        ax.errorbar([budget], [100 * s["mean"]], yerr=[100 * s["ci95"]],
                                    color=colour, marker=marker, capsize=3,
                                    mfc="none" if marker == "s" else colour)
        ax.set_xscale("log")
        ax.set_xticks(budgets, [f"{b:,}" for b in budgets])
        ax.minorticks_off()
        ax.set_title(f"{point_name(*point)}: lines validation (3 steps); test ± 95% CI after "
                     "3 steps (●) and 1 step (□)", fontsize="small")
        ax.set_xlabel("meta-iterations (meta-batch 8)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Omniglot 5w1s accuracy %")
    axes[-1].legend(fontsize="small")
    return save_figure(fig, path, drawn)


def report(out: Path) -> None:
    parts = []
    table = budget_table(out)
    if table:
        parts.append("## Budget\n\n" + table)
    extra = followup_table(out)
    if extra:
        parts.append("## Follow-up\n\n" + extra)
    study = ablation_table(out)
    if study:
        choice = chosen_variant(out)
        parts.append("## One layer (L1-H64)\n\n" + study +
                     (f"\nChosen on validation: {choice}.\n" if choice else ""))
    if not parts:
        sys.exit(f"budget: no finished runs under {out}; start them with `run`.")
    text = "\n".join(parts)
    out.mkdir(parents=True, exist_ok=True)
    (out / "budget.md").write_text(text)
    wrote = ["budget.md"] + (["budget.png"] if _figure(out, out / "budget.png") else [])
    print(text + f"\nwrote {', '.join(str(out / w) for w in wrote)}")


def archive(out: Path) -> None:
    """Copies every finished run's small files (not its checkpoints) under ARCHIVE."""
    copied = archive_runs(out, ARCHIVE, KEEP)
    for name in ("budget.md", "budget.png"):
        if (out / name).is_file():
            shutil.copy2(out / name, ARCHIVE / name)
    print(f"budget: archived {copied} finished runs under {ARCHIVE}")


