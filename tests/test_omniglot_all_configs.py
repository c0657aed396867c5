"""The every-algorithm Omniglot rows (5w1s-all, 20w1s-all): the budget each setting decided,
each row's published settings, and a two-iteration run of every row on the Omniglot fixture."""
import json
from pathlib import Path

import pytest

from experiments import algorithms_grid
from gbml_ext.runner import load_config, train
from gbml_ext.runner.build import build_learner
from vision_fixtures import write_omniglot_tree

TEN = ["maml", "fomaml", "anil", "metasgd", "reptile", "imaml", "maml_kfo", "anil_kfo",
       "maml_linnet", "anil_linnet"]
# setting -> (ways, meta-batch, meta-iterations, inner lr)
BUDGET = {"5w1s": (5, 8, 300, 0.4), "20w1s": (20, 4, 200, 0.4)}
GRID = [(s, r) for s in BUDGET for r in TEN + (["l2l_maml"] if s == "5w1s" else [])]


def path(setting: str, row: str) -> Path:
    return (Path(__file__).resolve().parents[1] / "experiments" / "configs" / "omniglot"
            / f"{setting}-all" / f"{row}.toml")


def test_each_setting_has_exactly_its_rows() -> None:
    for setting in BUDGET:
        files = sorted(p.stem for p in path(setting, "base").parent.glob("*.toml"))
        expected = TEN + ["base"] + (["l2l_maml"] if setting == "5w1s" else [])
        assert files == sorted(expected)
        assert algorithms_grid.rows(setting) == [r for r in algorithms_grid.ROWS if r in expected]


@pytest.mark.parametrize("setting,row", GRID, ids=lambda v: str(v))
def test_row_keeps_the_settings_budget(setting: str, row: str) -> None:
    config = load_config(path(setting, row))
    ways, meta_batch, iterations, inner_lr = BUDGET[setting]
    assert config.name == f"omniglot-{setting}-all-{row}"
    assert (config.data.source, config.data.ways, config.data.shots) == ("omniglot", ways, 1)
    assert config.data.root == "" and config.threads == 1
    assert (config.train.meta_batch, config.train.iterations) == (meta_batch, iterations)
    train_ = config.train
    assert (train_.eval_every, train_.eval_tasks, train_.log_every) == (50, 40, 10)
    assert (config.evaluation.tasks, config.evaluation.split) == (600, "test")
    assert config.algorithm.path == "per-task"
    a = config.algorithm
    if row == "reptile":  # its own outer update: SGD with epsilon = 0.5, 5 inner steps
        assert (config.train.optimizer, config.train.lr) == ("sgd", 0.5)
        assert (a.inner_lr, a.train_steps, a.test_steps) == (inner_lr, 5, 5)
    elif row == "imaml":  # the authors' lambda and CG steps, the CPU variant's 8 steps at 0.2
        assert (a.inner_lr, a.train_steps, a.test_steps, a.imaml_lam, a.cg_steps) == (
            0.2, 8, 8, 2.0, 5)
    else:
        assert (config.train.optimizer, config.train.lr) == ("adam", 0.001)
        assert (a.inner_lr, a.train_steps, a.test_steps) == (inner_lr, 1, 3)
    assert a.name == {"maml_kfo": "maml", "maml_linnet": "maml", "anil_kfo": "anil",
                      "anil_linnet": "anil", "l2l_maml": "l2l-maml"}.get(row, row)
    assert a.transform == ("kronecker" if row.endswith("_kfo") else "none")
    kfo = row.endswith("_kfo")  # the paper's code: PSD factors, transform adapted
    assert (a.transform_psd, a.adapt_transform) == (kfo, kfo)
    linnet = row.endswith("_linnet")
    assert (config.model.linnet_depth > 1, config.model.linnet_init == "orthogonal") == (
        linnet, linnet)


@pytest.fixture(scope="module")
def omniglot(tmp_path_factory) -> Path:
    """15 characters of 2 drawings: 5 per split, 20 classes each with the 4 rotations."""
    alphabets = {"images_background": {"Alpha": 5, "Beta": 5}, "images_evaluation": {"Gamma": 5}}
    return write_omniglot_tree(tmp_path_factory.mktemp("omniglot"), alphabets, drawings=2)


@pytest.mark.parametrize("setting,row", GRID, ids=lambda v: str(v))
def test_row_builds_and_trains_two_iterations(setting: str, row: str, omniglot: Path,
                                              tmp_path: Path) -> None:
    overrides = [f"data.root='{omniglot}'", "data.queries=1",
                 "data.options={split_sizes=[5, 5, 5]}", "model.options={hidden=8}",
                 "train.iterations=2", "train.meta_batch=2", "train.log_every=1",
                 "train.eval_every=2", "train.eval_tasks=2", "train.plot=false",
                 "evaluation.tasks=2", "device=cpu", f"output_dir='{tmp_path}'"]
    config = load_config(path(setting, row), overrides)
    build_learner(config)
    train(config, progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["iterations_done"] == 2 and results["evaluation"]["accuracy"]["n"] == 2
    assert results["config"]["data"]["ways"] == BUDGET[setting][0]
    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(h["iteration"], h["split"]) for h in history] == [
        (1, "train"), (2, "train"), (2, "validation")]
    assert 0.0 <= history[-1]["accuracy"] <= 1.0  # the figure's validation accuracy
