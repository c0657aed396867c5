"""What a study leaves: a table of every trial (trials.md, trials.csv, trials.json), a figure
of the metric against each tuned key (trials.png), and the best trial's config as a plain TOML
file (best.toml) that `gbml-train` and `gbml-compare` run as they run any config.

best.toml is the config with the best trial's values and the config's own evaluation settings
(the trials evaluated on validation tasks; the final run reports its test split), named
`<name>-tuned` so that its runs do not share the untuned config's folders.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..algorithms import ALGORITHMS
from ..fileio import atomic_write_json, atomic_write_text
from ..runner.config import config_to_dict, load_config
from ..runner.plots import plain_log_axis, pyplot, save_figure
from .space import TuneSetup, toml_value
from .trials import PRUNED_AT, trial_folder

__all__ = ["BEST_FILE", "EDGE_FRACTION", "REPORT_FILES", "best_config", "config_toml",
           "edge_notes", "edge_of", "trial_rows", "trials_markdown", "write_report"]

BEST_FILE = "best.toml"
REPORT_FILES = ("trials.md", "trials.csv", "trials.json", "trials.png")
# A best value within this fraction of its range (on the log scale for a log range) from an
# edge may mean that the best value lies past that edge.
EDGE_FRACTION = 0.08


def config_toml(data: Dict[str, Any], header: str = "") -> str:
    """A config's plain data (`config_to_dict`) as a TOML file: top-level keys, then one table
    per section; `header` lines become comments.

    Example:
        >>> print(config_toml({"name": "a", "train": {"lr": 0.01, "iterations": 5}}, "tuned"))
        # tuned
        name = "a"
        <BLANKLINE>
        [train]
        lr = 0.01
        iterations = 5
        <BLANKLINE>
    """
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for key, section in data.items():
        if isinstance(section, dict):
            lines += ["", f"[{key}]"]
            lines += [f"{k} = {toml_value(v)}" for k, v in section.items()]
    return "\n".join(lines) + "\n"


def trial_rows(study: Any, setup: TuneSetup, out: Path) -> List[Dict[str, Any]]:
    """One row per trial: number, state, the metric's value (a pruned trial's last reported
    one), the meta-iteration it was pruned at, its params, its run folder and why it failed."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        reported = trial.intermediate_values
        last = reported[max(reported)] if reported else None
        value = trial.value if trial.value is not None else (
            last if trial.state.name == "PRUNED" else None)
        rows.append({"trial": trial.number, "state": trial.state.name.lower(),
                     setup.metric: value, "pruned_at": trial.user_attrs.get(PRUNED_AT),
                     **{key: trial.params.get(key) for key in setup.space},
                     "run_dir": str(trial_folder(out, trial.number)),
                     "error": trial.user_attrs.get("error", "")})
    return rows


def edge_of(value: float, low: float, high: float, log: bool) -> Optional[str]:
    """"bottom" or "top" when `value` lies within `EDGE_FRACTION` of the range [low, high]
    (measured on the log scale when `log`) from that edge, else None.

    Example:
        >>> edge_of(0.9, 0.05, 1.0, log=True), edge_of(0.3, 0.05, 1.0, log=True)
        ('top', None)
    """
    scale: Callable[[float], float] = math.log if log else float
    if high <= low or (log and min(value, low) <= 0):
        return None
    where = (scale(value) - scale(low)) / (scale(high) - scale(low))
    return "bottom" if where <= EDGE_FRACTION else "top" if where >= 1 - EDGE_FRACTION else None


def edge_notes(setup: TuneSetup, params: Dict[str, Any]) -> List[str]:
    """One line per numeric key whose best value (`params`) lies at an edge of its range
    (`edge_of`).

    Example:
        >>> from types import SimpleNamespace
        >>> from optuna.distributions import FloatDistribution
        >>> setup = SimpleNamespace(space={"algorithm.inner_lr": FloatDistribution(
        ...     0.05, 1.0, log=True)})
        >>> edge_notes(setup, {"algorithm.inner_lr": 0.3})
        []
        >>> print(edge_notes(setup, {"algorithm.inner_lr": 0.9})[0][:62])
        the best algorithm.inner_lr, 0.9, lies at the top of its range
    """
    notes = []
    for key, distribution in setup.space.items():
        value = params.get(key)
        if not hasattr(distribution, "low") or not isinstance(value, (int, float)):
            continue
        low, high = float(distribution.low), float(distribution.high)
        edge = edge_of(float(value), low, high, bool(distribution.log))
        if edge:
            notes.append(f"the best {key}, {value:.4g}, lies at the {edge} of its range "
                         f"{low:g}..{high:g}, so the best value may lie past it. To look, "
                         f"widen the range in [tune.space] and tune into a new --out (a "
                         f"study keeps the space it started with).")
    return notes


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def trials_markdown(rows: List[Dict[str, Any]], setup: TuneSetup,
                    best: Optional[int]) -> str:
    """The trials as a markdown table, the best one marked.

    Example:
        >>> from types import SimpleNamespace
        >>> setup = SimpleNamespace(metric="loss", space={"train.lr": None}, direction="minimize")
        >>> rows = [{"trial": 0, "state": "complete", "loss": 0.5, "pruned_at": None,
        ...          "train.lr": 0.01, "run_dir": "t/trial-0000", "error": ""}]
        >>> print(trials_markdown(rows, setup, 0).splitlines()[2])
        | **0** | complete | 0.5 |  | 0.01 | t/trial-0000 |
    """
    keys = list(setup.space)
    head = ["trial", "state", f"validation {setup.metric}", "pruned at", *keys, "run folder"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        number = f"**{row['trial']}**" if row["trial"] == best else str(row["trial"])
        cells = [number, row["state"] + (f": {row['error'][:80]}" if row["error"] else ""),
                 _cell(row[setup.metric]), _cell(row["pruned_at"]),
                 *(_cell(row[k]) for k in keys), row["run_dir"]]
        lines.append("| " + " | ".join(cells) + " |")
    chosen = [row for row in rows if row["trial"] == best]
    notes = edge_notes(setup, chosen[0]) if chosen else []
    return "\n".join(lines + [f"\nNote: {note}" for note in notes]) + "\n"


def _csv(rows: List[Dict[str, Any]]) -> str:
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=list(rows[0]) if rows else ["trial"])
    writer.writeheader()
    writer.writerows(rows)
    return stream.getvalue()


def _x_axis(ax: Any, distribution: Any, choices: List[Any]) -> None:
    """A tuned key's axis: its choices by name, or its whole search range (log scale for a log
    range, labelled 0.05, 0.1, ... rather than in powers of ten), so that where the trials fell
    within the range is visible."""
    if choices:
        ax.set_xticks(range(len(choices)), [str(c) for c in choices])
        return
    low, high = float(distribution.low), float(distribution.high)
    if getattr(distribution, "log", False):
        plain_log_axis(ax, low, high)
    else:
        from matplotlib.ticker import MaxNLocator

        margin = 0.04 * (high - low) if high > low else 0.5
        ax.set_xlim(low - margin, high + margin)
        if isinstance(distribution.low, int):  # an IntDistribution: whole-number ticks
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _plot(rows: List[Dict[str, Any]], setup: TuneSetup, best: Optional[int], path: Path) -> Path:
    """The metric against each tuned key: complete trials as dots, pruned ones (their last
    reported value) as crosses, the best ringed."""
    plt = pyplot()
    keys = list(setup.space)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        distribution = setup.space[key]
        choices = list(getattr(distribution, "choices", []))
        for state, marker, color in (("complete", "o", "C0"), ("pruned", "x", "0.5")):
            points = [(row[key], row[setup.metric]) for row in rows if row["state"] == state
                      and row[setup.metric] is not None and math.isfinite(row[setup.metric])]
            if points:
                xs = [choices.index(x) if choices else x for x, _ in points]
                ax.scatter(xs, [y for _, y in points], marker=marker, color=color, label=state)
        chosen = [row for row in rows if row["trial"] == best]
        if chosen:
            x = chosen[0][key]
            ax.scatter([choices.index(x) if choices else x], [chosen[0][setup.metric]], s=160,
                       facecolors="none", edgecolors="C3", label="best")
        _x_axis(ax, distribution, choices)
        ax.set_xlabel(key)
        ax.set_ylabel(f"validation {setup.metric}")
        ax.grid(alpha=0.3)
    if axes[0][0].get_legend_handles_labels()[0]:  # none while every trial failed
        axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{setup.config.name}: {len(rows)} trials")
    save_figure(fig, path)
    return path


def best_config(setup: TuneSetup, params: Dict[str, Any]) -> Dict[str, Any]:
    """The config with `params`, its own evaluation settings, named `<name>-tuned`, with its
    output folder left to the default (runs/<name>-tuned/seed<N>). Of the `[algorithm]` keys it
    holds only those its algorithm reads, so that `gbml-train` takes the file as it is."""
    overrides = [*setup.overrides, *(f"{k}={toml_value(v)}" for k, v in params.items()),
                 f"name={toml_value(setup.config.name + '-tuned')}", "output_dir=''"]
    config = load_config(setup.config_path, overrides)
    data = config_to_dict(config)
    read = ALGORITHMS[config.algorithm.name].keys_read(config.algorithm.transform)
    data["algorithm"] = {k: v for k, v in data["algorithm"].items() if k in read}
    return data


def write_report(study: Any, setup: TuneSetup, out: Path) -> List[Path]:
    """Writes the table, the figure and (once a trial has completed) best.toml under `out`;
    returns the files written."""
    out = Path(out)
    rows = trial_rows(study, setup, out)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    best = study.best_trial if complete else None
    number = None if best is None else best.number
    written = [atomic_write_text(out / "trials.md", trials_markdown(rows, setup, number)),
               atomic_write_text(out / "trials.csv", _csv(rows)),
               atomic_write_json(out / "trials.json", {
                   "config": setup.config_path, "overrides": setup.overrides,
                   "metric": setup.metric, "direction": setup.direction,
                   "split": "validation", "best_trial": number, "trials": rows}),
               _plot(rows, setup, number, out / "trials.png")]
    if best is not None:
        values = ", ".join(f"{k} = {toml_value(v)}" for k, v in best.params.items())
        header = (f"Tuned by gbml-tune from {setup.config_path}"
                  f"{' ' + ' '.join(setup.overrides) if setup.overrides else ''}:\n"
                  f"trial {best.number} of {len(rows)}, validation {setup.metric} "
                  f"{best.value:.6g}: {values}.\n"
                  f"Final run on the test split: gbml-train {out / BEST_FILE}")
        text = config_toml(best_config(setup, best.params), header)
        written.append(atomic_write_text(out / BEST_FILE, text))
    return written
