"""Per-algorithm options: each algorithm declares the `[algorithm]` keys it reads
(`AlgorithmSpec.reads`, `keys_read`); a config file, a file it extends or a `key=value` override
that sets another key is refused in one line naming the algorithm and the keys it reads. Stored
runs whose config.json holds such a key at a value other than its default still load and
resume: the key reads as its default, which is what the run computed with."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Any, Dict

import pytest
import torch

from gbml_ext.algorithms import ALGORITHMS, register_algorithm
from gbml_ext.algorithms.spec import GENERAL_KEYS, TRANSFORM_KEYS, WITH_TRANSFORM
from gbml_ext.optim import TRANSFORMS
from gbml_ext.runner import train
from gbml_ext.runner.cli import main
from gbml_ext.runner.compat import upgrade_stored, with_defaults
from gbml_ext.runner.config import ConfigError, config_from_dict, config_to_dict, load_config
from gbml_ext.runner.saved import read_run_config
from gbml_ext.runner.schema import AlgorithmConfig
from run_fixtures import TINY6, cli, tiny6

# A valid value other than the default for every [algorithm] key but name and transform.
SAMPLES: Dict[str, str] = {
    "inner_lr": "0.3", "train_steps": "2", "test_steps": "3", "path": "per-task",
    "batched": "true", "tasks_per_chunk": "2", "adapt_transform": "true",
    "transform_psd": "true", "transform_hidden_layers": "3",
    "transform_params": "['weight']", "imaml_lam": "7.0", "cg_steps": "3"}
KEYS = [f.name for f in dataclasses.fields(AlgorithmConfig)]
A_TRANSFORM = next(name for name in TRANSFORMS.names() if name != "none")


def _refusal(*overrides: str) -> str:
    with pytest.raises(ConfigError) as error:
        load_config(None, list(overrides))
    return str(error.value)


def test_the_issue_example_is_refused_naming_the_algorithm_and_what_it_reads() -> None:
    message = _refusal("algorithm.name=metasgd", "algorithm.adapt_transform=true",
                       "algorithm.imaml_lam=7", "algorithm.transform_psd=true")
    assert len(message.splitlines()) == 1
    assert message.startswith("metasgd does not read algorithm.adapt_transform, "
                              "algorithm.imaml_lam, algorithm.transform_psd")
    reads = message.split("metasgd reads: ", 1)[1]
    assert reads.startswith(", ".join(f"algorithm.{key}" for key in GENERAL_KEYS))
    assert "imaml_lam" not in reads and "adapt_transform" not in reads


def test_a_key_given_at_its_default_value_is_refused_too() -> None:
    assert "maml does not read algorithm.imaml_lam" in _refusal("algorithm.imaml_lam=1.0")


def test_a_key_set_in_an_extended_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text("[algorithm]\ncg_steps = 5\n")
    (tmp_path / "row.toml").write_text('extends = "base.toml"\n[algorithm]\nname = "anil"\n')
    with pytest.raises(ConfigError, match="^anil does not read algorithm.cg_steps; "):
        load_config(tmp_path / "row.toml")
    (tmp_path / "row.toml").write_text('extends = "base.toml"\n[algorithm]\nname = "imaml"\n')
    assert load_config(tmp_path / "row.toml").algorithm.cg_steps == 5


def test_transform_keys_are_read_only_with_a_transform() -> None:
    for key in WITH_TRANSFORM:
        message = _refusal(f"algorithm.{key}={SAMPLES[key]}")
        assert message.startswith(f"maml does not read algorithm.{key}; ")
        assert "only with a transform" in message and A_TRANSFORM in message
        config = load_config(None, [f"algorithm.transform={A_TRANSFORM}",
                                    f"algorithm.{key}={SAMPLES[key]}"])
        assert getattr(config.algorithm, key) != getattr(AlgorithmConfig(), key)


@pytest.mark.parametrize("name", ALGORITHMS.names())
def test_every_key_an_algorithm_reads_is_accepted_and_every_other_refused(name: str) -> None:
    spec = ALGORITHMS[name]
    transform = A_TRANSFORM if spec.takes_transform else "none"
    read = spec.keys_read(transform)
    assert set(GENERAL_KEYS) <= set(read)
    base = [f"algorithm.name={name}", f"algorithm.transform={transform}"]
    for key in KEYS:
        if key in ("name", "transform"):
            continue
        override = f"algorithm.{key}={SAMPLES[key]}"
        if key in read:
            assert getattr(load_config(None, base + [override]).algorithm, key) != getattr(
                AlgorithmConfig(), key)
        else:
            assert _refusal(*base, override).startswith(f"{name} does not read "
                                                        f"algorithm.{key}; ")


def test_every_algorithm_key_is_read_by_something() -> None:
    """A key no registered algorithm reads, and no transform, would be refused everywhere."""
    assert set(SAMPLES) | {"name", "transform"} == set(KEYS)
    own = {key for _, spec in ALGORITHMS.items() for key in spec.reads}
    assert set(KEYS) == set(GENERAL_KEYS) | set(TRANSFORM_KEYS) | own
    assert own <= set(KEYS)


def test_a_newly_registered_algorithm_declares_its_keys() -> None:
    register_algorithm("lam-maml", reads=("imaml_lam",))(ALGORITHMS["maml"].build)
    try:
        assert load_config(None, ["algorithm.name=lam-maml",
                                  "algorithm.imaml_lam=3"]).algorithm.imaml_lam == 3
        assert "lam-maml does not read algorithm.cg_steps" in _refusal(
            "algorithm.name=lam-maml", "algorithm.cg_steps=3")
    finally:
        ALGORITHMS.unregister("lam-maml")


def test_a_complete_config_reads_back_but_not_with_an_unread_key_changed() -> None:
    """config.json and config_to_dict hold every key: there a key at its default is fine."""
    for name in ALGORITHMS.names():
        full = config_to_dict(load_config(None, [f"algorithm.name={name}"]))
        assert config_to_dict(config_from_dict(full)) == full
    full = config_to_dict(load_config(None, ["algorithm.name=reptile"]))
    full["algorithm"]["imaml_lam"] = 7.0
    with pytest.raises(ConfigError, match="^reptile does not read algorithm.imaml_lam; "):
        config_from_dict(full)


def test_gbml_train_refuses_an_unread_key_in_one_line(capsys: pytest.CaptureFixture,
                                                      tmp_path: Path) -> None:
    code, out, err = cli(capsys, main, *TINY6, f"output_dir='{tmp_path / 'run'}'",
                         "algorithm.name=metasgd", "algorithm.imaml_lam=7")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "metasgd does not read algorithm.imaml_lam" in err
    assert "algorithm.inner_lr" in err and not (tmp_path / "run").exists()


def _store_unread_key(folder: Path, key: str, value: Any) -> None:
    """Writes `key` into the run's config.json and checkpoints, as a version that did not
    check the keys an algorithm reads stored it."""
    path = folder / "config.json"
    stored = json.loads(path.read_text())
    stored["algorithm"][key] = value
    path.write_text(json.dumps(stored))
    for checkpoint in folder.glob("checkpoint*.pt"):
        state = torch.load(checkpoint, weights_only=False)
        state["config"]["algorithm"][key] = value
        torch.save(state, checkpoint)


def test_a_stored_run_with_an_unread_key_set_resumes_and_reads_back(tmp_path: Path) -> None:
    train(tiny6(tmp_path, "train.iterations=3"), progress=False)
    _store_unread_key(tmp_path, "transform_psd", True)
    assert upgrade_stored(json.loads((tmp_path / "config.json").read_text())
                          )["algorithm"]["transform_psd"] is False
    assert read_run_config(tmp_path).algorithm.transform_psd is False
    resumed = train(tiny6(tmp_path), resume=True, progress=False)
    assert resumed.results["iterations_done"] == 6


def test_an_evaluation_override_of_an_unread_key_is_refused_even_at_its_default(
        tmp_path: Path) -> None:
    train(tiny6(tmp_path, "train.iterations=2"), progress=False)
    for value in ("1.0", "7.0"):  # 1.0 is imaml_lam's default
        with pytest.raises(ConfigError, match="maml does not read algorithm.imaml_lam"):
            read_run_config(tmp_path, [f"algorithm.imaml_lam={value}"])
    assert read_run_config(tmp_path, ["algorithm.inner_lr=0.2"]).algorithm.inner_lr == 0.2


def test_upgrade_keeps_read_keys_and_leaves_unknown_algorithms_alone() -> None:
    stored = {"algorithm": {"name": "imaml", "imaml_lam": 7.0, "adapt_transform": True}}
    upgraded = upgrade_stored(stored)["algorithm"]
    assert upgraded["imaml_lam"] == 7.0 and upgraded["adapt_transform"] is False
    assert stored["algorithm"]["adapt_transform"] is True  # the input is not changed
    kfo = {"algorithm": {"name": "maml", "transform": A_TRANSFORM, "transform_psd": True}}
    assert upgrade_stored(kfo)["algorithm"] == kfo["algorithm"]
    gone = {"algorithm": {"name": "retired", "imaml_lam": 7.0}}
    assert upgrade_stored(gone)["algorithm"] == gone["algorithm"]
    assert with_defaults(gone) == gone


def _docs_reference() -> Any:
    path = Path(__file__).resolve().parents[1] / "scripts" / "docs_config_reference.py"
    spec = importlib.util.spec_from_file_location("docs_config_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_config_reference_lists_each_algorithms_keys_from_the_registry() -> None:
    register_algorithm("lam-maml", reads=("imaml_lam",), doc="MAML with a lambda",
                       no_transform="no transform here")(ALGORITHMS["maml"].build)
    try:
        page = _docs_reference().render()
    finally:
        ALGORITHMS.unregister("lam-maml")
    section = page.split("### The keys each algorithm reads", 1)[1].split("\n## ", 1)[0]
    assert "| `lam-maml` | MAML with a lambda | `imaml_lam` | takes no transform |" in section
    imaml = next(line for line in section.splitlines() if line.startswith("| `imaml` |"))
    assert imaml.endswith("| `imaml_lam`, `cg_steps` | takes no transform |")
    maml = next(line for line in section.splitlines() if line.startswith("| `maml` |"))
    assert maml.endswith("| – | `adapt_transform`, `transform_psd`, "
                         "`transform_hidden_layers`, `transform_params` |")
    rows = [line.split("`")[1] for line in section.splitlines() if line.startswith("| `")]
    assert rows == ["algorithm.name", *ALGORITHMS.names(), "lam-maml"]
