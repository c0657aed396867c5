import os
import sys

import pytest
import torch

# The tests import `helpers` (tests/helpers.py) as a plain module.
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def _seed_and_private_cache(tmp_path_factory, monkeypatch):
    """Every test starts from the same torch seed, and derived-data caches go to a temporary
    folder, never the user's ~/.cache."""
    torch.manual_seed(0)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    yield
