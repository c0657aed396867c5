"""The tuned every-algorithm grid: one config per row over the grid's row with the same search
(8 trials) and the evaluation steps chosen on validation; the driver's plans, its archive, its
pipeline through gbml-tune on the Omniglot fixture, and the page rebuilt from results."""
import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

from experiments import (
    algorithms,
    algorithms_grid,
    tuned,
    tuned_grid,
    tuned_report,
    tuned_trials,
)
from gbml_ext.runner import load_config, train
from gbml_ext.runner.build import build_learner
from gbml_ext.runner.compat import flatten
from gbml_ext.runner.config import config_to_dict
from gbml_ext.tune import read_setup
from gbml_ext.tune.study import open_study
from helpers import table_row as row
from vision_fixtures import write_omniglot_tree

TEN = ["maml", "fomaml", "anil", "metasgd", "reptile", "imaml", "maml_kfo", "anil_kfo",
       "maml_linnet", "anil_linnet"]
GRID = [(s, r) for s in ("5w1s", "20w1s") for r in TEN]
RATE = "algorithm.inner_lr"
# Each row's tuned keys: the inner rate and what its paper tunes.
SPACE = {"maml": [RATE], "fomaml": [RATE], "anil": [RATE], "metasgd": [RATE],
         "reptile": [RATE, "train.lr"], "imaml": [RATE, "algorithm.imaml_lam"],
         "maml_kfo": [RATE, "algorithm.adapt_transform", "algorithm.transform_psd"],
         "anil_kfo": [RATE, "algorithm.adapt_transform", "algorithm.transform_psd"],
         "maml_linnet": [RATE, "model.linnet_depth"], "anil_linnet": [RATE, "model.linnet_depth"]}
EVALUATION_KEYS = {"evaluation.max_steps": 10, "evaluation.choose_steps": "validation",
                   "evaluation.choice_tasks": 200}


def test_each_setting_has_every_row_but_the_reference() -> None:
    for setting in ("5w1s", "20w1s"):
        files = sorted(p.stem for p in tuned_grid.config_folder(setting).glob("*.toml"))
        assert files == sorted(TEN)
        assert tuned_grid.rows(setting) == [r for r in algorithms_grid.ROWS if r in TEN]


@pytest.mark.parametrize("setting,row", GRID, ids=lambda v: str(v))
def test_a_tuned_row_is_its_grid_row_with_the_same_search(setting: str, row: str) -> None:
    path = tuned_grid.row_config(setting, row)
    config = load_config(path)
    grid = load_config(algorithms_grid.config_folder(setting) / f"{row}.toml")
    ours, theirs = flatten(config_to_dict(config)), flatten(config_to_dict(grid))
    changed = {k for k in ours if ours[k] != theirs[k]}
    assert changed == {"name", "evaluation.max_steps", "evaluation.choose_steps"}
    assert {k: ours[k] for k in EVALUATION_KEYS} == EVALUATION_KEYS
    assert config.name == f"omniglot-{setting}-tuned-{row}" == tuned_grid.run_name(setting, row)
    setup = read_setup(str(path), [], None)  # gbml-tune's own checks of the table
    assert (setup.trials, setup.metric, setup.direction) == (8, "accuracy", "maximize")
    assert list(setup.space) == SPACE[row]
    rate = setup.space[RATE]
    if (setting, row) == ("20w1s", "anil"):  # searched a third time, past the grid's α = 0.4
        assert rate.log and (rate.low, rate.high) == (1.0, 16.0)
        assert config.algorithm.inner_lr < rate.low
    else:
        assert rate.log and rate.low < config.algorithm.inner_lr < rate.high  # the grid's α


@pytest.fixture(scope="module")
def omniglot(tmp_path_factory) -> Path:
    alphabets = {"images_background": {"Alpha": 5, "Beta": 5}, "images_evaluation": {"Gamma": 5}}
    return write_omniglot_tree(tmp_path_factory.mktemp("omniglot"), alphabets, drawings=2)


def tiny(root: Path) -> List[str]:
    return [f"data.root='{root}'", "data.queries=1", "data.options={split_sizes=[5, 5, 5]}",
            "model.options={hidden=8}", "train.iterations=2", "train.meta_batch=2",
            "train.log_every=1", "train.eval_every=2", "train.eval_tasks=2", "train.plot=false",
            "evaluation.tasks=2", "evaluation.choice_tasks=3", "device=cpu"]


@pytest.mark.parametrize("setting,row", GRID, ids=lambda v: str(v))
def test_a_tuned_row_trains_two_iterations_and_chooses_its_steps(setting: str, row: str,
                                                                 omniglot: Path,
                                                                 tmp_path: Path) -> None:
    config = load_config(tuned_grid.row_config(setting, row),
                         [*tiny(omniglot), f"output_dir='{tmp_path}'"])
    build_learner(config)
    evaluation = train(config, progress=False).results["evaluation"]
    assert evaluation["steps_chosen"] in range(1, 11) and evaluation["max_steps"] == 10
    assert evaluation["chosen_on"]["tasks"] == 3 and len(evaluation["accuracy_by_step"]) == 11


# ---- the driver ---------------------------------------------------------------------------

def ended_study(folder: Path, states: List[str], best: bool = True) -> None:
    folder.mkdir(parents=True)
    (folder / "trials.json").write_text(json.dumps({"trials": [
        {"trial": i, "state": s, "accuracy": 0.5} for i, s in enumerate(states)]}))
    if best:
        (folder / "best.toml").write_text('name = "x"\n')


def test_final_runs_start_only_from_ended_studies(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    ended_study(tuned_grid.study_folder(runs, "5w1s", "maml"),
                ["complete"] * 6 + ["pruned", "fail"])
    ended_study(tuned_grid.study_folder(runs, "5w1s", "anil"), ["complete"] * 7 + ["running"])
    ended_study(tuned_grid.study_folder(runs, "20w1s", "maml"), ["complete"] * 8, best=False)
    entries = tuned.final_plan(["5w1s", "20w1s"], [0, 1], "DATA", runs)
    assert [(e.config, e.seed, e.out) for e in entries] == [
        (tuned_grid.study_folder(runs, "5w1s", "maml") / "best.toml", s, runs / "5w1s")
        for s in (0, 1)]
    assert entries[0].overrides == ["data.root='DATA'", "name='omniglot-5w1s-tuned-maml'",
                                    "evaluation.split='test'"]
    assert "5w1s/anil" in capsys.readouterr().err


def test_headline_runs_take_ten_times_the_grids_iterations(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for name in tuned_grid.HEADLINE:
        ended_study(tuned_grid.study_folder(runs, "5w1s", name), ["complete"] * 8)
    entries = tuned.headline_plan([0, 1], "DATA", runs, ["train.eval_tasks=5"])
    assert [e.config.parent.name for e in entries] == ["maml", "anil", "maml_kfo",
                                                       "anil_kfo"] * 2
    assert all("train.iterations=3000" in e.overrides and "train.eval_tasks=5" in e.overrides
               for e in entries)  # 10 x the grid's 300 meta-iterations of 8 tasks
    assert entries[0].overrides[1] == "name='omniglot-5w1s-headline-maml'"
    assert {e.out for e in entries} == {runs / "headline"}


def test_tune_calls_gbml_tune_for_every_row_cheapest_first(tmp_path: Path, monkeypatch) -> None:
    calls: List[Dict[str, Any]] = []
    monkeypatch.setattr(tuned, "tune_study", lambda config, trials, out, overrides, *rest:
                        calls.append({"config": config, "trials": trials, "out": out,
                                      "overrides": overrides}) or 0)
    assert tuned.main(["tune", "--root", str(tmp_path), "--out", str(tmp_path / "runs"),
                       "--settings", "20w1s", "--set", "train.iterations=2"]) == 0
    assert [c["config"].stem for c in calls] == [r for r in algorithms.CHEAPEST_FIRST
                                                 if r in TEN]
    assert all(c["trials"] == 8 for c in calls)
    assert calls[0]["out"] == tmp_path / "runs" / "20w1s" / "studies" / "anil"
    assert calls[0]["overrides"] == [f"data.root='{tmp_path}'", "train.iterations=2"]


def test_a_stopped_study_stops_the_whole_tune(tmp_path: Path, monkeypatch, capsys) -> None:
    calls: List[Path] = []
    monkeypatch.setattr(tuned, "tune_study", lambda config, trials, out, *rest:
                        calls.append(out) or 130)  # gbml-tune's exit on Ctrl-C or SIGTERM
    assert tuned.main(["tune", "--root", str(tmp_path), "--out", str(tmp_path / "runs"),
                       "--settings", "20w1s"]) == 130
    assert calls == [tmp_path / "runs" / "20w1s" / "studies" / "anil"]  # not the next rows
    assert "stopped at 20w1s/anil; the same command continues" in capsys.readouterr().err


def test_again_keeps_an_ended_study_with_the_range_its_store_searched(tmp_path: Path) -> None:
    runs, results = tmp_path / "runs", tmp_path / "results"
    study = tuned_grid.study_folder(runs, "20w1s", "anil")
    ended_study(study, ["complete"] * 8)
    config = tmp_path / "anil.toml"  # the row, searched over 0.3..16
    config.write_text(f'extends = "{tuned_grid.row_config("20w1s", "anil")}"\n[tune.space]\n'
                      f'"{RATE}" = {{ distribution = "float", low = 0.3, high = 16.0, '
                      f'log = true }}\n')
    open_study(read_setup(config, [f"data.root='{tmp_path}'"]), study)  # as gbml-tune makes it
    archived = tuned_grid.study_folder(results, "20w1s", "anil")
    ended_study(archived, ["complete"] * 8)
    argv = ["again", "--settings", "20w1s", "--row", "anil", "--runs", str(runs),
            "--out", str(results)]
    assert tuned.main(argv) == 0
    assert not study.exists() and not archived.exists()
    for kept in (runs, results):
        folder = kept / "20w1s" / "first-range" / "anil"
        assert (folder / "best.toml").is_file()
        assert tuned_trials.searched_range(folder) == (0.3, 16.0, True)
    ended_study(study, ["complete"] * 8)  # searched again; a third time is refused
    with pytest.raises(SystemExit, match="already holds the first study of 20w1s/anil"):
        tuned.main(argv)
    assert study.is_dir()
    with pytest.raises(SystemExit, match="has not ended"):
        tuned.main(["again", "--settings", "5w1s", "--row", "maml", "--runs", str(runs)])
    ended_study(tuned_grid.study_folder(runs, "5w1s", "maml"), ["complete"] * 8)
    with pytest.raises(SystemExit, match="holds no study store"):  # its store was lost
        tuned.main(["again", "--settings", "5w1s", "--row", "maml", "--runs", str(runs)])
    assert tuned_grid.best_config(tuned_grid.study_folder(runs, "5w1s", "maml")) is not None


@pytest.mark.slow
def test_a_row_is_tuned_run_archived_and_reported(omniglot: Path, tmp_path: Path,
                                                  monkeypatch) -> None:
    """One row through gbml-tune (one trial), its final run, the archive and the page."""
    for module in (tuned, tuned_grid):
        monkeypatch.setattr(module, "TRIALS", 1)
        monkeypatch.setattr(module, "ROWS", ("anil",))
    runs, results = tmp_path / "runs", tmp_path / "results"
    sets = [word for o in tiny(omniglot)[1:] for word in ("--set", o)]
    common = ["--root", str(omniglot), "--out", str(runs), "--settings", "5w1s", *sets]
    assert tuned.main(["tune", *common]) == 0
    study = tuned_grid.study_folder(runs, "5w1s", "anil")
    assert tuned_grid.best_config(study) == study / "best.toml"
    assert tuned.main(["final", *common, "--seeds", "0"]) == 0
    run = runs / "5w1s" / "omniglot-5w1s-tuned-anil" / "seed0"
    final = json.loads((run / "results.json").read_text())
    assert final["split"] == "test" and final["evaluation"]["steps_chosen"] in range(1, 11)
    tuned.archive(runs, results)
    archived = {p.relative_to(results).as_posix() for p in results.rglob("*") if p.is_file()}
    assert "5w1s/studies/anil/best.toml" in archived and "5w1s/studies/anil/trials.json" in archived
    assert "5w1s/omniglot-5w1s-tuned-anil/seed0/results.json" in archived
    assert not any("checkpoint" in p or "/trials/" in p or p.endswith(".db") for p in archived)
    text = tuned_report.setting_section(results, "5w1s", [0])
    assert row(text, "ANIL")[2] == "1 / 0 / 0"


def test_archive_then_restore_gives_back_the_studies_and_runs(tmp_path: Path) -> None:
    runs, results, again = tmp_path / "runs", tmp_path / "results", tmp_path / "again"
    study = tuned_grid.study_folder(runs, "5w1s", "maml")
    ended_study(study, ["complete"] * 8)
    (study / "study.db").write_text("store")
    (study / "trials" / "trial-0000").mkdir(parents=True)
    (study / "trials" / "trial-0000" / "results.json").write_text("{}")
    run = runs / "5w1s" / "omniglot-5w1s-tuned-maml" / "seed0"
    run.mkdir(parents=True)
    for name in ("results.json", "metrics.jsonl", "checkpoint.pt"):
        (run / name).write_text("{}")
    aside = run.parent / "seed0.old-20261207-101500"  # an earlier run a re-run moved aside
    aside.mkdir()
    (aside / "results.json").write_text("{}")
    assert tuned.archive(runs, results) == 3  # trials.json, best.toml and the run
    kept = sorted(p.relative_to(results).as_posix() for p in results.rglob("*") if p.is_file())
    assert kept == ["5w1s/omniglot-5w1s-tuned-maml/seed0/metrics.jsonl",
                    "5w1s/omniglot-5w1s-tuned-maml/seed0/results.json",
                    "5w1s/studies/maml/best.toml", "5w1s/studies/maml/trials.json"]
    tuned.restore_all(again, results)
    assert tuned_grid.best_config(tuned_grid.study_folder(again, "5w1s", "maml")) is not None
    assert (again / "5w1s" / "omniglot-5w1s-tuned-maml" / "seed0" / "results.json").is_file()
