"""Every algorithm on real Omniglot: MAML, FOMAML, ANIL, Meta-SGD, Reptile, iMAML, MAML-KFO,
ANIL-KFO, MAML-LinNet and ANIL-LinNet (and learn2learn's MAML as a reference row in 5w1s), on
5-way 1-shot and 20-way 1-shot at one CPU budget per setting, seeds 0 and 1, 600 test tasks.

    python -m experiments.algorithms screen --jobs 2   # 20w1s MAML inner lr on validation
    python -m experiments.algorithms run --jobs 2      # the grid, resumable: run again to go on
    python -m experiments.algorithms run --status      # done / running / failed, per run
    python -m experiments.algorithms restore   # the committed finished runs into runs/algorithms
    python -m experiments.algorithms archive   # finished runs' small files (no checkpoints)
                                               #   from runs/algorithms to experiments/results/
    python -m experiments.algorithms report    # docs/omniglot-algorithms.md's tables, from
                                               #   experiments/results/algorithms (--out DIR)
    python -m experiments.algorithms figure    # docs/img/omniglot-algorithms.png: validation
                                               #   accuracy against meta-iteration
    python -m benchmarks.algorithm_costs --root DATA   # seconds per meta-iteration on a
                                               #   quiet machine, into docs/data/

The rows are experiments/configs/omniglot/{5w1s-all,20w1s-all}/*.toml, one file each over the
setting's base.toml. A run of setting S lives in `<folder>/<S>/<config name>/seed<N>`, the
layout `gbml-compare --out <folder>/<S>` writes; `plan` lists every run of the grid. The settings,
rows and labels are `algorithms_grid`'s, which the tables (`algorithms_report`) share.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from experiments import algorithms_report as report
from experiments.algorithms_grid import (
    RESULTS,
    SETTINGS,
    config_folder,
    rows,
)
from experiments.sweep import (
    Entry,
    archive_runs,
    launch_sweep,
    restore,
    sweep_arguments,
    sweep_plan,
)

# The order runs are started in, by the work one task takes (not measured): ANIL adapts the
# head only; first order before second order; the KFO transform on every conv layer; Reptile's
# 5 steps; iMAML's 8 steps and 5 conjugate-gradient products last.
CHEAPEST_FIRST = ("anil", "anil_linnet", "anil_kfo", "fomaml", "maml", "l2l_maml",
                  "maml_linnet", "metasgd", "maml_kfo", "reptile", "imaml")
RUNS = Path("runs/algorithms")

KEEP = ("config.json", "results.json", "results.md", "metrics.jsonl")

Run = Tuple[Path, int, List[str], Path]


# ---- The grid, for the `run` command ------------------------------------------------------

def plan(settings: Sequence[str], seeds: Sequence[int], root: str | Path,
         out: Path = RUNS) -> List[Run]:
    """Every run of the sweep as (config_path, seed, overrides, out_folder), in the order to
    start them: seed by seed, each seed's settings in the order given, and within a setting the
    cheapest rows first (`CHEAPEST_FIRST`). `out_folder` is the setting's folder, for
    `gbml-compare --out`, which puts the run in `out_folder/<config name>/seed<N>`.

    Example:
        >>> [(p.stem, s) for p, s, _, _ in plan(["5w1s", "20w1s"], [0], "data")][:2]
        [('anil', 0), ('anil_linnet', 0)]
    """
    grid: List[Run] = []
    for seed in seeds:
        for setting in settings:
            present = rows(setting)
            for row in (r for r in CHEAPEST_FIRST if r in present):
                grid.append((config_folder(setting) / f"{row}.toml", seed,
                             [f"data.root='{root}'"], out / setting))
    return grid


# The 20w1s setting's inner learning rate is not published for one inner step in training: it
# is chosen among these on validation tasks (MAML, seed 0, the setting's budget).
SCREEN_RATES = (0.1, 0.2, 0.4)
SCREEN_TASKS = 200


def screen_plan(root: str | Path, out: Path = RUNS) -> List[Run]:
    """The 20w1s inner-lr screen: MAML at each of SCREEN_RATES, scored on validation tasks."""
    return [(config_folder("20w1s") / "maml.toml", 0,
             [f"data.root='{root}'", f"algorithm.inner_lr={lr}", "evaluation.split=validation",
              f"evaluation.tasks={SCREEN_TASKS}", f"name='screen-20w1s-maml-lr{lr}'"],
             out / "screen") for lr in SCREEN_RATES]


def _launch(grid: Sequence[Run], args: argparse.Namespace) -> int:
    return launch_sweep(sweep_plan([Entry(Path(c), s, list(o), Path(f)) for c, s, o, f in grid]),
                        args, "algorithms")


# ---- Archive ------------------------------------------------------------------------------

def archive(runs: Path, results: Path = RESULTS) -> int:
    """Copies the small files (`KEEP`) of every finished run (one with a results.json) under
    `runs` to the same place under `results`; checkpoints stay behind. Returns the runs copied."""
    copied = archive_runs(runs, results, KEEP)
    print(f"algorithms: archived {copied} finished runs from {runs} under {results}")
    return copied


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.algorithms",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("command", choices=("run", "screen", "report", "figure", "archive",
                                            "restore"))
    sweep_arguments(parser, str(RUNS))
    parser.set_defaults(out=None)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS,
                        help="run: the settings to run")
    parser.add_argument("--runs", type=Path, default=RUNS, help="archive: the runs folder")
    parser.add_argument("--doc", type=Path, default=report.DOC, help="report: the page")
    parser.add_argument("--png", type=Path, default=report.FIGURE, help="figure: the image")
    args = parser.parse_args(argv)
    if args.command in ("run", "screen"):
        if not args.root.exists():
            sys.exit(f"algorithms: Omniglot not found at {args.root}; pass --root with the "
                     f"omniglot-py folder or its .tar.gz.")
        runs = args.out or RUNS
        return _launch(plan(args.settings, args.seeds, args.root, runs)
                       if args.command == "run" else screen_plan(args.root, runs), args)
    if args.command == "archive":
        archive(args.runs, args.out or RESULTS)
    elif args.command == "restore":
        restore(args.out or RUNS, RESULTS, "algorithms")
    elif args.command == "report":
        report.write_report(args.out or RESULTS, args.doc, args.seeds)
        print(f"algorithms: wrote the tables into {args.doc}")
    else:
        if not report.figure(args.out or RESULTS, args.png):
            sys.exit(f"algorithms: no validation accuracy under {args.out or RESULTS}; the runs "
                     f"log it every train.eval_every meta-iterations.")
        print(f"algorithms: wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
