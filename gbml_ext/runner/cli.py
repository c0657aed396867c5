"""The command lines, one grammar for all three:

    gbml-train   CONFIG [key=value ...] [--resume | --overwrite] [--allow-change KEY ...]
    gbml-compare CONFIG [CONFIG ...] [--seeds 0 1 2] [--out DIR] [--resume] [key=value ...]
    gbml-eval    RUN_DIR [--tasks N] [--steps K] [--split test|validation] [key=value ...]

Overrides are bare `key=value` words anywhere on the line. `--print-config` shows the resolved
config with every key's type and range. Every user-facing error prints one or two lines that
name the problem and the fix and exits non-zero; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, List, Optional, Sequence, Tuple

from ..batched import BatchedPathUnsupported
from ..data.errors import DatasetError
from .config import ConfigError, describe_config, load_config
from .errors import RunError, RunInterrupted

__all__ = ["eval_main", "main", "run_command", "split_overrides"]

USER_ERRORS = (ConfigError, DatasetError, RunError, BatchedPathUnsupported)


def split_overrides(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Separates bare `key=value` words (overrides) from everything else.

    Example:
        >>> split_overrides(["a.toml", "--resume", "train.lr=0.1", "--out=x"])
        (['a.toml', '--resume', '--out=x'], ['train.lr=0.1'])
    """
    rest: List[str] = []
    overrides: List[str] = []
    for word in argv:
        is_override = "=" in word and not word.startswith("-") and not word.endswith(".toml")
        (overrides if is_override else rest).append(word)
    return rest, overrides


def common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def run_command(prog: str, body: Callable[[], int], debug: bool) -> int:
    """Runs `body`, turning user-facing errors into a short message and an exit code."""
    try:
        return body()
    except RunInterrupted as error:
        print(f"{prog}: stopped: {error}", file=sys.stderr)
        return error.exit_code
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, ConfigError) else 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted. Training is checkpointed; continue with --resume, or "
              f"re-evaluate a finished run with gbml-eval RUN_DIR.", file=sys.stderr)
        return 130


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`gbml-train`: meta-train, evaluate and report one config."""
    rest, overrides = split_overrides(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="gbml-train", description="Meta-train, evaluate and report one experiment config.",
        epilog="Example: gbml-train experiments/configs/synthetic/linreg_shallow.toml "
               "train.iterations=200 seed=1. Overrides are key=value words anywhere.")
    parser.add_argument("config", nargs="?", help="TOML config file (default: built-in defaults)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true",
                       help="continue from the run folder's last checkpoint (fresh if none)")
    group.add_argument("--overwrite", action="store_true",
                       help="move an existing run in the folder aside, then start over")
    parser.add_argument("--allow-change", nargs="+", default=[], metavar="KEY",
                        help="with --resume: keys allowed to differ from the checkpoint "
                             "(algorithm.inner_lr, train.lr, device)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config with each key's type and range, then exit")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    common_options(parser)
    args = parser.parse_args(rest)

    def body() -> int:
        config = load_config(args.config, overrides)
        if args.print_config:
            print(describe_config(config), end="")
            return 0
        from .loop import train

        result = train(config, resume=args.resume, progress=not args.no_progress,
                       overwrite=args.overwrite, allow_change=args.allow_change)
        if result.results:
            print((result.run_dir / "results.md").read_text())
            print(f"wrote {result.run_dir}/results.json, results.md, metrics.jsonl, training.png")
        return 0

    return run_command("gbml-train", body, args.debug)


def eval_main(argv: Optional[Sequence[str]] = None) -> int:
    """`gbml-eval`: re-evaluate a trained run without retraining."""
    rest, overrides = split_overrides(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="gbml-eval", description="Re-evaluate a trained run folder without retraining; "
        "writes eval-<split>-<steps>steps-<tasks>tasks.json beside its results.")
    parser.add_argument("run_dir", help="a folder written by gbml-train (runs/<name>/seed<N>)")
    parser.add_argument("--tasks", type=int, help="held-out tasks (default: the run's)")
    parser.add_argument("--steps", type=int, help="inner steps at test time (default: the run's)")
    parser.add_argument("--split", choices=("test", "validation"), help="default: the run's")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    common_options(parser)
    args = parser.parse_args(rest)

    def body() -> int:
        from .report import results_markdown
        from .saved import reevaluate

        result = reevaluate(args.run_dir, args.tasks, args.steps, args.split, overrides,
                            device=args.device, progress=not args.no_progress)
        print(results_markdown(result))
        print(f"wrote {result['path']}")
        return 0

    return run_command("gbml-eval", body, args.debug)


if __name__ == "__main__":
    sys.exit(main())
