"""Results files: results.json, a markdown table, and plots, with the run's provenance."""
from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from ..measure import hardware_description

__all__ = ["environment_info", "write_results", "format_metric", "markdown_table",
           "plot_training_curves"]


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


def write_results(run_dir: Path, results: Dict[str, Any], history: List[Dict[str, Any]]) -> None:
    """Writes results.json, results.md (one-row table) and training.png next to each other."""
    run_dir = Path(run_dir)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    evaluation = results["evaluation"]
    is_classification = evaluation["accuracy"] is not None
    header = ["run", "seed", f"test loss ({evaluation['steps']} steps)"]
    row = [results["name"], results["seed"], format_metric(evaluation["loss"], digits=4)]
    if is_classification:
        header.append("test accuracy %")
        row.append(format_metric(evaluation["accuracy"], 100, 2))
    header += ["train time s", "s / iteration", "peak memory MB"]
    row += [f"{results['train_seconds']:.1f}", f"{results['seconds_per_iteration'] or 0:.4f}",
            f"{results['peak_memory_mb']:.0f} ({results['peak_memory_kind']})"]
    env = results["environment"]
    (run_dir / "results.md").write_text(
        markdown_table(header, [row]) +
        f"\n{evaluation['loss']['n']} held-out tasks, 95% CI. {env['hardware']}, "
        f"torch {env['torch']}, {env['date']}.\n")
    plot_training_curves({results["name"]: history}, run_dir / "training.png")


def plot_training_curves(histories: Dict[str, List[Dict[str, Any]]], path: Path,
                         title: str = "meta-training") -> Optional[Path]:
    """Training (and validation, if logged) meta-loss against meta-iteration, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, history in histories.items():
        for split, style in (("train", "-"), ("validation", "--")):
            points = [(h["iteration"], h["loss"]) for h in history if h["split"] == split]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, label=f"{label} ({split})")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("post-adaptation query loss")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
