"""The one object a run logs to its backends through: `RunTrackers`.

It starts the backends of `logging.backends` when the run first logs, hands each of them every
new metrics.jsonl record and, at the end, the results and figures, and closes them. What each
backend stored to continue its run (its run id) and the last step it logged of each kind are
kept in the run folder's trackers.json, so that a resumed run continues the same backend runs
and logs only the steps after those: one series per metric, without a step twice. A backend
that fails warns once and is dropped; the run and its folder go on.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Sequence

from ..fileio import atomic_write_json
from .base import LOGGERS, TrackedRun, Tracker, check_installed
from .names import record_metrics, results_metrics

__all__ = ["TRACKERS_FILE", "RunTrackers"]

# In a run folder: {backend: {"state": what its start returned, "logged": {kind: last step}}}.
TRACKERS_FILE = "trackers.json"
_RESULTS = "results"  # the kind of the final results' step in "logged"


class RunTrackers:
    """A run's backends, as one object: `sync` after each logged record, `finish` at the end;
    a context manager that closes what is still open on the way out (a failed or stopped run).

    Arguments:
        config: the run's config as plain data ({section: {key: value}}); its
            `logging.backends` are the backends, `logging.group` (or its `name`) groups them.
        run_dir: the run folder: trackers.json is read and written there.
        enabled: False on every process but the first of a distributed run: nothing starts.

    Raises:
        UnknownName: a backend name that is not registered.
        TrackerUnavailable: a backend whose library is not installed (names the extra).

    Example:
        >>> import tempfile
        >>> with RunTrackers({"name": "toy", "seed": 0, "logging": {"backends": []}},
        ...                  Path(tempfile.mkdtemp())) as trackers:
        ...     trackers.sync([{"iteration": 1, "split": "train", "loss": 0.5}])
        >>> trackers.backends
        []
    """

    def __init__(self, config: Mapping[str, Any], run_dir: Path, enabled: bool = True):
        section = config.get("logging") or {}
        names = list(dict.fromkeys(section.get("backends") or ()))
        check_installed(names)
        self._names = names if enabled else []
        self._config = config
        self._run_dir = Path(run_dir)
        self._group = section.get("group") or str(config.get("name", ""))
        self._live: Dict[str, Tracker] = {}
        self._kept: Dict[str, Dict[str, Any]] = {}
        self._started = False
        self._seen = 0

    @property
    def backends(self) -> List[str]:
        """The backends still logging (a failed one is dropped)."""
        return list(self._live) if self._started else list(self._names)

    def __enter__(self) -> RunTrackers:
        return self

    def __exit__(self, *exc: Any) -> None:
        for name in list(self._live):
            self._call(name, lambda backend: backend.finish(None))
            self._live.pop(name, None)
        self._save()

    def sync(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Logs the records of `history` (the run's metrics.jsonl records, in order) that a
        backend has not logged yet; the first call starts the backends."""
        if not self._names:
            return
        self._start()
        new, self._seen = history[self._seen:], len(history)
        logged = False
        for record in new:
            step, kind = int(record["iteration"]), str(record.get("split"))
            metrics = record_metrics(record)
            if metrics:
                logged |= self._log_all(step, kind, _logger(step, metrics))
        if logged:
            self._save()

    def finish(self, history: Sequence[Mapping[str, Any]], results: Mapping[str, Any],
               figures: Sequence[Path] = ()) -> None:
        """Logs what is left of `history`, then the final results (`results`: the results.json
        record) and the figures that exist among `figures`, and closes every backend."""
        if not self._names:
            return
        self.sync(history)
        step, final = int(results.get("iterations_done", 0)), results_metrics(results)
        pictures = [Path(f) for f in figures if Path(f).is_file()]

        def last(backend: Tracker) -> None:
            backend.log(step, final)
            if pictures:
                backend.images(step, pictures)

        self._log_all(step, _RESULTS, last)
        for name in list(self._live):
            self._call(name, lambda backend: backend.finish(final))
            self._live.pop(name, None)
        self._save()

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        kept = self._read()
        for name in self._names:
            previous = kept.get(name) or {}
            entry = {"state": previous.get("state") or {}, "logged": previous.get("logged") or {}}
            self._kept[name] = entry
            run = TrackedRun(str(self._config.get("name", "")), int(self._config.get("seed", 0)),
                             self._run_dir, self._group, dict(entry["state"]))
            try:
                backend = LOGGERS[name]()
                entry["state"] = backend.start(run, self._config) or {}
                held = backend.last_step() if run.stored else None
            except Exception as error:
                _warn(name, error)
                continue
            if held is not None:  # log again what the store lost
                entry["logged"] = {k: min(step, held) for k, step in entry["logged"].items()}
            self._live[name] = backend
        self._save()

    def _log_all(self, step: int, kind: str, call: Callable[[Tracker], None]) -> bool:
        """`call` on every live backend that has not logged `kind` at `step` yet; True if any
        did."""
        done = False
        for name in list(self._live):
            logged = self._kept[name]["logged"]
            if step > logged.get(kind, 0) and self._call(name, call):
                logged[kind] = step
                done = True
        return done

    def _call(self, name: str, call: Callable[[Tracker], None]) -> bool:
        """`call` on backend `name`; on an error, one warning, and the backend is dropped."""
        backend = self._live.get(name)
        if backend is None:
            return False
        try:
            call(backend)
            return True
        except Exception as error:
            _warn(name, error)
            del self._live[name]
            try:
                backend.finish(None)
            except Exception:  # already failing: its first error was the warning
                pass
            return False

    def _read(self) -> Dict[str, Any]:
        path = self._run_dir / TRACKERS_FILE
        if not path.is_file():
            return {}
        try:
            kept = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            print(f"gbml_ext: warning: {path} cannot be read ({error}); the backends start new "
                  f"runs.", file=sys.stderr)
            return {}
        return kept if isinstance(kept, dict) else {}

    def _save(self) -> None:
        if not self._kept:
            return
        try:
            atomic_write_json(self._run_dir / TRACKERS_FILE, {**self._read(), **self._kept})
        except OSError as error:
            print(f"gbml_ext: warning: {self._run_dir / TRACKERS_FILE} cannot be written "
                  f"({error}); a resumed run will start new backend runs.", file=sys.stderr)


def _logger(step: int, metrics: Mapping[str, float]) -> Callable[[Tracker], None]:
    return lambda backend: backend.log(step, metrics)


def _warn(name: str, error: BaseException) -> None:
    first = (str(error).strip().splitlines() or [""])[0][:300]
    print(f"gbml_ext: warning: the {name} logging backend failed ({type(error).__name__}: "
          f"{first}); the run goes on without it, and its run folder keeps every metric.",
          file=sys.stderr)
