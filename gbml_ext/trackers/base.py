"""What every tracker backend is: a `Tracker` with four calls, the run it logs (`TrackedRun`),
and the `LOGGERS` registry that `logging.backends` names its entries from.

A backend copies what the run folder records (metrics.jsonl, results.json, the figures) into
a tool that researchers watch; the run folder stays the record. A backend imports its library
only when it starts, so a backend not chosen needs nothing installed.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, Mapping, Optional, Sequence, Type

from ..registry import Registry

__all__ = ["LOGGERS", "TrackedRun", "Tracker", "TrackerUnavailable", "check_installed"]


class TrackerUnavailable(ImportError):
    """A chosen backend whose library is not installed; the message names the extra that
    installs it."""


@dataclass
class TrackedRun:
    """The run a backend logs: who it is, where its folder is, and what the backend stored the
    last time it logged this run (empty for a new run).

    Attributes:
        name: the config's `name`.
        seed: the config's `seed`.
        run_dir: the run folder (metrics.jsonl, results.json, checkpoints).
        group: the name that groups runs (a grid, or the config's name for a single run).
        stored: what the backend's `start` returned when it last logged this run (its run id,
            its store), read back from the run folder's trackers.json; {} for a new run.

    Example:
        >>> TrackedRun("maml", 0, Path("runs/maml/seed0"), "maml").label
        'maml seed 0'
    """

    name: str
    seed: int
    run_dir: Path
    group: str
    stored: Dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """`name seed N`, the run's name in the trackers."""
        return f"{self.name} seed {self.seed}"


class Tracker:
    """One backend: `start` once, then `log` and `images` as the run goes, then `finish`.

    A subclass sets `library` (the module it imports) and `extra` (the `gbml_ext[extra]` that
    installs it) and overrides the four calls. Any exception a call raises makes the runner
    warn once and drop the backend; the run goes on.

    Example:
        >>> class Printer(Tracker):
        ...     def log(self, step, metrics):
        ...         print(step, metrics)
        >>> Printer().log(3, {"train/loss": 0.5})
        3 {'train/loss': 0.5}
    """

    library: ClassVar[Optional[str]] = None
    extra: ClassVar[str] = ""

    def start(self, run: TrackedRun, config: Mapping[str, Any]) -> Dict[str, Any]:
        """Opens the backend's run (a new one, or the one `run.stored` names) and records the
        config as its hyperparameters (a new run only).

        Arguments:
            run: the run; `run.stored` is what the last `start` of this run returned.
            config: the run's config, {section: {key: value}}.

        Returns:
            What the backend needs to continue this run after a resume (its run id), stored
            in the run folder's trackers.json; JSON-serialisable.
        """
        return {}

    def last_step(self) -> Optional[int]:
        """After `start` of a resumed run: the last step the backend's store holds of it, where
        that can be less than the run folder's trackers.json says (a store that buffers what it
        writes, after the process was killed); None: what trackers.json says."""
        return None

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Logs scalar metrics (`gbml_ext.trackers.names`) at meta-iteration `step`."""

    def images(self, step: int, figures: Sequence[Path]) -> None:
        """Logs the run's figures (PNG files) at `step`, where the backend takes images."""

    def finish(self, results: Optional[Mapping[str, float]]) -> None:
        """Closes the backend's run: finished with the final `results` (already logged with
        `log`), or, with None, ended before its results (stopped, or failed)."""


LOGGERS: Registry[Type[Tracker]] = Registry("logging backend")


def check_installed(names: Sequence[str]) -> None:
    """Checks that the library of every backend in `names` is installed (without importing it).

    Raises:
        UnknownName: a name that is not registered.
        TrackerUnavailable: a backend whose library is missing; the message names its extra.

    Example:
        >>> check_installed([])
    """
    for name in names:
        backend = LOGGERS[name]
        if backend.library is not None and importlib.util.find_spec(backend.library) is None:
            raise TrackerUnavailable(
                f"logging.backends has {name!r}, but {backend.library} is not installed: pip "
                f"install 'gbml_ext[{backend.extra}]', or remove {name!r} from logging.backends.")
