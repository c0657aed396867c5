"""`gbml-compare`: configs side by side on the same tasks and seeds, and their table.

    gbml-compare CONFIG_A CONFIG_B ... --seeds 0 1 2 train.iterations=500 --out runs/cmp

Every run folder is checked before the first run starts: two runs that would share a folder
or a name, and (without --resume or --overwrite) folders that already hold something, are
refused up front. The grammar, and the one-line errors, are gbml-train's (`runner.options`).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

from ..launch import (
    DONE,
    LAUNCHERS,
    build_plan,
    format_status,
    launch,
    launcher_arguments,
    parse_slurm_options,
    plan_status,
)
from ..runner.config import describe_config, load_config
from ..runner.errors import RunError
from ..runner.options import command_parser, exit_code_of, parse_command
from ..runner.report import compare_table
from .comparison import collect_results, move_comparison_aside, run_in_process, write_comparison

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`gbml-compare`: run configs side by side; table, JSON and PNG.

    Returns:
        the exit code: 0, 1 for a run's error, 2 for a usage or config error (one line on
        stderr each), 128 + the signal for an interruption.

    Example:
        >>> main(["no-such-config.toml"])  # prints the one-line error on stderr
        2
    """
    parser = command_parser(
        "gbml-compare", "Run configs side by side on the same tasks and seeds, and tabulate "
        "them against the first.",
        "gbml-compare maml.toml fomaml.toml --seeds 0 1 2 --out runs/cmp train.iterations=500",
        runs=True)
    parser.add_argument("configs", nargs="+", help="TOML configs; the first is the baseline")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="N")
    parser.add_argument("--in-process", action="store_true",
                        help="run in this process (faster; peak memory is then shared)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="put every run under this folder, with compare.{md,json,png}")
    launcher_arguments(parser)
    args, overrides = parse_command(parser, argv)

    def body() -> int:
        if args.print_config:
            for path in args.configs:
                print(f"# {path}\n" + describe_config(load_config(path, overrides)))
            return 0
        detached = LAUNCHERS[args.launcher].detached
        plan = build_plan(args.configs, args.seeds, overrides, args.out,
                          args.resume or args.status or detached, args.overwrite)
        if args.status:
            print(format_status(plan, plan_status(plan, allow_change=args.allow_change)))
            return 0
        if args.overwrite and args.out:
            move_comparison_aside(Path(args.out))
        if args.in_process:
            if args.launcher != "local" or args.jobs != 1:
                raise RunError("--in-process runs one run after another here; drop "
                               "--launcher / --jobs, or drop --in-process.")
            run_in_process(plan, args.resume, args.overwrite, args.allow_change,
                           not args.no_progress)
        else:
            states = launch(plan, args.launcher, args.jobs, args.threads,
                            parse_slurm_options(args.slurm), args.wait or not detached,
                            args.overwrite, args.allow_change)
            if detached and not args.wait and any(s.state != DONE for s in states):
                print("gbml-compare: submitted; see progress with the same command and "
                      "--status, and the table with --wait (or once every run is done).",
                      file=sys.stderr)
                return 0
        runs = collect_results(plan, args.allow_change)
        try:
            print(compare_table(runs))
        except ValueError as error:  # a regression run among classifiers
            raise RunError(str(error)) from error
        if args.out:
            write_comparison(Path(args.out), runs)
            print(f"wrote {args.out}/compare.md, compare.json, compare.png", file=sys.stderr)
        else:
            folders = ", ".join(str(run.run_dir) for run in plan[:3])
            print(f"gbml-compare: the table is not saved; each run's results.json is in its "
                  f"folder ({folders}{', ...' if len(plan) > 3 else ''}). Add --out DIR to "
                  f"write compare.md, compare.json and compare.png there.", file=sys.stderr)
        return 0

    return exit_code_of("gbml-compare", body, args.debug)


if __name__ == "__main__":
    sys.exit(main())
