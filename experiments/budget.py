"""The curve's two open questions (docs/reproduction.md, "The budget study"):

1. Does MAML-KFO's gain over MAML survive a longer meta-training budget, or is it a faster
   start? MAML and MAML-KFO at L2-H64 and L4-H64 (the curve's rows and settings), trained to
   300, 1,200 and 4,800 meta-iterations (L2-H64) or 300 and 1,200 (L4-H64), seeds 0 and 1,
   with validation accuracy every `EVAL_EVERY` iterations and 400 test tasks per seed at every
   budget.
2. Why does MAML-KFO lose to MAML at one conv layer? At L1-H64, one change at a time from the
   curve's MAML-KFO row (`ABLATION`), scored on validation tasks; the variant chosen there and
   MAML are then evaluated on test (`test`).

    python -m experiments.budget run --jobs 2       # every stage, shortest budgets first
    python -m experiments.budget run --status       # done / running / failed, per run
    python -m experiments.budget followup --jobs 2  # KFO trained with 3 steps, L2-H64
    python -m experiments.budget test        # one-step validation; the chosen variant and MAML
                                             # on test (gbml-eval on the validation runs)
    python -m experiments.budget report      # tables + figure, from the run folders
    python -m experiments.budget archive     # copy finished results to experiments/results/budget
    python -m experiments.budget restore     # and back, so a fresh clone goes on from there

A longer budget continues the shorter one's run: the folder of budget B is a copy of budget
B-1's finished folder, resumed with `train.iterations=B` (a resumed run is bit-identical to an
uninterrupted one, so this is the same run as training to B from scratch, at a fraction of the
cost). Every run is resumable, so `run` can be stopped at any time (Ctrl-C: every run
checkpoints) and started again; `--jobs N` runs N at once, `--launcher slurm` as Slurm jobs
(a longer stage is planned once its shorter one is done: with Slurm and no --wait, run the
same command again to go on).

Tables and figure: experiments/budget_report.py (`report`, `archive`); the layout both share:
experiments/budget_grid.py.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from experiments.budget_grid import (
    ABLATION,
    ABLATION_POINT,
    BUDGETS,
    EVAL_EVERY,
    EVAL_TASKS,
    FOLLOWUP_ITERATIONS,
    FOLLOWUP_POINT,
    ROWS,
    ablation_dir,
    budget_folder,
    chosen_variant,
    row_run_dir,
)
from experiments.budget_report import ARCHIVE, archive, report
from experiments.curve import CONFIGS
from experiments.sweep import Entry, data_root, launch_sweep, restore, sweep_arguments, sweep_plan
from gbml_ext.launch import RunSpec, plan_status
from gbml_ext.runner.cli import eval_main


def _done(run_dir: Path, iterations: int) -> bool:
    path = run_dir / "results.json"
    return path.is_file() and json.loads(path.read_text()).get("iterations_done") == iterations


def _common(root: Path, point: Tuple[int, int]) -> List[str]:
    return [f"data.root='{data_root(root)}'", "algorithm.path=per-task", "threads=1",
            f"model.options={{layers={point[0]}, hidden={point[1]}}}"]


def stage_entry(root: Path, out: Path, point: Tuple[int, int], row: str, seed: int,
                index: int) -> Optional[Entry]:
    """The run of budget stage `index` of (point, row, seed), or None if it is done or its
    shorter stage is not. A stage starts as a copy of its shorter stage's finished run."""
    budgets = BUDGETS[point]
    budget = budgets[index]
    run_dir = row_run_dir(budget_folder(out, point, budget), row, seed)
    if _done(run_dir, budget):
        return None
    if index > 0 and not (run_dir / "checkpoint.pt").exists():
        previous = row_run_dir(budget_folder(out, point, budgets[index - 1]), row, seed)
        if not _done(previous, budgets[index - 1]):
            return None  # the shorter budget is not finished yet
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "metrics.jsonl", "checkpoint.pt"):
            shutil.copy2(previous / name, run_dir / name)
    return Entry(CONFIGS / f"{row}.toml", seed,
                 _common(root, point) + [f"train.iterations={budget}",
                                         f"train.eval_every={EVAL_EVERY}",
                                         f"train.eval_tasks={EVAL_TASKS}"],
                 budget_folder(out, point, budget))


def _ablation_entry(root: Path, out: Path, label: str, seed: int) -> Entry:
    row, overrides = ABLATION[label]
    index = list(ABLATION).index(label)
    return Entry(CONFIGS / f"{row}.toml", seed,
                 _common(root, ABLATION_POINT) + overrides + [f"name='onelayer-v{index}'",
                                                              "evaluation.split=validation"],
                 out / "onelayer" / "validation")


def followup_plan(seeds: Sequence[int], root: Path, out: Path) -> List[RunSpec]:
    """MAML-KFO meta-trained with 3 inner steps at FOLLOWUP_POINT for FOLLOWUP_ITERATIONS."""
    return sweep_plan([Entry(CONFIGS / "maml_kfo.toml", seed, _common(root, FOLLOWUP_POINT) + [
        "algorithm.train_steps=3", f"train.iterations={FOLLOWUP_ITERATIONS}",
        f"train.eval_every={EVAL_EVERY}", f"train.eval_tasks={EVAL_TASKS}",
        "name='followup-kfo-3steps'"], out / "followup") for seed in seeds])


def plan(seeds: Sequence[int], root: Path, out: Path) -> List[RunSpec]:
    """The runs that can go now: the one-layer ablation, and for every (point, row, seed)
    the first budget stage not done whose shorter stage is (shortest budgets first)."""
    entries = [_ablation_entry(root, out, label, seed) for seed in seeds for label in ABLATION]
    for seed in seeds:
        for point, budgets in BUDGETS.items():
            for row in ROWS:
                for index in range(len(budgets)):
                    entry = stage_entry(root, out, point, row, seed, index)
                    if entry is not None:
                        entries.append(entry)
                        break
    return sweep_plan(entries)


def run(args: argparse.Namespace) -> int:
    """Launches what can go now, then the stages that became ready, until nothing is left
    (with Slurm and no --wait: one round; run again to go on)."""
    while True:
        runs = plan(args.seeds, args.root, args.out)
        if args.status or all(state.state == "done" for state in plan_status(runs)):
            return launch_sweep(runs, args, "budget")
        code = launch_sweep(runs, args, "budget")
        if code or (args.launcher == "slurm" and not args.wait):
            return code


def _evaluate(run_dir: Path, root: Path, split: str, steps: int) -> None:
    """`gbml-eval RUN --split SPLIT --steps STEPS --tasks 400` on a finished run (no
    retraining), unless its eval-*.json is already beside the run's results."""
    if (run_dir / f"eval-{split}-{steps}steps-400tasks.json").is_file():
        return
    if eval_main([str(run_dir), "--split", split, "--steps", str(steps), "--tasks", "400",
                  "--no-progress", f"data.root='{data_root(root)}'"]):
        print(f"budget: gbml-eval {run_dir} failed (its error is above).", file=sys.stderr)


def test(seeds: Sequence[int], root: Path, out: Path) -> None:
    """One-layer variants after one inner step on validation (the step count of meta-training),
    then MAML, the curve's MAML-KFO and the variant chosen on validation on the test split, all
    from the validation runs' checkpoints; and every finished budget run on test after one
    step. Evaluations already made are reused."""
    choice = chosen_variant(out)
    if choice is None:
        sys.exit("budget: the one-layer ablation has not finished on validation yet; run `run`.")
    print(f"budget: chosen on validation: {choice!r}")
    for label in ABLATION:
        for seed in seeds:
            _evaluate(ablation_dir(out, label) / f"seed{seed}", root, "validation", 1)
    for label in dict.fromkeys(["MAML (no KFO)", "MAML (no KFO), trained with 3 inner steps",
                                "MAML-KFO as in the curve", choice]):
        for seed in seeds:
            _evaluate(ablation_dir(out, label) / f"seed{seed}", root, "test", 3)
    # Every finished budget run after the one step it was meta-trained for, on test.
    for point, budgets in BUDGETS.items():
        for budget in budgets:
            for row in ROWS:
                for seed in seeds:
                    run_dir = row_run_dir(budget_folder(out, point, budget), row, seed)
                    if _done(run_dir, budget):
                        _evaluate(run_dir, root, "test", 1)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.budget",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("command",
                        choices=("run", "followup", "test", "report", "archive", "restore"))
    sweep_arguments(parser, "runs/budget")
    args = parser.parse_args(argv)
    if args.command in ("run", "followup"):
        code = (run(args) if args.command == "run" else
                launch_sweep(followup_plan(args.seeds, args.root, args.out), args, "budget"))
        if code or args.status:
            return code
    elif args.command == "test":
        test(args.seeds, args.root, args.out)
    elif args.command == "archive":
        archive(args.out)
        return 0
    elif args.command == "restore":
        # A longer budget needs its shorter one's checkpoint, which is not archived: `run`
        # retrains it first.
        restore(args.out, ARCHIVE, "budget")
    report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
