"""One registry pattern for every extension point: names, aliases, one-line errors that list the
choices, and a runner that takes its allowed values from the registries instead of spelling
the names itself."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

import pytest
from torch import nn

from benchmarks.peers import PEERS
from gbml_ext.algorithms import ALGORITHMS, AlgorithmSpec, MetaLearner, register_algorithm
from gbml_ext.data.registry import DATASETS, SAMPLERS
from gbml_ext.data.synthetic import SYNTHETIC_SOURCES, synthetic_task_source
from gbml_ext.nn import MODELS
from gbml_ext.optim import TRANSFORMS
from gbml_ext.registry import Registry, UnknownName
from gbml_ext.runner.build import build_learner
from gbml_ext.runner.cli import main
from gbml_ext.runner.config import ConfigError, describe_config, load_config
from gbml_ext.trackers import LOGGERS

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "gbml_ext" / "runner"


def test_register_both_forms_aliases_and_order() -> None:
    colours: Registry[Any] = Registry("colour")  # entries: a function and an int

    @colours.register("red", aliases=("rot",), doc="the first")
    def red() -> int:
        return 1

    assert colours.register("blue", 2) == 2
    assert colours.names() == ["red", "blue"] == list(colours)
    assert colours["rot"] is red and colours["blue"] == 2
    assert "rot" in colours and "green" not in colours and 3 not in colours
    assert colours.canonical("rot") == "red" and colours.doc("rot") == "the first"
    assert colours.get("green", 0) == 0 and len(colours) == 2


def test_an_unknown_name_is_one_line_listing_the_choices() -> None:
    colours: Registry[int] = Registry("colour")
    colours.register("red", 1, aliases=("rot",))
    colours.register("blue", 2)
    with pytest.raises(UnknownName) as error:
        colours["green"]
    message = str(error.value)
    assert message == "unknown colour 'green'; choose one of red, blue (aliases: rot)."
    assert isinstance(error.value, KeyError) and isinstance(error.value, ValueError)


def test_names_are_taken_once_and_can_be_released() -> None:
    colours: Registry[int] = Registry("colour")
    colours.register("red", 1, aliases=("rot",))
    with pytest.raises(ValueError, match="'rot' is registered already"):
        colours.register("rot", 2)
    assert colours.unregister("rot") == 1
    assert "red" not in colours and "rot" not in colours
    colours.register("rot", 3)
    assert colours["rot"] == 3


@pytest.mark.parametrize("registry, names", [
    (TRANSFORMS, {"none", "kronecker", "kronecker-mlp"}),
    (MODELS, {"linear", "deep_linear", "omniglot_cnn4", "mini_imagenet_cnn4", "cifarfs_cnn4"}),
    (SAMPLERS, {"tensor", "learn2learn"}),
    (DATASETS, {"omniglot", "mini-imagenet", "cifar-fs", "fc100"}),
    (SYNTHETIC_SOURCES, {"linear-regression", "logistic-regression"}),
    (LOGGERS, {"tensorboard", "mlflow", "wandb"}),
])
def test_each_package_registers_what_it_provides(registry: Registry, names: set) -> None:
    assert set(registry.names()) == names


# A CNN the runner builds without data: every algorithm (ANIL needs a body and a head) wraps it.
CNN = ["data.source=omniglot", "model.name=omniglot_cnn4", "model.options={hidden=4}"]


def _check_registered_algorithm(name: str) -> nn.Module:
    """What must hold of every registered algorithm, whichever it is; returns the learner the
    runner builds for it."""
    spec = ALGORITHMS[name]
    assert isinstance(spec, AlgorithmSpec)
    assert ALGORITHMS.doc(name) and "\n" not in ALGORITHMS.doc(name)
    learner = build_learner(load_config(None, CNN + [f"algorithm.name={name}"]))
    transforms = [t for t in TRANSFORMS.names() if t != "none"]
    with_transform = CNN + [f"algorithm.name={name}", f"algorithm.transform={transforms[0]}"]
    if spec.takes_transform:
        assert isinstance(build_learner(load_config(None, with_transform)), MetaLearner)
    else:
        with pytest.raises(ConfigError) as error:
            load_config(None, with_transform)
        assert str(error.value) == spec.no_transform
    return learner


def test_the_package_registers_its_algorithms_and_the_default_one() -> None:
    assert load_config(None).algorithm.name in ALGORITHMS
    assert len(ALGORITHMS) > 1


@pytest.mark.parametrize("name", ALGORITHMS.names())
def test_every_registered_algorithm_builds_a_meta_learner_through_the_runner(name: str) -> None:
    assert isinstance(_check_registered_algorithm(name), MetaLearner)


def test_an_algorithm_registered_later_meets_the_same_checks() -> None:
    """Adding an algorithm breaks no test: the checks above hold for it too."""
    register_algorithm("later-maml", doc="MAML, registered later")(ALGORITHMS["maml"].build)
    register_algorithm("later-plain", doc="no transform", no_transform="plain steps only: set "
                       "algorithm.transform = 'none'.")(ALGORITHMS["maml"].build)
    try:
        for name in ("later-maml", "later-plain"):
            assert isinstance(_check_registered_algorithm(name), MetaLearner)
        test_what_an_algorithm_spec_says_is_what_the_config_checks()
    finally:
        ALGORITHMS.unregister("later-maml")
        ALGORITHMS.unregister("later-plain")


def test_the_benchmark_peers_are_a_registry_too() -> None:
    assert {"gbml_ext", "batched", "learn2learn", "torch.func"} <= set(PEERS.names())
    with pytest.raises(UnknownName, match="unknown benchmark peer 'nope'; choose one of gbml_ext"):
        PEERS["nope"]


def test_the_schema_allows_what_is_registered_when_the_config_is_read() -> None:
    text = describe_config(load_config(None))
    for section, key, registry in (("algorithm", "name", ALGORITHMS),
                                   ("algorithm", "transform", TRANSFORMS),
                                   ("model", "name", MODELS), ("data", "sampler", SAMPLERS)):
        lines = text.split(f"[{section}]\n", 1)[1].splitlines()
        line = next(line for line in lines if line.startswith(f"{key} = "))
        assert line.endswith("one of: " + " | ".join(registry.names()))
    with pytest.raises(ConfigError, match=f"allowed: {', '.join(ALGORITHMS.names())}.$"):
        load_config(None, ["algorithm.name=later"])
    ALGORITHMS.register("later", ALGORITHMS["maml"])
    try:
        assert load_config(None, ["algorithm.name=later"]).algorithm.name == "later"
    finally:
        ALGORITHMS.unregister("later")


def test_what_an_algorithm_spec_says_is_what_the_config_checks() -> None:
    takers = [name for name, spec in ALGORITHMS.items() if spec.takes_transform]
    for name, spec in ALGORITHMS.items():
        frozen = [f"algorithm.name={name}", "model.linnet_adapt_hidden=false"]
        if spec.takes_transform:
            assert not load_config(None, frozen).model.linnet_adapt_hidden
            continue
        with pytest.raises(ConfigError) as error:
            load_config(None, frozen)
        assert str(error.value) == (f"model.linnet_adapt_hidden = false works with "
                                    f"{', '.join(takers)} only, not {name!r}.")


def test_gbml_train_refuses_an_unknown_algorithm_in_one_line(
        capsys: pytest.CaptureFixture) -> None:
    assert main(["algorithm.name=nope"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert all(name in err for name in ALGORITHMS.names())


def test_unknown_task_sources_name_the_choices() -> None:
    with pytest.raises(ValueError, match="linear-regression, logistic-regression"):
        synthetic_task_source("quadratic-regression")
    with pytest.raises(ValueError, match="choose one of tensor, learn2learn"):
        SAMPLERS["random"]


def _string_constants(path: Path) -> set:
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in docstrings}


def test_the_runner_spells_no_registered_name() -> None:
    """The runner looks names up; it never names an algorithm, transform or model itself
    (but for the schema's defaults, and "none", the absent transform)."""
    registered = set(ALGORITHMS.names()) | set(TRANSFORMS.names()) | set(MODELS.names()) | set(
        LOGGERS.names())
    registered.discard("none")
    defaults = load_config(None)
    allowed = {"schema.py": {defaults.algorithm.name, defaults.model.name}}
    for path in sorted(RUNNER.glob("*.py")):
        spelled = _string_constants(path) & registered
        assert spelled <= allowed.get(path.name, set()), path.name


def test_the_algorithms_guide_lists_the_registered_algorithms_when_the_site_is_built() -> None:
    """The guide holds no list of its own: the docs hook fills in the registry's."""
    path = REPO / "scripts" / "docs_config_reference.py"
    spec = importlib.util.spec_from_file_location("docs_config_reference", path)
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    guide = (REPO / "docs" / "guides" / "algorithms.md").read_text()
    assert hook.ALGORITHMS_MARKER in guide
    assert not any(f"`{name}`" in guide for name in ALGORITHMS.names())
    register_algorithm("later", doc="registered after the package")(ALGORITHMS["maml"].build)
    try:
        page = hook.on_page_markdown(guide, None)
    finally:
        ALGORITHMS.unregister("later")
    rows = [line.split("`")[1] for line in page.splitlines() if line.startswith("| `")]
    assert rows == ["algorithm.name", *ALGORITHMS.names(), "later"]
    assert hook.ALGORITHMS_MARKER not in page
