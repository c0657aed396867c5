"""Command line: `gbml-train CONFIG [key=value ...] [--resume]` (also `python -m gbml_ext.runner`)."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from .config import ConfigError, load_config

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gbml-train", description="Meta-train, evaluate and report one experiment config.",
        epilog="Example: gbml-train experiments/configs/synthetic/linreg_shallow.toml "
               "train.iterations=200 seed=1")
    parser.add_argument("config", nargs="?", help="TOML config file (default: built-in defaults)")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides, TOML values")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the run directory's last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if args.config and "=" in args.config and not args.config.endswith(".toml"):
        args.overrides.insert(0, args.config)
        args.config = None
    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as error:
        print(f"gbml-train: {error}", file=sys.stderr)
        return 2
    from .loop import train

    result = train(config, resume=args.resume, progress=not args.no_progress)
    if result.results:
        print((result.run_dir / "results.md").read_text())
        print(f"wrote {result.run_dir}/results.json, results.md, metrics.jsonl, training.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
