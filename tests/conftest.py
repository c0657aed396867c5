import pytest
import torch

from run_fixtures import read_only, slurm  # noqa: F401 (fixtures for every test module)

# `helpers` and `vision_fixtures` (in this folder) are importable as plain modules through
# `pythonpath = ["tests"]` in pyproject.toml.


@pytest.fixture(autouse=True)
def _seed_and_private_cache(tmp_path_factory, monkeypatch):
    """Every test starts from the same torch seed, and derived-data caches go to a temporary
    folder, never the user's ~/.cache."""
    torch.manual_seed(0)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    yield
