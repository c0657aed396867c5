"""The curve's two open questions (docs/reproduction.md, "The budget study"):

1. Does MAML-KFO's gain over MAML survive a longer meta-training budget, or is it a faster
   start? MAML and MAML-KFO at L2-H64 and L4-H64 (the curve's rows and settings), trained to
   300, 1,200 and 4,800 meta-iterations (L2-H64) or 300 and 1,200 (L4-H64), seeds 0 and 1,
   with validation accuracy every `EVAL_EVERY` iterations and 400 test tasks per seed at every
   budget.
2. Why does MAML-KFO lose to MAML at one conv layer? At L1-H64, one change at a time from the
   curve's MAML-KFO row (`ABLATION`), scored on validation tasks; the variant chosen there and
   MAML are then evaluated on test (`test`).

    python -m experiments.budget run --shard 0/2 &  python -m experiments.budget run --shard 1/2
    python -m experiments.budget followup --shard 0/2 &  # KFO trained with 3 steps, L2-H64
    python -m experiments.budget test        # one-step validation; the chosen variant and MAML
                                             # on test (gbml-eval on the validation runs)
    python -m experiments.budget report      # tables + figure, from the run folders
    python -m experiments.budget archive     # copy finished results to experiments/results/budget
    python -m experiments.budget restore     # and back, so a fresh clone goes on from there

A longer budget continues the shorter one's run: the folder of budget B is a copy of budget
B-1's finished folder, resumed with `train.iterations=B` (a resumed run is bit-identical to an
uninterrupted one, so this is the same run as training to B from scratch, at a fraction of the
cost). Every run is resumable (`--resume`), so `run` can be stopped at any time and started
again; `--shard K/N` splits the work between N one-thread processes by seed.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from experiments.curve import (
    CONFIGS,
    _one,
    _root,
    point_name,
    restore,
    sweep_arguments,
)
from gbml_ext.runner.cli import eval_main
from gbml_ext.runner.compare import pooled_summary
from gbml_ext.runner.plots import pyplot
from gbml_ext.runner.report import format_metric, markdown_table

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
ARCHIVE = Path(__file__).resolve().parent / "results" / "budget"
KEEP = ("config.json", "metrics.jsonl", "results.json", "eval-validation-1steps-400tasks.json",
        "eval-test-3steps-400tasks.json", "eval-test-1steps-400tasks.json")


def budget_folder(out: Path, point: Tuple[int, int], budget: int) -> Path:
    return out / point_name(*point) / f"it{budget}"


def _run_dir(folder: Path, row: str, seed: int) -> Path:
    return folder / f"omniglot-5w1s-curve-{row}" / f"seed{seed}"


def _done(run_dir: Path, iterations: int) -> bool:
    path = run_dir / "results.json"
    return path.is_file() and json.loads(path.read_text()).get("iterations_done") == iterations


def _common(root: Path, point: Tuple[int, int]) -> List[str]:
    return [f"data.root='{_root(root)}'", "algorithm.path=per-task", "threads=1",
            f"model.options={{layers={point[0]}, hidden={point[1]}}}"]


def _budget_stage(root: Path, out: Path, point: Tuple[int, int], row: str, seed: int,
                  index: int) -> None:
    budgets = BUDGETS[point]
    budget = budgets[index]
    run_dir = _run_dir(budget_folder(out, point, budget), row, seed)
    if _done(run_dir, budget):
        return
    if index > 0 and not (run_dir / "checkpoint.pt").exists():
        previous = _run_dir(budget_folder(out, point, budgets[index - 1]), row, seed)
        if not _done(previous, budgets[index - 1]):
            return  # the shorter budget is not finished yet
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "metrics.jsonl", "checkpoint.pt"):
            shutil.copy2(previous / name, run_dir / name)
    _one(CONFIGS / f"{row}.toml", seed,
         _common(root, point) + [f"train.iterations={budget}", f"train.eval_every={EVAL_EVERY}",
                                 f"train.eval_tasks={EVAL_TASKS}"],
         budget_folder(out, point, budget))


def _ablation_run(root: Path, out: Path, label: str, seed: int) -> bool:
    row, overrides = ABLATION[label]
    index = list(ABLATION).index(label)
    return _one(CONFIGS / f"{row}.toml", seed,
                _common(root, ABLATION_POINT) + overrides + [f"name='onelayer-v{index}'",
                                                             "evaluation.split=validation"],
                out / "onelayer" / "validation")


def followup(seeds: Sequence[int], root: Path, out: Path, shard: Tuple[int, int]) -> None:
    """MAML-KFO meta-trained with 3 inner steps at FOLLOWUP_POINT for FOLLOWUP_ITERATIONS."""
    k, n = shard
    for seed in [s for i, s in enumerate(seeds) if i % n == k]:
        _one(CONFIGS / "maml_kfo.toml", seed,
             _common(root, FOLLOWUP_POINT) + [
                 "algorithm.train_steps=3", f"train.iterations={FOLLOWUP_ITERATIONS}",
                 f"train.eval_every={EVAL_EVERY}", f"train.eval_tasks={EVAL_TASKS}",
                 "name='followup-kfo-3steps'"],
             out / "followup")


def followup_table(out: Path) -> Optional[str]:
    folder = out / "followup" / "followup-kfo-3steps"
    results = [r for r in _results(folder) if r.get("iterations_done") == FOLLOWUP_ITERATIONS]
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


def run(seeds: Sequence[int], root: Path, out: Path, max_minutes: float,
        shard: Tuple[int, int]) -> None:
    """Shortest budgets first, then the one-layer ablation, then the longer budgets."""
    start = time.monotonic()
    k, n = shard
    mine = [s for i, s in enumerate(seeds) if i % n == k]
    jobs = []
    depth = max(len(b) for b in BUDGETS.values())
    for index in range(depth):
        for seed in mine:
            for point, budgets in BUDGETS.items():
                if index < len(budgets):
                    for row in ROWS:
                        jobs.append(lambda p=point, r=row, s=seed, i=index:
                                    _budget_stage(root, out, p, r, s, i))
        if index == 0:
            jobs += [lambda label=label, s=seed: _ablation_run(root, out, label, s)
                     for seed in mine for label in ABLATION]
    for job in jobs:
        if (time.monotonic() - start) / 60 > max_minutes:
            print(f"budget: --max-minutes {max_minutes:g} reached; run again to go on.")
            return
        job()


def _results(folder: Path) -> List[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("seed*/results.json"))]


def chosen_variant(out: Path) -> Optional[str]:
    """The KFO variant with the best pooled validation accuracy (MAML itself excluded)."""
    scores = {}
    for label in ABLATION:
        results = _results(_ablation_dir(out, label))
        if ABLATION[label][0] == "maml_kfo" and len(results) >= 2:
            scores[label] = pooled_summary(results, "accuracy")["mean"]
    return max(scores, key=scores.__getitem__) if scores else None


def _evaluate(run_dir: Path, root: Path, split: str, steps: int) -> None:
    """`gbml-eval RUN --split SPLIT --steps STEPS --tasks 400` on a finished run (no
    retraining), unless its eval-*.json is already beside the run's results."""
    if (run_dir / f"eval-{split}-{steps}steps-400tasks.json").is_file():
        return
    if eval_main([str(run_dir), "--split", split, "--steps", str(steps), "--tasks", "400",
                  "--no-progress", f"data.root='{_root(root)}'"]):
        print(f"budget: gbml-eval {run_dir} failed (its error is above).", file=sys.stderr)


def _ablation_dir(out: Path, label: str) -> Path:
    return out / "onelayer" / "validation" / f"onelayer-v{list(ABLATION).index(label)}"


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
            _evaluate(_ablation_dir(out, label) / f"seed{seed}", root, "validation", 1)
    for label in dict.fromkeys(["MAML (no KFO)", "MAML (no KFO), trained with 3 inner steps",
                                "MAML-KFO as in the curve", choice]):
        for seed in seeds:
            _evaluate(_ablation_dir(out, label) / f"seed{seed}", root, "test", 3)
    # Every finished budget run after the one step it was meta-trained for, on test.
    for point, budgets in BUDGETS.items():
        for budget in budgets:
            for row in ROWS:
                for seed in seeds:
                    run_dir = _run_dir(budget_folder(out, point, budget), row, seed)
                    if _done(run_dir, budget):
                        _evaluate(run_dir, root, "test", 1)


def _validation_curve(run_dir: Path) -> Dict[int, float]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    curve = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record.get("split") == "validation" and record.get("accuracy") is not None:
            curve[record["iteration"]] = 100 * record["accuracy"]
    return curve


def _evaluations(folder: Path, split: str, steps: int) -> List[dict]:
    return [{"evaluation": json.loads(p.read_text())["evaluation"]} for p in
            sorted(folder.glob(f"seed*/eval-{split}-{steps}steps-400tasks.json"))]


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
                    results = ([r for r in _results(runs) if r.get("iterations_done") == budget]
                               if steps == 3 else _evaluations(runs, "test", 1))
                    if results:
                        means[row] = pooled_summary(results, "accuracy")
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
        folder = _ablation_dir(out, label)
        results = _results(folder)
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
    for ax, (point, budgets) in zip(axes, BUDGETS.items()):
        for row, colour in zip(ROWS, ("tab:blue", "tab:red")):
            for seed in (0, 1):
                curve: Dict[int, float] = {}
                for budget in budgets:  # each longer run's history holds the shorter one's
                    curve.update(_validation_curve(
                        _run_dir(budget_folder(out, point, budget), row, seed)))
                if curve:
                    xs = sorted(curve)
                    ax.plot(xs, [curve[x] for x in xs], color=colour,
                            linestyle="-" if seed == 0 else "--",
                            label=f"{row} seed {seed}")
                    drawn = True
            for budget in budgets:
                runs = budget_folder(out, point, budget) / f"omniglot-5w1s-curve-{row}"
                three = [r for r in _results(runs) if r.get("iterations_done") == budget]
                for results, marker in ((three, "o"), (_evaluations(runs, "test", 1), "s")):
                    if results:
                        s = pooled_summary(results, "accuracy")
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
    fig.tight_layout()
    if drawn:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn


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
    copied = 0
    for results in out.rglob("seed*/results.json"):
        target = ARCHIVE / results.parent.relative_to(out)
        target.mkdir(parents=True, exist_ok=True)
        for name in KEEP:
            if (results.parent / name).is_file():
                shutil.copy2(results.parent / name, target / name)
        copied += 1
    for name in ("budget.md", "budget.png"):
        if (out / name).is_file():
            shutil.copy2(out / name, ARCHIVE / name)
    print(f"budget: archived {copied} finished runs under {ARCHIVE}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.budget",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("command",
                        choices=("run", "followup", "test", "report", "archive", "restore"))
    sweep_arguments(parser, "runs/budget",
                    "run the K-th of every N seeds (run N processes to split)")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.seeds, args.root, args.out, args.max_minutes, args.shard)
    elif args.command == "followup":
        followup(args.seeds, args.root, args.out, args.shard)
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
