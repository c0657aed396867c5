"""The front ends of `gbml-train` and `gbml-eval` (`gbml-compare`'s is `gbml_ext.compare`); their
shared grammar and error handling are in `options`:

    gbml-train   [CONFIG] [--resume | --overwrite] [--allow-change KEY ...]
                 [--trust-checkpoint] [key=value ...]
    gbml-train   --list-configs
    gbml-eval    RUN_DIR [--tasks N] [--steps K] [--split test|validation] [--device D]
                 [--out DIR] [--trust-checkpoint] [key=value ...]

Overrides are bare `key=value` words anywhere on the line. `--print-config` shows the resolved
config with every key's type and range. Every user-facing error prints one or two lines that
name the problem and the fix and exits non-zero; `--debug` shows the traceback instead.
A checkpoint that would run code when read is refused unless `--trust-checkpoint` is given
(`checkpoint.read_checkpoint`).
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from .checkpoint import trust_checkpoints
from .config import describe_config, load_config
from .errors import ResultNotSaved
from .options import command_parser, exit_code_of, parse_command
from .shipped import list_shipped_configs, shipped_configs_dir

__all__ = ["eval_main", "main"]

_TRUST_HELP = ("read the run's checkpoint even if it holds objects that run code when loaded "
               "(only for a checkpoint from someone you trust)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`gbml-train`: meta-train, evaluate and report one config.

    Example:
        >>> main(["--print-config", "train.iterations=7"])  # doctest: +ELLIPSIS
        # top level
        ...
        0
    """
    parser = command_parser(
        "gbml-train", "Meta-train, evaluate and report one experiment config.",
        "gbml-train experiments/configs/synthetic/linreg_shallow.toml train.iterations=200 "
        "seed=1", runs=True)
    parser.add_argument("config", nargs="?", help="TOML config file, or the name of a shipped "
                        "one (see --list-configs; default: built-in defaults)")
    parser.add_argument("--trust-checkpoint", action="store_true", help="with --resume: "
                        + _TRUST_HELP)
    parser.add_argument("--list-configs", action="store_true",
                        help="list the configs shipped with gbml_ext, by the names CONFIG "
                             "takes, then exit")
    args, overrides = parse_command(parser, argv)

    def body() -> int:
        if args.list_configs:
            print(f"# the configs shipped with gbml_ext, in {shipped_configs_dir()}")
            print("\n".join(list_shipped_configs()))
            return 0
        config = load_config(args.config, overrides)
        if args.print_config:
            print(describe_config(config), end="")
            return 0
        from .loop import train

        with trust_checkpoints(args.trust_checkpoint):
            result = train(config, resume=args.resume, progress=not args.no_progress,
                           overwrite=args.overwrite, allow_change=args.allow_change)
        if result.results:
            print((result.run_dir / "results.md").read_text())
            written = [name for name in ("results.json", "results.md", "metrics.jsonl",
                                         "training.png") if (result.run_dir / name).is_file()]
            print(f"wrote {result.run_dir}/{', '.join(written)}")
        return 0

    return exit_code_of("gbml-train", body, args.debug)


def eval_main(argv: Optional[Sequence[str]] = None) -> int:
    """`gbml-eval`: re-evaluate a trained run without retraining. The result is printed even
    when it cannot be saved (then the command says where it could not write, and exits 1)."""
    parser = command_parser(
        "gbml-eval", "Re-evaluate a trained run folder from its newest checkpoint, without "
        "retraining; writes eval-<split>-<steps>steps-<tasks>tasks.{json,md} beside its results "
        "(or under --out). Config changes apply to the run's saved config.",
        "gbml-eval runs/omniglot-5w1s-maml/seed0 --tasks 2000 --steps 5 data.root=/data/omniglot",
        runs=False)
    parser.add_argument("run_dir", help="a folder written by gbml-train (runs/<name>/seed<N>)")
    parser.add_argument("--tasks", type=int, help="held-out tasks (default: the run's)")
    parser.add_argument("--steps", type=int, help="inner steps at test time (default: the run's)")
    parser.add_argument("--split", choices=("test", "validation"), help="default: the run's")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="write the eval files here instead of beside the run's results")
    parser.add_argument("--trust-checkpoint", action="store_true", help=_TRUST_HELP)
    args, overrides = parse_command(parser, argv)

    def body() -> int:
        from .report import results_markdown
        from .saved import read_run_config, reevaluate

        if args.print_config:
            with trust_checkpoints(args.trust_checkpoint):
                config = read_run_config(args.run_dir, overrides, args.tasks, args.steps,
                                         args.split)
            print(describe_config(config), end="")
            return 0
        try:
            result = reevaluate(args.run_dir, args.tasks, args.steps, args.split, overrides,
                                device=args.device, progress=not args.no_progress, out=args.out,
                                trust=args.trust_checkpoint)
        except ResultNotSaved as error:
            print(results_markdown(error.result))
            raise
        print(results_markdown(result))
        print(f"wrote {result['path']}")
        return 0

    return exit_code_of("gbml-eval", body, args.debug)


if __name__ == "__main__":
    sys.exit(main())
