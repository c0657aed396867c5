"""One registry pattern for every extension point: names, aliases, one-line errors that list the
choices, and a runner that takes its allowed values from the registries instead of spelling
the names itself."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from benchmarks.peers import PEERS
from gbml_ext.algorithms import ALGORITHMS
from gbml_ext.data.registry import DATASETS, SAMPLERS
from gbml_ext.data.synthetic import SYNTHETIC_SOURCES, synthetic_task_source
from gbml_ext.nn import MODELS
from gbml_ext.optim import TRANSFORMS
from gbml_ext.registry import Registry, UnknownName
from gbml_ext.runner.cli import main
from gbml_ext.runner.config import ConfigError, describe_config, load_config

RUNNER = Path(__file__).resolve().parents[1] / "gbml_ext" / "runner"


def test_register_both_forms_aliases_and_order() -> None:
    colours: Registry[int] = Registry("colour")

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
    (ALGORITHMS, {"maml", "fomaml", "anil", "metasgd", "reptile", "imaml", "l2l-maml"}),
    (TRANSFORMS, {"none", "kronecker", "kronecker-mlp"}),
    (MODELS, {"linear", "deep_linear", "omniglot_cnn4", "mini_imagenet_cnn4", "cifarfs_cnn4"}),
    (SAMPLERS, {"tensor", "learn2learn"}),
    (DATASETS, {"omniglot", "mini-imagenet", "cifar-fs", "fc100"}),
    (SYNTHETIC_SOURCES, {"linear-regression", "logistic-regression"}),
])
def test_each_package_registers_what_it_provides(registry: Registry, names: set) -> None:
    assert set(registry.names()) == names


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
    with pytest.raises(ConfigError, match="allowed: maml, fomaml, anil"):
        load_config(None, ["algorithm.name=later"])
    ALGORITHMS.register("later", ALGORITHMS["maml"])
    try:
        assert load_config(None, ["algorithm.name=later"]).algorithm.name == "later"
    finally:
        ALGORITHMS.unregister("later")


def test_what_an_algorithm_spec_says_is_what_the_config_checks() -> None:
    refused = [name for name, spec in ALGORITHMS.items() if not spec.takes_transform]
    assert set(refused) == {"metasgd", "reptile", "imaml", "l2l-maml"}
    for name in refused:
        with pytest.raises(ConfigError) as error:
            load_config(None, [f"algorithm.name={name}", "algorithm.transform=kronecker"])
        assert str(error.value) == ALGORITHMS[name].no_transform
    with pytest.raises(ConfigError, match="works with maml, fomaml, anil only, not 'reptile'"):
        load_config(None, ["algorithm.name=reptile", "model.linnet_adapt_hidden=false"])


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
    registered = set(ALGORITHMS.names()) | set(TRANSFORMS.names()) | set(MODELS.names())
    registered.discard("none")
    defaults = load_config(None)
    allowed = {"schema.py": {defaults.algorithm.name, defaults.model.name}}
    for path in sorted(RUNNER.glob("*.py")):
        spelled = _string_constants(path) & registered
        assert spelled <= allowed.get(path.name, set()), path.name
