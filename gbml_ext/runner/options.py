"""One command-line grammar for the three commands, below their front ends (`cli`,
`gbml_ext.compare`):

    gbml-train   [CONFIG] [--resume | --overwrite] [--allow-change KEY ...] [key=value ...]
    gbml-compare CONFIG [CONFIG ...] [--seeds N ...] [--out DIR] [--in-process]
                 [--resume | --overwrite] [--allow-change KEY ...] [key=value ...]
    gbml-eval    RUN_DIR [--tasks N] [--steps K] [--split test|validation] [--device D]
                 [--out DIR] [key=value ...]

and, for all three, `--set key=value` (the same as a bare `key=value` word), `--print-config`,
`--no-progress` and `--debug`. Overrides are bare `key=value` words anywhere on the line
(values in TOML syntax). Every user-facing error prints one or two lines that name the problem
and the fix and exits non-zero (2 for usage and config errors, 1 for others); `--debug` shows
the traceback instead.
"""
from __future__ import annotations

import argparse
import errno
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import Callable, List, NoReturn, Optional, Sequence, Tuple

import torch

from ..data.errors import DatasetError
from ..fast import BatchedPathUnsupported
from .compat import ALLOWED_CHANGES
from .config import ConfigError, is_config_key
from .errors import RunError, RunInterrupted
from .guards import OUT_OF_MEMORY, is_out_of_memory
from .rundir import WRITABLE_FIX
from .schema import Config

__all__ = ["OVERRIDES_HELP", "USER_ERRORS", "command_parser", "exit_code_of", "is_override",
           "parse_command", "split_overrides"]

USER_ERRORS = (ConfigError, DatasetError, RunError, BatchedPathUnsupported)
OVERRIDES_HELP = ("Config changes are key=value words anywhere on the line, values in TOML "
                  "syntax (e.g. train.iterations=200 'data.root=\"/data/omniglot\"'); "
                  "--print-config lists every key with its type and range.")
# Errors of a file system that refuses a write, and of one that refuses access.
_UNWRITABLE = {errno.EROFS, errno.ENOSPC, errno.EDQUOT}
_DENIED = {errno.EACCES, errno.EPERM}
# A config key as --allow-change takes it: dotted words, not a path or a .toml file.
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*")


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (the full usage is in --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}. See {self.prog} --help.\n")


def is_override(word: str) -> bool:
    """Whether a command-line word is a `key=value` override. A word whose part before the
    first "=" is a config key is one; otherwise a word naming an existing file or folder
    (`runs/lr=0.5/run`) is a path; a word that still reads as `key=value` is an override, whose
    unknown key the config then names in its error.

    Example:
        >>> is_override("train.lr=0.1"), is_override("runs/lr=0.5/run"), is_override("--out=x")
        (True, False, False)
    """
    if "=" not in word or word.startswith("-"):
        return False
    key = word.split("=", 1)[0]
    if is_config_key(key):
        return True
    if Path(word).exists():
        return False
    return bool(_KEY.fullmatch(key))


def split_overrides(argv: Sequence[str],
                    value_options: Sequence[str] = ("--set",)) -> Tuple[List[str], List[str]]:
    """Separates bare `key=value` words (overrides, see `is_override`) from everything else.
    The word after an option in `value_options` is that option's value, whatever it holds.

    Example:
        >>> split_overrides(["a.toml", "--resume", "train.lr=0.1", "--out=x", "--set", "seed=1"])
        (['a.toml', '--resume', '--out=x', '--set', 'seed=1'], ['train.lr=0.1'])
    """
    rest: List[str] = []
    overrides: List[str] = []
    for i, word in enumerate(argv):
        is_value = i > 0 and argv[i - 1] in value_options
        (overrides if is_override(word) and not is_value else rest).append(word)
    return rest, overrides


def _take_allow_change(words: Sequence[str]) -> Tuple[List[str], List[str], Optional[str]]:
    """(the other words, the keys after each --allow-change, an error or None). A key is a
    dotted word, so a config file or folder after the keys stays a positional argument.

    Example:
        >>> _take_allow_change(["--allow-change", "train.lr", "device", "cfg.toml"])
        (['cfg.toml'], ['train.lr', 'device'], None)
    """
    rest: List[str] = []
    keys: List[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--allow-change="):
            keys.append(word.split("=", 1)[1])
        elif word == "--allow-change":
            taken = 0
            while (i + 1 < len(words) and _KEY.fullmatch(words[i + 1])
                   and not words[i + 1].endswith(".toml")):
                keys.append(words[i + 1])
                i, taken = i + 1, taken + 1
            if not taken:
                return rest, keys, "--allow-change needs a KEY (one of " + ", ".join(
                    ALLOWED_CHANGES) + ")"
        else:
            rest.append(word)
        i += 1
    return rest, keys, None


def _take_slurm(words: Sequence[str]) -> Tuple[List[str], List[str]]:
    """(the other words, the `KEY=VALUE` words after each --slurm). A word after --slurm is a
    Slurm setting while its key is a plain word that is not a config key (`time=60`, not
    `seed=1` or `train.lr=0.1`), so overrides may follow the settings.

    Example:
        >>> _take_slurm(["--slurm", "partition=gpu", "time=60", "seed=1", "cfg.toml"])
        (['seed=1', 'cfg.toml'], ['partition=gpu', 'time=60'])
    """
    top_level = {f.name for f in fields(Config)}
    rest: List[str] = []
    settings: List[str] = []
    i = 0
    while i < len(words):
        if words[i] == "--slurm":
            while i + 1 < len(words) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[i + 1]) \
                    and words[i + 1].split("=", 1)[0] not in top_level:
                settings.append(words[i + 1])
                i += 1
        else:
            rest.append(words[i])
        i += 1
    return rest, settings


def command_parser(prog: str, description: str, example: str,
                   runs: bool) -> argparse.ArgumentParser:
    """The parser of a command with the options every command shares.

    Arguments:
        prog: the command's name; description: its first help line.
        example: one example command line, shown at the end of --help with `OVERRIDES_HELP`.
        runs: whether the command starts runs, which adds `--resume | --overwrite` and
            `--allow-change KEY ...`.
    """
    parser = _Parser(prog=prog, description=description, allow_abbrev=False,
                     epilog=f"Example: {example}. {OVERRIDES_HELP}")
    if runs:
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--resume", action="store_true",
                           help="continue a run from its folder's newest checkpoint (it "
                                "re-evaluates a finished run, extends it if train.iterations "
                                "grew; fresh if there is none)")
        group.add_argument("--overwrite", action="store_true",
                           help="move what the run folder holds aside (never deleted), then "
                                "start over")
        parser.add_argument("--allow-change", nargs="+", default=[], metavar="KEY",
                            help="with --resume: keys allowed to differ from the checkpoint's "
                                 f"config ({', '.join(ALLOWED_CHANGES)}); each change is "
                                 "recorded in results.json")
    parser.add_argument("--set", dest="set_overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="a config change (the same as a bare "
                                                  "key=value word)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config with each key's type and range, "
                             "then exit")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parser


def parse_command(parser: argparse.ArgumentParser,
                  argv: Optional[Sequence[str]]) -> Tuple[argparse.Namespace, List[str]]:
    """Parses a command line (`sys.argv[1:]` when None) into (options, overrides).

    Bare `key=value` words and `--set` values become the overrides, in that order; the keys
    after `--allow-change` are checked against `compat.ALLOWED_CHANGES`. A usage error prints
    one line and exits 2.

    Example:
        >>> parser = command_parser("gbml-train", "Train.", "gbml-train CFG", runs=True)
        >>> parser.add_argument("config", nargs="?")  # doctest: +ELLIPSIS
        _StoreAction(...)
        >>> args, overrides = parse_command(parser, ["--resume", "--allow-change", "train.lr",
        ...                                          "cfg.toml", "train.lr=0.1"])
        >>> args.config, args.allow_change, overrides
        ('cfg.toml', ['train.lr'], ['train.lr=0.1'])
    """
    words = list(sys.argv[1:] if argv is None else argv)
    takes_slurm = any("--slurm" in action.option_strings for action in parser._actions)
    slurm: List[str] = []
    if takes_slurm:
        words, slurm = _take_slurm(words)
    value_options = [option for action in parser._actions if action.nargs is None
                     for option in action.option_strings]
    rest, overrides = split_overrides(words, value_options)
    takes_keys = any("--allow-change" in action.option_strings for action in parser._actions)
    keys: List[str] = []
    if takes_keys:
        rest, keys, problem = _take_allow_change(rest)
        if problem:
            parser.error(problem)
    bare = [word for word in rest if "." in word and is_config_key(word)
            and not Path(word).exists()]
    if bare:
        parser.error(f"{bare[0]} is a config key without a value; write {bare[0]}=VALUE")
    args = parser.parse_args(rest)
    if takes_slurm:
        args.slurm = slurm
    if takes_keys:
        bad = sorted(set(keys) - set(ALLOWED_CHANGES))
        if bad:
            parser.error(f"--allow-change {' '.join(bad)}: only "
                         f"{', '.join(ALLOWED_CHANGES)} may change on resume")
        args.allow_change = keys
    bad_sets = [item for item in args.set_overrides if "=" not in item]
    if bad_sets:
        parser.error(f"--set {bad_sets[0]} is not of the form key=value")
    return args, overrides + args.set_overrides


def _file_system_message(error: OSError) -> Optional[str]:
    """One line for an OSError of a file system that refuses a write or access, else None."""
    where = error.filename or "a file"
    if error.errno in _UNWRITABLE:
        return f"cannot write {where} ({error.strerror}). {WRITABLE_FIX}"
    if error.errno in _DENIED:
        return (f"cannot access {where} ({error.strerror}). Check its permissions, or choose "
                f"another folder.")
    return None


def exit_code_of(prog: str, body: Callable[[], int], debug: bool) -> int:
    """Runs a command's `body` and returns its exit code, turning user-facing errors into one
    or two lines on stderr (2 for config errors, 1 for the others, 128 + the signal for an
    interruption); `debug` raises them with their traceback instead.

    Example:
        >>> def body() -> int:
        ...     raise RunError("no such run; give a run folder")
        >>> exit_code_of("gbml-eval", body, debug=False)  # the line goes to stderr
        1
    """
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
    except (*OUT_OF_MEMORY, RuntimeError) as error:  # one a run did not word itself
        if debug or not is_out_of_memory(error):
            raise
        what = "GPU" if isinstance(error, torch.OutOfMemoryError) else "CPU"
        fix = ("Evaluate in smaller chunks (algorithm.tasks_per_chunk=N) or with fewer steps "
               "(--steps N); the run folder was not changed." if prog == "gbml-eval" else
               "Lower train.meta_batch, algorithm.tasks_per_chunk or train.memory_budget_mb, "
               "or algorithm.test_steps to evaluate; nothing was written after the last "
               "checkpoint.")
        print(f"{prog}: error: out of {what} memory ({error or 'no detail'}). {fix}",
              file=sys.stderr)
        return 1
    except OSError as error:
        message = _file_system_message(error)
        if debug or message is None:
            raise
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted. A run that wrote a checkpoint continues with --resume; "
              f"gbml-eval RUN_DIR re-evaluates a finished one.", file=sys.stderr)
        return 130
