"""The study's store, next to the trials' run folders: Optuna's RDB storage on SQLite
(`DIR/study.db`) for local trials, a journal file (`DIR/study.journal`, Optuna's
JournalStorage with a file backend and its symlink lock, safe on a shared file system) when
the trials run on Slurm. An existing store is reopened whichever launcher runs the trials now.

A store remembers what it searches (the space, the metric and the trials' config): reopening
it for another search is refused, so two searches never mix in one table.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Dict, Tuple

from ..runner.compat import IMPLEMENTATION_KEYS, flatten
from ..runner.config import config_to_dict, load_config
from .space import PRUNERS, SAMPLERS, TuneError, TuneSetup, settings_dict

__all__ = ["JOURNAL_STORE", "SQLITE_STORE", "STUDY_NAME", "make_pruner", "make_sampler",
           "open_storage", "open_study", "search_identity", "searched_space"]

SQLITE_STORE, JOURNAL_STORE = "study.db", "study.journal"
STUDY_NAME = "gbml-tune"
# Keys whose values a resumed study may change: where files go, how steps are computed.
_FREE = set(IMPLEMENTATION_KEYS) | {"name"}


def _quiet_optuna() -> Any:
    """optuna, its per-trial log lines off (gbml-tune prints its own) and its experimental
    warnings silenced."""
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def open_storage(out: Path, launcher: str = "local") -> Tuple[Any, Path]:
    """The study's store under `out`: the one already there, else SQLite for "local" and a
    journal file for "slurm". Returns (Optuna storage, its file).

    Raises:
        TuneError: a file that is not a study store (named, left as it is).

    Example:
        >>> import tempfile
        >>> storage, path = open_storage(Path(tempfile.mkdtemp()), "slurm")
        >>> path.name, type(storage).__name__
        ('study.journal', 'JournalStorage')
    """
    optuna = _quiet_optuna()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sqlite, journal = out / SQLITE_STORE, out / JOURNAL_STORE
    use_journal = journal.exists() or (launcher == "slurm" and not sqlite.exists())
    path = journal if use_journal else sqlite
    try:
        if use_journal:
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            return JournalStorage(JournalFileBackend(str(path))), path
        return optuna.storages.RDBStorage(
            f"sqlite:///{path.resolve()}",
            engine_kwargs={"connect_args": {"timeout": 60, "check_same_thread": False}}), path
    except Exception as error:  # sqlalchemy's and optuna's own: the file is not a store
        first = (str(error).splitlines() or [type(error).__name__])[0][:200]
        raise TuneError(f"{path} is not a study store gbml-tune can open ({first}); it is left "
                        f"as it is: choose another --out.") from None


def search_identity(setup: TuneSetup) -> Dict[str, Any]:
    """What a store's study searches, as plain data: the space, the metric, and the trials'
    config (the config's own values, evaluated on validation; paths and names aside)."""
    config = load_config(setup.config_path, [*setup.overrides, "evaluation.split='validation'"])
    flat = {k: v for k, v in flatten(config_to_dict(config)).items() if k not in _FREE}
    settings = settings_dict(setup)
    return {"space": settings["space"], "metric": setup.metric, "config": flat}


def searched_space(out: Path) -> Dict[str, Any]:
    """The space that the study in `out`'s store searched, as the store recorded it ({key:
    Optuna's JSON of its distribution}), read without changing the store.

    Raises:
        TuneError: `out` holds no gbml-tune study.
    """
    optuna = _quiet_optuna()
    if not any((Path(out) / name).is_file() for name in (SQLITE_STORE, JOURNAL_STORE)):
        raise TuneError(f"{out} holds no study store ({SQLITE_STORE} or {JOURNAL_STORE}); give "
                        f"the --out folder of a gbml-tune study.")
    storage, path = open_storage(Path(out))
    if STUDY_NAME not in optuna.get_all_study_names(storage):
        raise TuneError(f"{path} holds no gbml-tune study; give the --out folder of one.")
    attributes = optuna.load_study(study_name=STUDY_NAME, storage=storage).user_attrs
    return dict((attributes.get("identity") or {}).get("space") or {})


def _range_text(spec: Any) -> str:
    """A distribution as Optuna's JSON holds it, in words: '0.05..1, log', 'one of [2, 3]'.

    Example:
        >>> _range_text({"name": "FloatDistribution",
        ...              "attributes": {"low": 0.05, "high": 1.0, "log": True, "step": None}})
        '0.05..1, log'
    """
    attributes = spec.get("attributes", {}) if isinstance(spec, dict) else {}
    if "choices" in attributes:
        return f"one of {list(attributes['choices'])}"
    if "low" in attributes and "high" in attributes:
        return (f"{attributes['low']:g}..{attributes['high']:g}"
                + (", log" if attributes.get("log") else "")
                + (f", step {attributes['step']:g}" if attributes.get("step") else ""))
    return str(spec)


def _difference(saved: Dict[str, Any], now: Dict[str, Any]) -> str:
    """The first thing that differs between two identities, in words."""
    if saved.get("space") != now["space"]:
        there, here = saved.get("space") or {}, now["space"]
        changed = [key for key in here if key in there and there[key] != here[key]]
        if set(there) == set(here) and changed:
            key = changed[0]
            return (f"another space ({key}: {_range_text(there[key])} there, "
                    f"{_range_text(here[key])} here)")
        return (f"another space ({', '.join(there) or 'none'} there; "
                f"{', '.join(here)} here)")
    if saved.get("metric") != now["metric"]:
        return f"another metric ({saved.get('metric')} there, {now['metric']} here)"
    old, new = saved.get("config") or {}, now["config"]
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    shown = ", ".join(f"{k} = {old.get(k)!r} there, {new.get(k)!r} here" for k in keys[:2])
    return f"another config ({shown})"


def make_sampler(setup: TuneSetup, seed: int) -> Any:
    """The setup's Optuna sampler, seeded with `seed`.

    Raises:
        TuneError: `sampler_options` that the sampler does not take.
    """
    optuna = _quiet_optuna()
    cls = getattr(optuna.samplers, SAMPLERS[setup.sampler])
    try:
        return cls(seed=seed, **setup.sampler_options)
    except (TypeError, ValueError) as error:
        raise TuneError(f"tune.sampler_options for {setup.sampler} ({cls.__name__}): "
                        f"{error}.") from None


def make_pruner(setup: TuneSetup) -> Any:
    """The setup's Optuna pruner.

    Raises:
        TuneError: `pruner_options` that the pruner does not take.
    """
    optuna = _quiet_optuna()
    cls = getattr(optuna.pruners, PRUNERS[setup.pruner])
    if setup.pruner == "none":  # whatever options the table gives another pruner
        return cls()
    try:
        return cls(**setup.pruner_options)
    except (TypeError, ValueError) as error:
        raise TuneError(f"tune.pruner_options for {setup.pruner} ({cls.__name__}): "
                        f"{error}.") from None


def open_study(setup: TuneSetup, out: Path, launcher: str = "local") -> Tuple[Any, Path]:
    """Creates the study in `out`'s store, or reopens the one there; returns (study, store).

    Raises:
        TuneError: the store is not one, holds another study, or holds this study's name for
            another space, metric or config (nothing in it is changed).
    """
    optuna = _quiet_optuna()
    sampler, pruner = make_sampler(setup, setup.seed), make_pruner(setup)
    identity = search_identity(setup)
    storage, path = open_storage(out, launcher)
    names = optuna.get_all_study_names(storage)
    if names and STUDY_NAME not in names:
        raise TuneError(f"{path} holds another study ({', '.join(names)}), not gbml-tune's; it "
                        f"is left as it is: choose another --out.")
    if STUDY_NAME in names:
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage, sampler=sampler,
                                  pruner=pruner)
        saved = study.user_attrs.get("identity")
        if saved != identity:
            raise TuneError(f"{path} holds a study of {_difference(saved or {}, identity)}; it "
                            f"is left as it is: tune into another --out, or give the same "
                            f"config, overrides and [tune] table as before.")
        return study, path
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, sampler=sampler,
                                pruner=pruner, direction=setup.direction)
    study.set_user_attr("identity", identity)
    study.set_user_attr("config_path", setup.config_path)
    study.set_user_attr("overrides", list(setup.overrides))
    return study, path
