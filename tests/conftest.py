import os
import sys

import pytest
import torch

# The tests import `helpers` (tests/helpers.py) as a plain module.
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
