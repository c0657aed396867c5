"""A quiet Ctrl-C while a gbml_ext command starts.

`gbml-train`, `gbml-eval`, `gbml-compare` and `gbml-tune` spend their first seconds importing
torch and learn2learn, before their own code runs and can catch anything. A Ctrl-C then would
end in a KeyboardInterrupt traceback; in a process started as one of these commands (or as
`python -m gbml_ext.runner`, or a launcher's worker), `install` makes it one line instead.
Other programs that import gbml_ext are left alone.
"""
from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Callable, Optional, Sequence, Type

# What `sys.excepthook` holds.
ExceptHook = Callable[[Type[BaseException], BaseException, Optional[TracebackType]], object]

__all__ = ["COMMANDS", "command_name", "install", "quiet_interrupt_hook", "running_command"]

COMMANDS = ("gbml-train", "gbml-eval", "gbml-compare", "gbml-tune")


def command_name(argv: Sequence[str], orig_argv: Sequence[str]) -> Optional[str]:
    """The gbml_ext command this process runs, or None for any other program.

    Example:
        >>> command_name(["/venv/bin/gbml-eval", "runs/x"], ["python", "/venv/bin/gbml-eval"])
        'gbml-eval'
        >>> command_name(["-m"], ["python", "-m", "gbml_ext.runner", "cfg.toml"])
        'gbml-train'
        >>> command_name(["train.py"], ["python", "train.py"]) is None
        True
    """
    name = os.path.basename(argv[0]) if argv else ""
    if name in COMMANDS:
        return name
    # Consecutive pairs (flag, value): the shifted list is one shorter.
    for flag, module in zip(orig_argv, orig_argv[1:], strict=False):
        if flag == "-m" and module in ("gbml_ext.runner", "gbml_ext.runner.cli",
                                       "gbml_ext.launch.worker"):
            return "gbml-train"
        if flag == "-m" and module in ("gbml_ext.compare", "gbml_ext.compare.command"):
            return "gbml-compare"
        if flag == "-m" and module in ("gbml_ext.tune", "gbml_ext.tune.cli"):
            return "gbml-tune"
    return None


def quiet_interrupt_hook(name: str, previous: ExceptHook = sys.__excepthook__) -> ExceptHook:
    """A `sys.excepthook` that reports a KeyboardInterrupt in one line and leaves every other
    exception to `previous`."""

    def hook(kind: Type[BaseException], value: BaseException,
             traceback: Optional[TracebackType]) -> None:
        if issubclass(kind, KeyboardInterrupt):
            print(f"{name}: interrupted while starting; nothing was run or written.",
                  file=sys.stderr)
            return
        previous(kind, value, traceback)

    return hook


def running_command() -> Optional[str]:
    """The gbml_ext command this process runs (`command_name` of its command line), or None."""
    return command_name(sys.argv, getattr(sys, "orig_argv", sys.argv))


def install() -> None:
    """Installs `quiet_interrupt_hook` when this process is a gbml_ext command."""
    name = running_command()
    if name is not None:
        sys.excepthook = quiet_interrupt_hook(name, sys.excepthook)
