"""Plots written next to results: training curves of a run, and a comparison of runs (with
each run's accuracy against inner steps, `draw_steps`).

The plots take data (histories, results dicts and `summaries`) and read no files; the command
lines that gather the data sit above them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .rundir import read_history
from .summaries import (
    comparable_summaries,
    evaluation_split,
    pooled_curve,
    pooled_summary,
    reported_steps,
)

__all__ = ["draw_steps", "plain_log_axis", "plot_comparison", "plot_training_curves", "pyplot",
           "read_history", "save_figure"]


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt



def save_figure(fig: Any, path: str | Path, drawn: bool = True, dpi: int = 120,
                rect: Optional[Tuple[float, float, float, float]] = None) -> bool:
    """Lays out `fig` (inside `rect`, in figure coordinates, when given) and writes it to `path`
    (its folder made) when `drawn`; closes it either way. Returns `drawn`.

    Example:
        >>> fig = pyplot().figure()
        >>> save_figure(fig, "never-written.png", drawn=False)
        False
    """
    if drawn:
        fig.tight_layout(**({"rect": rect} if rect else {}))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return drawn


def plain_log_axis(ax: Any, low: float, high: float) -> None:
    """A log-scale x axis over [low, high] (and a little margin), its ticks at 1, 2 and 5 times
    a power of ten labelled as plain numbers (0.05, 0.1, 0.2) and no minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    margin = (high / low) ** 0.04
    ax.set_xlim(low / margin, high * margin)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())

def plot_training_curves(histories: Dict[str, List[Dict[str, Any]]], path: Path,
                         title: str = "meta-training") -> Optional[Path]:
    """Training (and validation, if logged) meta-loss against meta-iteration, one line per run."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, history in histories.items():
        for split, style in (("train", "-"), ("validation", "--")):
            points = [(h["iteration"], h["loss"]) for h in history if h["split"] == split]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, label=f"{label} ({split})")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("post-adaptation query loss")
    ax.set_title(title)
    ax.legend(fontsize="small")
    save_figure(fig, path)
    return Path(path)


def draw_steps(ax: Any, runs: Dict[str, List[Dict[str, Any]]], metric: str = "accuracy",
               labels: Optional[Dict[str, str]] = None,
               colors: Optional[Dict[str, str]] = None) -> bool:
    """Draws on `ax` each run's `metric` on its evaluation split after 0..K inner steps, pooled
    over seeds (`summaries.pooled_curve`), with a ring at the steps each seed reports (chosen on
    validation or fixed): a curve that falls after its peak shows an overshoot.

    Arguments:
        ax: a matplotlib Axes.
        runs: {config name: [results.json dict per seed]}.
        metric: "accuracy" (drawn in %) or "loss".
        labels: the legend's name of a config (default: the config name).
        colors: a config's line colour, so that a config keeps its colour across panels
            (default: matplotlib's colour cycle).

    Returns:
        whether any run had the metric after every step (runs recorded before accuracy was
        kept per step draw nothing).

    Example:
        >>> fig, ax = pyplot().subplots()
        >>> draw_steps(ax, {"run": [{"evaluation": {"steps": 0, "per_task": {
        ...     "loss_by_step": [[1.0]], "accuracy_by_step": None, "accuracy": [0.5]}}}]})
        False
    """
    scale = 100.0 if metric == "accuracy" else 1.0
    drawn = False
    for name, results in runs.items():
        curve = pooled_curve(results, metric)
        if not curve or len(curve) < 2:
            continue
        drawn = True
        (line,) = ax.plot(range(len(curve)), [v * scale for v in curve], marker=".",
                          label=(labels or {}).get(name, name),
                          **({"color": colors[name]} if colors and name in colors else {}))
        for k in sorted({reported_steps(r["evaluation"]) for r in results}):
            ax.plot([k], [curve[k] * scale], "o", markersize=9, markerfacecolor="none",
                    color=line.get_color())
    ax.set_xlabel("inner steps at evaluation (ring: the steps reported)")
    split = evaluation_split(next(iter(runs.values()))[0]) if runs else "test"
    ax.set_ylabel(f"{split} accuracy %" if metric == "accuracy" else f"{split} loss")
    if drawn:
        ax.legend(fontsize="small")
    return drawn


def plot_comparison(runs: Dict[str, List[Dict[str, Any]]],
                    histories: Dict[str, List[List[Dict[str, Any]]]], path: Path) -> Path:
    """Three panels: each run's accuracy (or loss) on its evaluation split pooled over seeds
    with 95% CI bars, its training curve (post-adaptation query loss, mean over seeds), and its
    accuracy (or loss) against inner steps at evaluation (`draw_steps`).

    Arguments:
        runs: {config name: [results.json dict per seed]}.
        histories: {config name: [metrics.jsonl records per seed]} (`rundir.read_history`);
            a name without one draws no curve.
        path: the PNG to write.
    """
    plt = pyplot()
    names = list(runs)
    classification = pooled_summary(runs[names[0]], "accuracy") is not None
    metric = "accuracy" if classification else "loss"
    scale = 100.0 if classification else 1.0
    summaries = list(comparable_summaries(runs, metric).values())
    fig, (left, right, steps) = plt.subplots(1, 3, figsize=(16, 4.2))
    positions = range(len(names))
    left.bar(positions, [s["mean"] * scale for s in summaries],
             yerr=[s["ci95"] * scale for s in summaries], capsize=4, color="tab:blue", alpha=0.8)
    left.set_xticks(list(positions), names, rotation=30, ha="right", fontsize="small")
    split = evaluation_split(runs[names[0]][0])
    left.set_ylabel(f"{split} accuracy % (95% CI)" if classification else f"{split} loss (95% CI)")
    if classification:
        low = min(s["mean"] - s["ci95"] for s in summaries) * scale
        left.set_ylim(max(0.0, low - 5), min(100.0, max(s["mean"] for s in summaries) * scale + 5))
    for name in names:
        curves: Dict[int, List[float]] = {}
        for history in histories.get(name, []):
            for record in history:
                if record["split"] == "train":
                    curves.setdefault(record["iteration"], []).append(record["loss"])
        if curves:
            xs = sorted(curves)
            right.plot(xs, [sum(curves[x]) / len(curves[x]) for x in xs], label=name)
    right.set_xlabel("meta-iteration")
    right.set_ylabel("training query loss (mean over seeds)")
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize="small")
    if not draw_steps(steps, runs, metric):
        steps.text(0.5, 0.5, "no score after every inner step recorded", ha="center",
                   va="center", transform=steps.transAxes)
    seeds = max(len(r) for r in runs.values())
    fig.suptitle(f"{len(names)} runs, {seeds} seed(s) each")
    save_figure(fig, path)
    return Path(path)
