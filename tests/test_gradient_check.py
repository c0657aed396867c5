"""experiments.gradient_check: a row's meta-gradient against central finite differences of the
same loss, on one meta-batch of the Omniglot fixture."""
from pathlib import Path

import pytest

from experiments.gradient_check import check_row, main
from vision_fixtures import write_omniglot_tree

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "omniglot"


@pytest.fixture(scope="module")
def overrides(tmp_path_factory) -> list:
    alphabets = {"images_background": {"Alpha": 5, "Beta": 5}, "images_evaluation": {"Gamma": 5}}
    root = write_omniglot_tree(tmp_path_factory.mktemp("omniglot"), alphabets, drawings=2)
    return [f"data.root='{root}'", "data.queries=1", "data.options={split_sizes=[5, 5, 5]}",
            "model.options={hidden=4}", "device=cpu"]


@pytest.mark.parametrize("row", ["maml", "anil", "maml_kfo"])
def test_second_order_rows_agree_with_finite_differences(row, overrides):
    result = check_row(str(CONFIGS / "5w1s-all" / f"{row}.toml"), overrides, tasks=1,
                       directions=2)
    assert result["gradient_norm"] > 0
    assert result["max_relative_error"] < 1e-5, result


def test_first_order_maml_is_caught_as_a_different_gradient(overrides):
    """FOMAML drops the second-order term, so the same check must see the difference: the
    check can fail."""
    exact = check_row(str(CONFIGS / "5w1s-all" / "maml.toml"), overrides, tasks=1, directions=2)
    first = check_row(str(CONFIGS / "5w1s-all" / "fomaml.toml"), overrides, tasks=1,
                      directions=2)
    assert first["max_relative_error"] > 100 * exact["max_relative_error"]
    assert first["max_relative_error"] > 1e-4


def test_the_command_exits_zero_when_the_gradient_agrees(overrides, capsys):
    code = main([str(CONFIGS / "20w1s-all" / "anil.toml"), *overrides, "--tasks", "1",
                 "--directions", "1"])
    assert code == 0
    assert "agrees" in capsys.readouterr().err
