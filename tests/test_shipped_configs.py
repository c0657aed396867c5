"""Every config shipped under experiments/configs loads and validates, and builds its learner;
the shipped configs are found by name wherever gbml_ext runs (a clone, or an installed wheel
that carries them as gbml_ext/configs/, see tests/test_install.py)."""
from pathlib import Path

import pytest

from gbml_ext.runner import ConfigError, load_config
from gbml_ext.runner.build import build_learner
from gbml_ext.runner.cli import main
from gbml_ext.runner.shipped import list_shipped_configs, shipped_configs_dir
from run_fixtures import clean_error, cli

SHIPPED = Path(__file__).resolve().parents[1] / "experiments" / "configs"
CONFIGS = sorted(SHIPPED.rglob("*.toml"))


def test_there_are_configs() -> None:
    assert len(CONFIGS) > 100


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[2])))
def test_config_loads_and_names_no_local_data_path(path: Path) -> None:
    config = load_config(path)
    assert not config.data.root.startswith("../"), "a shipped config must not point outside"
    if path.name != "base.toml" and config.data.source in ("linear-regression",
                                                          "logistic-regression"):
        build_learner(config)


def test_a_shipped_config_is_found_by_its_name_anywhere(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no experiments/ here
    full = load_config(SHIPPED / "omniglot" / "5w1s" / "maml.toml", ["train.iterations=7"])
    for name in ("omniglot/5w1s/maml.toml", "experiments/configs/omniglot/5w1s/maml.toml"):
        assert load_config(name, ["train.iterations=7"]) == full, name
    # a file of that name where the command runs comes first
    local = tmp_path / "synthetic" / "logreg.toml"
    local.parent.mkdir()
    local.write_text('name = "mine"\n')
    assert load_config("synthetic/logreg.toml").name == "mine"


def test_gbml_train_lists_the_shipped_configs(capsys) -> None:
    code, out, err = cli(capsys, main, "--list-configs")
    assert code == 0, err
    header, *names = out.splitlines()
    assert str(shipped_configs_dir()) in header
    assert names == list_shipped_configs()
    expected = {p.relative_to(SHIPPED).as_posix() for p in CONFIGS
                if p.name != "base.toml" and not p.stem.endswith("_base")}
    assert set(names) == expected and "omniglot/5w1s/maml.toml" in names


def test_a_missing_config_says_where_the_shipped_ones_are(tmp_path, capsys) -> None:
    code, _, err = cli(capsys, main, tmp_path / "nope.toml", "--print-config")
    assert code == 2 and clean_error(err, 1), err
    assert f"config file {tmp_path / 'nope.toml'} does not exist" in err
    assert f"the configs shipped with gbml_ext are in {shipped_configs_dir()}" in err
    assert "gbml-train --list-configs" in err


def test_a_missing_extends_is_named(tmp_path) -> None:
    child = tmp_path / "child.toml"
    child.write_text('extends = "../bases/base.toml"\nname = "child"\n')
    with pytest.raises(ConfigError) as error:
        load_config(child)
    assert str(error.value) == (f"config file {child} extends '../bases/base.toml', which does "
                                f"not exist ({tmp_path / '../bases/base.toml'}); fix its "
                                f"extends line.")
    child.write_text('extends = 3\n')
    with pytest.raises(ConfigError, match="extends must be a file name in quotes, got 3"):
        load_config(child)
