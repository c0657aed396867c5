"""A plan: every run a command will start, as (config, overrides, seed, run folder), checked
before anything starts.

`build_plan` is the one place that turns configs, seeds and overrides into runs; the launchers
(`local`, `slurm`) only decide where each run executes, and the report reads the run folders.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..runner.config import Config, load_config
from ..runner.errors import RunFolderError
from ..runner.rundir import folder_in_use, holds_run

__all__ = ["RunSpec", "build_plan", "check_plan", "refuse_seed_override"]


@dataclass
class RunSpec:
    """One run of a plan: `config_path` for `seed`, with the overrides (`args`, seed and
    output folder included) that give the resolved `config`.

    Example:
        >>> spec = RunSpec("cfg.toml", 0, config=None, args=["seed=0"])  # doctest: +SKIP
    """

    config_path: str
    seed: int
    config: Config
    args: List[str] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        """The run's folder (`output_dir/name/seed<N>` unless the config says otherwise)."""
        return self.config.run_dir()

    @property
    def label(self) -> str:
        """`name seed N`, as progress lines and the status table show a run."""
        return f"{self.config.name} seed {self.seed}"


def refuse_seed_override(overrides: Sequence[str]) -> None:
    """A `seed=` override beside a list of seeds would train that seed under every seed's
    name: refused with the fix.

    Arguments:
        overrides: the `key=value` changes given for every run of a plan.

    Raises:
        RunFolderError: a `seed=` override; the message says to give the seeds with --seeds.

    Example:
        >>> refuse_seed_override(["train.iterations=5"])
        >>> refuse_seed_override(["seed=3"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gbml_ext.runner.errors.RunFolderError: seed=3 beside --seeds would train one seed ...
    """
    for word in overrides:
        key = word.split("=", 1)[0].strip()
        if key == "seed":
            raise RunFolderError(
                f"{word} beside --seeds would train one seed under every seed's folder; give "
                f"the seeds with --seeds only (e.g. --seeds {word.split('=', 1)[1].strip()}).")


def _run_config(config_path: str, seed: int, overrides: Sequence[str],
                out: Optional[str]) -> Tuple[Config, List[str]]:
    args = [f"seed={seed}", *overrides]
    config = load_config(config_path, args)
    if out is not None:  # every run of a plan with an --out folder lives under it
        slug = replace(config, output_dir="").run_dir().parent.name  # its name, made safe
        args.append(f"output_dir='{Path(out) / slug / f'seed{seed}'}'")
        config = load_config(config_path, args)
    return config, args


def _group(plan: List[RunSpec], out: Optional[str]) -> None:
    """Gives the runs without a `logging.group` the plan's: its --out folder's name, else its
    configs' names joined by "+", so that the trackers show the plan as one comparison."""
    names = dict.fromkeys(run.config.name for run in plan)
    group = Path(out).name if out is not None else "+".join(names)
    for run in plan:
        if not run.config.logging.group:
            run.args.append(f"logging.group={json.dumps(group)}")
            run.config = load_config(run.config_path, run.args)


def check_plan(plan: Sequence[RunSpec]) -> None:
    """Refuses two runs that would share a folder or a table row, before anything starts.

    Arguments:
        plan: the runs (`build_plan` checks its plans with this already).

    Raises:
        RunFolderError: a config listed twice, two seeds of a config whose `output_dir` is
            one folder, two configs that would write the same folder, or two configs of the
            same `name`; the message names both and the fix.

    Example:
        >>> plan = [RunSpec("a.toml", 0, Config(name="a", output_dir="out/a")),
        ...         RunSpec("b.toml", 0, Config(name="a", output_dir="out/b"))]
        >>> check_plan(plan)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gbml_ext.runner.errors.RunFolderError: a.toml and b.toml are both named 'a', so ...
    """
    folders: Dict[Path, RunSpec] = {}
    names: Dict[str, str] = {}
    for run in plan:
        other = folders.get(run.run_dir.resolve())
        if other is not None:
            if other.config_path == run.config_path and other.seed != run.seed:
                raise RunFolderError(
                    f"{run.config_path} has output_dir = {run.config.output_dir!r}, one folder "
                    f"for every seed, so seeds {other.seed} and {run.seed} would both write "
                    f"{run.run_dir}. Give --out DIR (each run then goes to "
                    f"DIR/<name>/seed<N>), or remove output_dir from the config (runs/<name>/"
                    f"seed<N>).")
            if other.config_path == run.config_path:
                raise RunFolderError(f"{run.config_path} is listed twice (the same config twice "
                                     f"would write {run.run_dir} twice); list it once.")
            named = (f" (both are named {run.config.name!r})"
                     if other.config.name == run.config.name else "")
            raise RunFolderError(
                f"{other.config_path} and {run.config_path} would both write "
                f"{run.run_dir}{named}. Give each its own name = ... (or output_dir) in its "
                f"file.")
        folders[run.run_dir.resolve()] = run
        first = names.setdefault(run.config.name, run.config_path)
        if first != run.config_path:
            raise RunFolderError(
                f"{first} and {run.config_path} are both named {run.config.name!r}, so they "
                f"would share a row of the table. Give each its own name = ... in its file.")


def _check_seeds(seeds: Sequence[int]) -> None:
    """Refuses a seed listed twice, naming it.

    Example:
        >>> _check_seeds([0, 0, 1])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gbml_ext.runner.errors.RunFolderError: --seeds 0 0 1 lists seed 0 twice; give each ...
    """
    twice = next((seed for i, seed in enumerate(seeds) if seed in seeds[:i]), None)
    if twice is not None:
        raise RunFolderError(f"--seeds {' '.join(map(str, seeds))} lists seed {twice} twice; "
                             f"give each seed once.")


def build_plan(config_paths: Sequence[str | Path], seeds: Sequence[int],
               overrides: Sequence[str] = (), out: Optional[str | Path] = None,
               resume: bool = False, overwrite: bool = False) -> List[RunSpec]:
    """Every run of `config_paths` x `seeds`, checked before any starts. A run whose config
    sets no `logging.group` gets the plan's: the `out` folder's name, else the configs' names
    joined by "+" (the trackers group the runs by it).

    Arguments:
        config_paths: TOML configs, in the order of the table.
        seeds: the seeds each config runs with (a `seed=` override beside them is refused).
        overrides: `key=value` changes applied to every config.
        out: put every run under `out/<name>/seed<N>` (its config's `name`, even where the
            config sets an `output_dir`).
        resume, overwrite: without either, folders that already hold something are refused.

    Raises:
        ConfigError: a config that does not load.
        RunFolderError: a `seed=` override; a seed listed twice; two runs that would share a
            folder (a config whose `output_dir` is one folder for several seeds) or a name;
            without `resume` or `overwrite`, folders that already hold something.

    Example:
        >>> plan = build_plan(["a.toml", "b.toml"], [0, 1], out="runs/cmp")  # doctest: +SKIP
        >>> [spec.label for spec in plan]  # doctest: +SKIP
        ['a seed 0', 'a seed 1', 'b seed 0', 'b seed 1']
    """
    refuse_seed_override(overrides)
    _check_seeds(list(seeds))
    plan = [RunSpec(str(path), seed, *_run_config(str(path), seed, overrides,
                                                  None if out is None else str(out)))
            for path in config_paths for seed in seeds]
    _group(plan, None if out is None else str(out))
    check_plan(plan)
    if not (resume or overwrite):
        used = [run for run in plan if holds_run(run.run_dir)]
        if used:
            more = f" {len(used) - 1} more of its run folders are in use too." if len(
                used) > 1 else ""
            raise RunFolderError(folder_in_use(used[0].run_dir, "--out DIR") + more)
    return plan
