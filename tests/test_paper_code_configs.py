"""The paper's-code configs (experiments/configs/<dataset>/kfo-code-{maml,anil}/): one folder per
Makefile target of Sha-Lab/kfo, plus the Omniglot analogue. Each config states the target's
facts, builds the learner the scripts build, and runs end to end on tiny fixtures in the real
on-disk layouts; one `gbml-compare` over a folder gives the paper's comparison."""
import json
from pathlib import Path

import pytest
import torch

from gbml_ext import compare as compare_cli
from gbml_ext.optim.kronecker import KroneckerMLPMap, _KroneckerFactor
from gbml_ext.runner import load_config, train
from gbml_ext.runner.build import build_learner
from vision_fixtures import (
    write_cifar_fs,
    write_mini_imagenet_pickles,
    write_omniglot_tree,
)

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"

# (dataset, algorithm) -> the Makefile target's values (Omniglot: those of the CIFAR-FS target
# it is the analogue of).
TARGETS = {
    ("cifar-fs", "maml"): dict(model="cifarfs_cnn4", hidden=32, fast_lr=0.1, meta_lr=0.0005,
                               iterations=20000),
    ("mini-imagenet", "maml"): dict(model="mini_imagenet_cnn4", hidden=32, fast_lr=0.001,
                                    meta_lr=0.0005, iterations=20000),
    ("cifar-fs", "anil"): dict(model="cifarfs_cnn4", hidden=32, fast_lr=0.1, meta_lr=0.001,
                               iterations=20000),
    ("mini-imagenet", "anil"): dict(model="mini_imagenet_cnn4", hidden=64, fast_lr=0.05,
                                    meta_lr=0.001, iterations=3500),
    ("omniglot", "maml"): dict(model="omniglot_cnn4", hidden=32, fast_lr=0.1, meta_lr=0.0005,
                               iterations=20000),
    ("omniglot", "anil"): dict(model="omniglot_cnn4", hidden=32, fast_lr=0.1, meta_lr=0.001,
                               iterations=20000),
}
VARIANTS = ("", "_kfo", "_kfo_mlp")
ROWS = [(dataset, algorithm, variant) for dataset, algorithm in TARGETS for variant in VARIANTS]


def row_path(dataset, algorithm, variant):
    return CONFIGS / dataset / f"kfo-code-{algorithm}" / f"{algorithm}{variant}.toml"


def row_id(row):
    return "/".join(row[:2]) + "/" + row[1] + row[2]


def test_each_folder_holds_its_base_and_three_rows():
    for dataset, algorithm in TARGETS:
        folder = CONFIGS / dataset / f"kfo-code-{algorithm}"
        expected = {"base.toml"} | {f"{algorithm}{v}.toml" for v in VARIANTS}
        assert {p.name for p in folder.glob("*.toml")} == expected


@pytest.mark.parametrize("row", ROWS, ids=row_id)
def test_config_states_the_targets_facts(row):
    dataset, algorithm, variant = row
    target = TARGETS[(dataset, algorithm)]
    config = load_config(row_path(*row))
    assert config.name == f"{dataset}-kfo-code-{algorithm}-{algorithm}{variant}"
    assert config.seed == 1234
    assert config.data.source == dataset
    assert (config.data.ways, config.data.shots, config.data.queries) == (5, 5, 5)
    assert config.model.name == target["model"]
    expected = {"hidden": target["hidden"], "layers": 2}
    if dataset == "cifar-fs":  # the KFO code's CIFAR-FS convs have stride 1
        expected["max_pool_factor"] = 0.5
    assert config.model.options == expected
    assert config.model.linnet_depth == 0
    a = config.algorithm
    assert a.name == algorithm
    assert (a.train_steps, a.test_steps) == (5, 5)
    assert a.inner_lr == target["fast_lr"]
    t = config.train
    assert (t.optimizer, t.lr, t.meta_batch, t.iterations) == (
        "adam", target["meta_lr"], 16, target["iterations"])
    assert (config.evaluation.tasks, config.evaluation.split) == (600, "test")
    if variant == "":
        assert a.transform == "none" and not a.adapt_transform
    else:
        # learn2learn's KroneckerTransform defaults to psd=True, which anil-kfo.py keeps.
        assert a.transform_psd and a.adapt_transform and a.transform_params == []
        assert a.transform == ("kronecker" if variant == "_kfo" else "kronecker-mlp")
        if variant == "_kfo_mlp":
            assert a.transform_hidden_layers == 2


@pytest.mark.parametrize("row", [r for r in ROWS if r[2]], ids=row_id)
def test_kfo_transforms_every_parameter_or_the_whole_head(row):
    dataset, algorithm, variant = row
    hidden = 1 if dataset == "mini-imagenet" else 4  # keep the mini-ImageNet head small
    config = load_config(row_path(*row), [f"model.options={{hidden={hidden}, layers=2}}"])
    learner = build_learner(config)
    gbml = learner.head if algorithm == "anil" else learner
    adapted = list(gbml.module.parameters())
    if algorithm == "anil":
        assert len(adapted) == 2  # the head's weight and bias; the body takes no inner step
    else:
        assert len(adapted) == 2 * 4 + 2  # 2 blocks x (conv w, b; bn w, b) + head w, b
    assert len(gbml.compute_update.transforms_indices) == len(adapted)
    assert all(index is not None for index in gbml.compute_update.transforms_indices)
    factors = [m for m in gbml.compute_update.modules() if isinstance(m, _KroneckerFactor)]
    assert factors and all(f.psd for f in factors)
    assert gbml.adapt_transform
    maps = [m for m in gbml.compute_update.modules() if isinstance(m, KroneckerMLPMap)]
    assert len(maps) == (len(adapted) if variant == "_kfo_mlp" else 0)
    assert all(len(m.map.layers) == 2 + 1 for m in maps)  # 2 hidden layers + output layer


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    cifar = write_cifar_fs(tmp_path_factory.mktemp("cifar"), (3, 3, 3), images_per_class=2)
    mini = write_mini_imagenet_pickles(tmp_path_factory.mktemp("mini"),
                                       {"train": 3, "validation": 3, "test": 3},
                                       images_per_class=2)
    omniglot = write_omniglot_tree(tmp_path_factory.mktemp("omniglot"), drawings=2)
    return {"cifar-fs": cifar, "mini-imagenet": mini, "omniglot": omniglot}


def tiny_overrides(dataset, root):
    """Tiny tasks and networks, one task per meta-batch; 2 inner training steps, so the
    transform's own step (from the second step on) runs too."""
    hidden = 1 if dataset == "mini-imagenet" else 2
    overrides = [f"data.root='{root}'", "data.ways=3", "data.shots=1", "data.queries=1",
                 f"model.options={{hidden={hidden}, layers=2}}", "train.iterations=2",
                 "train.meta_batch=1", "train.log_every=1", "train.eval_every=0",
                 "evaluation.tasks=2", "algorithm.train_steps=2", "algorithm.test_steps=1",
                 "device=cpu"]
    if dataset == "omniglot":  # 8 characters x 4 rotations in the fixture
        overrides.append("data.options={split_sizes=[4, 2, 2]}")
    return overrides


COMPARED = ("omniglot", "maml")  # the compare test below runs this folder's three rows


@pytest.mark.parametrize("row", [r for r in ROWS if r[:2] != COMPARED], ids=row_id)
def test_config_runs_end_to_end(row, roots, tmp_path):
    dataset = row[0]
    config = load_config(row_path(*row), tiny_overrides(dataset, roots[dataset])
                         + [f"output_dir='{tmp_path}'"])
    result = train(config, progress=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["name"] == config.name and results["seed"] == 1234
    assert results["evaluation"]["accuracy"]["n"] == 2
    assert [h["split"] for h in result.history] == ["train", "train"]
    assert all(torch.isfinite(p).all() for p in result.algorithm.parameters())


def test_one_compare_call_gives_the_folders_comparison(roots, tmp_path):
    paths = [str(row_path(*COMPARED, variant)) for variant in VARIANTS]
    code = compare_cli.main([*paths, "--in-process", "--seeds", "1234", "--out", str(tmp_path),
                             *tiny_overrides("omniglot", roots["omniglot"])])
    assert code == 0
    runs = json.loads((tmp_path / "compare.json").read_text())
    assert list(runs) == [f"omniglot-kfo-code-maml-maml{v}" for v in VARIANTS]
    assert all([r["seed"] for r in results] == [1234] for results in runs.values())
    table = (tmp_path / "compare.md").read_text()
    assert all(name in table for name in runs)
