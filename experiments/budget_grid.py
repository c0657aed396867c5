"""The budget study's layout, which its runs (`experiments.budget`) and its tables
(`experiments.budget_report`) share: the rows, budgets and one-layer ablation, the folder of
each run, and the variant chosen on validation."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from experiments.curve import point_name
from experiments.sweep import seed_results
from gbml_ext.runner.summaries import pooled_summary

__all__ = ["ABLATION", "ABLATION_POINT", "BUDGETS", "EVAL_EVERY", "EVAL_TASKS",
           "FOLLOWUP_ITERATIONS", "FOLLOWUP_POINT", "ROWS", "ablation_dir", "budget_folder",
           "chosen_variant", "row_run_dir"]

ROWS = ["maml", "maml_kfo"]
# (layers, hidden) -> budgets in meta-iterations, shortest first.
BUDGETS: Dict[Tuple[int, int], List[int]] = {(2, 64): [300, 1200, 4800], (4, 64): [300, 1200]}
EVAL_EVERY, EVAL_TASKS = 150, 200          # validation along the way
ABLATION_POINT = (1, 64)
# One change at a time from the curve's MAML-KFO row (inner lr 0.4, transform adapted, PSD
# factors, KFO on every parameter). The factors always start at the identity; a factor scale c
# would multiply the first update by c^2, which the inner-lr rows already cover.
ABLATION = {
    "MAML (no KFO)": ("maml", []),
    "MAML-KFO as in the curve": ("maml_kfo", []),
    "inner lr 0.1": ("maml_kfo", ["algorithm.inner_lr=0.1"]),
    "inner lr 0.2": ("maml_kfo", ["algorithm.inner_lr=0.2"]),
    "transform not adapted": ("maml_kfo", ["algorithm.adapt_transform=false"]),
    "factors not PSD": ("maml_kfo", ["algorithm.transform_psd=false"]),
    "KFO on the head only": ("maml_kfo",
                             ["algorithm.transform_params=['classifier.weight', "
                              "'classifier.bias']"]),
    "trained with 3 inner steps": ("maml_kfo", ["algorithm.train_steps=3"]),
    # The control for the row above: MAML itself trained for the 3 steps it is evaluated with.
    "MAML (no KFO), trained with 3 inner steps": ("maml", ["algorithm.train_steps=3"]),
}
# The follow-up the two answers suggest: KFO meta-trained with the 3 steps it is tested with, at
# the point where its 3-step gap collapsed (L2-H64, 1,200 meta-iterations).
FOLLOWUP_POINT, FOLLOWUP_ITERATIONS = (2, 64), 1200


def budget_folder(out: Path, point: Tuple[int, int], budget: int) -> Path:
    """The folder of the runs of `point` at `budget` meta-iterations under `out`."""
    return out / point_name(*point) / f"it{budget}"


def row_run_dir(folder: Path, row: str, seed: int) -> Path:
    """The run folder of `row` (a curve config's stem) for `seed` under a budget's folder."""
    return folder / f"omniglot-5w1s-curve-{row}" / f"seed{seed}"


def ablation_dir(out: Path, label: str) -> Path:
    """The folder of an ablation variant's runs (`label`: a key of `ABLATION`)."""
    return out / "onelayer" / "validation" / f"onelayer-v{list(ABLATION).index(label)}"


def chosen_variant(out: Path) -> Optional[str]:
    """The KFO variant with the best pooled validation accuracy (MAML itself excluded)."""
    scores = {}
    for label in ABLATION:
        results = seed_results(ablation_dir(out, label))
        summary = pooled_summary(results, "accuracy") if len(results) >= 2 else None
        if ABLATION[label][0] == "maml_kfo" and summary is not None:
            scores[label] = summary["mean"]
    return max(scores, key=scores.__getitem__) if scores else None
