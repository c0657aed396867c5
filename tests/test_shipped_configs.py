"""Every config shipped under experiments/configs loads and validates, and builds its learner."""
from pathlib import Path

import pytest

from gbml_ext.runner import load_config
from gbml_ext.runner.build import build_learner

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "experiments" / "configs").rglob("*.toml"))


def test_there_are_configs() -> None:
    assert len(CONFIGS) > 100


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[2])))
def test_config_loads_and_names_no_local_data_path(path: Path) -> None:
    config = load_config(path)
    assert not config.data.root.startswith("../"), "a shipped config must not point outside"
    if path.name != "base.toml" and config.data.source in ("linear-regression",
                                                          "logistic-regression"):
        build_learner(config)
