"""Results files: results.json, a markdown table, and plots, with the run's provenance."""
from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from ..fileio import atomic_write_json, atomic_write_text
from ..measure import hardware_description
from .plots import plot_training_curves

__all__ = ["environment_info", "format_metric", "markdown_table", "results_markdown",
           "write_metrics", "write_results"]


def environment_info(device: torch.device) -> Dict[str, Any]:
    """Package versions, hardware and date: what a table in docs/ needs to be traced back."""
    import learn2learn

    import gbml_ext

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "torch": torch.__version__,
        "learn2learn": learn2learn.__version__, "gbml_ext": gbml_ext.__version__,
        "device": str(device),
        "hardware": hardware_description(device), "threads": torch.get_num_threads(),
    }


def format_metric(summary: Optional[Dict[str, float]], scale: float = 1.0, digits: int = 3) -> str:
    """'mean ± ci95' of a {mean, ci95} summary, or '–' when absent."""
    if not summary:
        return "–"
    return f"{summary['mean'] * scale:.{digits}f} ± {summary['ci95'] * scale:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_metrics(run_dir: Path, history: List[Dict[str, Any]]) -> None:
    """Rewrites metrics.jsonl to hold exactly `history`: on a resume, lines written after the
    last checkpoint of an interrupted run are dropped, as that work is redone."""
    atomic_write_text(Path(run_dir) / "metrics.jsonl",
                      "".join(json.dumps(record) + "\n" for record in history))


def results_markdown(results: Dict[str, Any]) -> str:
    """A one-row markdown table of a results dict (results.json or a gbml-eval result)."""
    evaluation = results["evaluation"]
    is_classification = evaluation["accuracy"] is not None
    header = ["run", "seed", f"test loss ({evaluation['steps']} steps)"]
    row = [results["name"], results["seed"], format_metric(evaluation["loss"], digits=4)]
    if is_classification:
        header.append("test accuracy %")
        row.append(format_metric(evaluation["accuracy"], 100, 2))
    if "train_seconds" in results:
        header += ["train time s", "s / iteration", "peak memory MB"]
        row += [f"{results['train_seconds']:.1f}", f"{results['seconds_per_iteration'] or 0:.4f}",
                f"{results['peak_memory_mb']:.0f} ({results['peak_memory_kind']})"]
    env = results["environment"]
    return (markdown_table(header, [row]) +
            f"\n{evaluation['loss']['n']} held-out tasks, 95% CI. {env['hardware']}, "
            f"torch {env['torch']}, {env['date']}.\n")


def write_results(run_dir: Path, results: Dict[str, Any], history: List[Dict[str, Any]],
                  plot: bool = True) -> None:
    """Writes results.json, results.md (one-row table) and, with `plot`, training.png next to
    each other."""
    run_dir = Path(run_dir)
    atomic_write_json(run_dir / "results.json", results)
    atomic_write_text(run_dir / "results.md", results_markdown(results))
    if plot:
        plot_training_curves({results["name"]: history}, run_dir / "training.png")
