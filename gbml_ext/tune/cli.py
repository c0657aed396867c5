"""`gbml-tune`: a hyperparameter search on validation tasks, with Optuna, over the search space
in a config's `[tune]` table; each trial is a run folder launched like any run of a plan.

    gbml-tune CONFIG --out DIR [--trials N] [--jobs N | --launcher slurm --slurm KEY=VALUE ...]
              [--status] [key=value ...]

The same command again continues the study: finished trials are kept, interrupted ones resume.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..launch import LAUNCHERS, parse_slurm_options
from ..runner.config import describe_config
from ..runner.options import command_parser, exit_code_of, parse_command
from .report import (
    BEST_FILE,
    REPORT_FILES,
    edge_notes,
    trial_rows,
    trials_markdown,
    write_report,
)
from .space import TuneSetup, read_setup

__all__ = ["main"]


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a TOML config with a [tune] table")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="the study's folder: its store, trials/trial-NNNN, the report")
    parser.add_argument("--trials", type=int, default=None, metavar="N",
                        help="trials in the study (default: tune.trials); more continues a "
                             "finished study")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="local",
                        help="local: worker processes here (default); slurm: one Slurm job "
                             "per trial through submitit")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="trials at once (local worker processes, or Slurm jobs)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="local: torch threads per trial (default 1 when --jobs > 1)")
    parser.add_argument("--slurm", nargs="*", default=[], metavar="KEY=VALUE",
                        help="Slurm job settings: partition=... time=MINUTES gpus_per_node=N "
                             "cpus_per_task=N mem=16G ...")
    parser.add_argument("--status", action="store_true",
                        help="show the study's trials so far; run nothing")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`gbml-tune`: tune a config's `[tune]` space on validation tasks.

    Example:
        >>> main(["experiments/configs/synthetic/linreg_tune.toml", "--out", "runs/t",
        ...       "--trials", "0"])
        2
    """
    parser = command_parser(
        "gbml-tune", "Tune a config's [tune] search space on validation tasks with Optuna: "
        "each trial is a run folder; the same command again continues the study.",
        "gbml-tune experiments/configs/synthetic/linreg_tune.toml --trials 8 --out runs/tune "
        "--jobs 2", runs=False)
    _arguments(parser)
    args, overrides = parse_command(parser, argv)

    def body() -> int:
        setup = read_setup(args.config, overrides, args.trials)
        out = Path(args.out)
        if args.print_config:
            print(describe_config(setup.config), end="")
            print(f"# [tune]: {setup.trials} trials, validation {setup.metric} "
                  f"({setup.direction}), {setup.sampler} sampler, {setup.pruner} pruner")
            for key, distribution in setup.space.items():
                print(f"# {key}: {distribution}")
            return 0
        if args.status:
            return _status(setup, out)
        from .driver import run_study

        study = run_study(setup, out, args.launcher, args.jobs, args.threads,
                          parse_slurm_options(args.slurm),
                          after_batch=lambda s: write_report(s, setup, out))
        written = write_report(study, setup, out)
        print((out / "trials.md").read_text())
        names = ", ".join(p.name for p in written)
        print(f"wrote {out}/{{{names}}}", file=sys.stderr)
        if (out / BEST_FILE).exists():
            best = study.best_trial
            print(f"gbml-tune: best: trial {best.number}, validation {setup.metric} "
                  f"{best.value:.6g}. Final run on the test split: gbml-train {out / BEST_FILE} "
                  f"(or gbml-compare {out / BEST_FILE} --seeds 0 1 2 --out DIR).",
                  file=sys.stderr)
            for note in edge_notes(setup, best.params):
                print(f"gbml-tune: note: {note}", file=sys.stderr)
        return 0

    return exit_code_of("gbml-tune", body, args.debug)


def _status(setup: TuneSetup, out: Path) -> int:
    """Prints the trials in `out`'s store, without creating one."""
    from .study import JOURNAL_STORE, SQLITE_STORE, open_study

    if not ((out / SQLITE_STORE).exists() or (out / JOURNAL_STORE).exists()):
        print(f"gbml-tune: no study in {out} yet; the same command without --status starts "
              f"it.", file=sys.stderr)
        return 0
    study, _ = open_study(setup, out)
    numbers = [t.number for t in study.get_trials(deepcopy=False)
               if t.state.name == "COMPLETE"]
    best = study.best_trial.number if numbers else None
    print(trials_markdown(trial_rows(study, setup, out), setup, best), end="")
    print(f"# {len(study.trials)} of {setup.trials} trials; report files: "
          f"{', '.join(REPORT_FILES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
