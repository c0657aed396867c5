"""The headline rows' learning curves: validation accuracy against meta-iterations, read from
each archived headline run's metrics.jsonl, so that the page shows whether a row's lead over
another holds, grows or closes as training goes on."""
from __future__ import annotations

import json
from pathlib import Path
from statistics import mean
from typing import Any, Dict, List, Optional, Tuple

from experiments.algorithms_grid import LABELS
from experiments.sweep import seed_folders, seed_number
from experiments.tuned_grid import HEADLINE, headline_name
from gbml_ext.runner.plots import pyplot, save_figure
from gbml_ext.runner.report import markdown_table
from gbml_ext.runner.rundir import read_history
from gbml_ext.runner.summaries import validation_accuracy

__all__ = ["PUBLISHED_MAML_5W1S", "PUBLISHED_TASKS", "curve_table", "draw_headline",
           "headline_curves", "headline_figure", "published_text"]

# MAML's Omniglot 5-way 1-shot test accuracy as published (Finn et al., 2017), ± its 95 %
# interval, and what it meta-trained on: 60,000 meta-iterations of 32 tasks.
PUBLISHED_MAML_5W1S, PUBLISHED_ITERATIONS, PUBLISHED_META_BATCH = (98.7, 0.4), 60_000, 32
PUBLISHED_TASKS = PUBLISHED_ITERATIONS * PUBLISHED_META_BATCH


def published_text() -> str:
    """The published MAML result in words.

    Example:
        >>> published_text()
        '98.7 ± 0.4 % (Finn et al., 2017), after 60,000 meta-iterations of 32 tasks'
    """
    accuracy, interval = PUBLISHED_MAML_5W1S
    return (f"{accuracy} ± {interval} % (Finn et al., 2017), after {PUBLISHED_ITERATIONS:,} "
            f"meta-iterations of {PUBLISHED_META_BATCH} tasks")

Curve = List[Tuple[int, float]]


def headline_curves(folder: Path) -> Dict[int, Curve]:
    """{seed: [(meta-iteration, validation accuracy)]} of a headline run's folder, from each
    seed's metrics.jsonl (the validation records written during training).

    Example:
        >>> headline_curves(Path("no/such/run"))
        {}
    """
    curves: Dict[int, Curve] = {}
    for seed_dir in seed_folders(folder):
        points = list(validation_accuracy(read_history(seed_dir)).items())
        if points:
            curves[seed_number(seed_dir)] = sorted(points)
    return curves


def _mean_curve(curves: Dict[int, Curve]) -> Curve:
    """The mean over seeds at the meta-iterations every seed recorded."""
    common = set.intersection(*({i for i, _ in c} for c in curves.values()))
    by_seed = [dict(c) for c in curves.values()]
    return [(i, mean(s[i] for s in by_seed)) for i in sorted(common)]


def curve_table(results_dir: Path, block: int = 500) -> str:
    """A markdown table of each headline row's validation accuracy (%) during training, the
    mean over seeds averaged over each `block` meta-iterations ((0, block], (block, 2 block],
    ...); "" when no headline run has a validation record."""
    by_row = {LABELS[row]: curves for row in HEADLINE
              if (curves := headline_curves(results_dir / "headline" / headline_name(row)))}
    means = {label: _mean_curve(curves) for label, curves in by_row.items()}
    seeds = {label: ", ".join(map(str, curves)) for label, curves in by_row.items()}
    if not means:
        return ""
    last = max(i for curve in means.values() for i, _ in curve)
    edges = range(0, last, block)
    header = ["row", "seeds", *(f"{low + 1:,}–{low + block:,}" for low in edges)]
    body = [[label, seeds[label], *(_block_mean(curve, low, low + block) for low in edges)]
            for label, curve in means.items()]
    return markdown_table(header, body).rstrip()


def _block_mean(curve: Curve, low: int, high: int) -> str:
    values = [a for i, a in curve if low < i <= high]
    return f"{100 * mean(values):.1f}" if values else "–"


def draw_headline(ax: Any, results_dir: Path, colors: Optional[Dict[str, str]] = None) -> bool:
    """Draws on `ax` the validation accuracy (%) against meta-iterations of each headline row:
    each seed thin, the mean over seeds thick, and MAML's published test accuracy as a dashed
    line. False (and nothing drawn) when no headline run has a validation record.

    Arguments:
        ax: a matplotlib Axes.
        results_dir: the archived results (experiments/results/tuned).
        colors: a row label's line colour, to match the page's other figures.
    """
    config: Dict[str, Any] = {}
    drawn = False
    for row in HEADLINE:
        folder = results_dir / "headline" / headline_name(row)
        curves = headline_curves(folder)
        if not curves:
            continue
        drawn = True
        color = (colors or {}).get(LABELS[row])
        for curve in curves.values():
            (line,) = ax.plot(*zip(*[(i, 100 * a) for i, a in curve], strict=True), lw=0.6,
                              alpha=0.35, color=color)
            color = line.get_color()  # without one given: the first seed's, for the row
        seeds = f"seed{'s' if len(curves) > 1 else ''} {', '.join(map(str, curves))}"
        ax.plot(*zip(*[(i, 100 * a) for i, a in _mean_curve(curves)], strict=True), lw=2,
                color=color, label=f"{LABELS[row]} ({seeds})")
        config = config or _first_config(folder)
    if not drawn:
        return False
    published = PUBLISHED_MAML_5W1S[0]
    low, high = ax.get_ylim()
    ax.set_ylim(low, max(high, published + 3))  # the published line and its label in view
    ax.axhline(published, ls="--", color="0.3", lw=1)
    ax.text(ax.get_xlim()[0], published + 0.3, f"MAML as published: {published} % (test, "
            f"{PUBLISHED_ITERATIONS:,} meta-iterations × {PUBLISHED_META_BATCH} tasks)",
            fontsize="small", color="0.3", va="bottom")
    train, steps = config.get("train", {}), config.get("algorithm", {}).get("test_steps")
    ax.set_xlabel("meta-iteration" + (f" ({train['meta_batch']} tasks each)"
                                      if "meta_batch" in train else ""))
    ax.set_ylabel("validation accuracy %" + (f", {train['eval_tasks']} tasks"
                                             if "eval_tasks" in train else "")
                  + (f", {steps} steps" if steps else ""))
    ax.set_title("Omniglot 5-way 1-shot, headline rows: validation during training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return True


def headline_figure(results_dir: Path, path: Path,
                    colors: Optional[Dict[str, str]] = None) -> bool:
    """`draw_headline` in a figure of its own, saved to `path`; False (and no file) when it
    draws nothing."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = draw_headline(ax, results_dir, colors)
    return save_figure(fig, path, drawn)


def _first_config(folder: Path) -> Dict[str, Any]:
    """The config.json of the run's first seed ({} when none was archived)."""
    for seed_dir in seed_folders(folder):
        if (seed_dir / "config.json").is_file():
            loaded: Dict[str, Any] = json.loads((seed_dir / "config.json").read_text())
            return loaded
    return {}
