"""experiments/loss_surface.py (the banner figure of Arnold, Iqbal & Sha, AISTATS 2021): it writes
a valid PNG, its surfaces are the closed-form task loss, and its trajectories are gradient steps."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments import loss_surface
from experiments.loss_surface import MODELS, Result

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path]:
    out = tmp_path_factory.mktemp("loss_surface") / "figure.png"
    argv = ["--out", str(out), "--seed", "3", "--steps", "3", "--meta-iterations", "4",
            "--eval-tasks", "3"]
    return loss_surface.main(argv), out


def test_writes_a_png_and_finite_losses(result: tuple[Result, Path]) -> None:
    res, out = result
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 20_000
    assert set(res.panels) == {"Shallow", "Deep"}
    for panel in res.panels.values():
        assert len(panel.query_losses) == 4 and panel.trajectory.shape == (4, 2)
        assert all(math.isfinite(v) for v in [*panel.query_losses, panel.mean_final_loss])
        assert np.isfinite(panel.surface).all()


def _moments(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
    x, y = x.double().reshape(-1), y.double().reshape(-1)
    return float((x * x).mean()), float((x * y).mean()), float((y * y).mean())


@pytest.mark.parametrize("name", ["Shallow", "Deep"])
def test_surface_is_the_closed_form_query_loss(result: tuple[Result, Path], name: str) -> None:
    res, _ = result
    panel, combine = res.panels[name], MODELS[name][1]
    sxx, sxy, syy = _moments(res.task.query_x, res.task.query_y)
    n = panel.grid_w1.shape[0]
    for i, j in [(0, 0), (n // 3, 2 * n // 3), (n - 1, n // 2), (n - 1, n - 1)]:
        c = combine(panel.grid_w1[i, j], panel.grid_w2[i, j])
        expected = c * c * sxx - 2 * c * sxy + syy  # mean((c·x − y)²)
        assert panel.surface[i, j] == pytest.approx(expected, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("name", ["Shallow", "Deep"])
def test_first_step_is_a_plain_gradient_step_on_the_support_loss(
        result: tuple[Result, Path], name: str) -> None:
    res, _ = result
    panel = res.panels[name]
    (w1, w2), step_one = panel.trajectory[0].astype(float), panel.trajectory[1]
    sxx, sxy, _ = _moments(res.task.support_x, res.task.support_y)
    # L(c) = c²·Sxx − 2c·Sxy + Syy, so dL/dc = 2(c·Sxx − Sxy); then the chain rule through c.
    c = MODELS[name][1](w1, w2)
    dl_dc = 2 * (c * sxx - sxy)
    grad = np.array([dl_dc, dl_dc]) if name == "Shallow" else np.array([dl_dc * w2, dl_dc * w1])
    np.testing.assert_allclose(step_one, [w1, w2] - res.inner_lr * grad, rtol=1e-5, atol=1e-6)
    # ...and the pictured query losses are the closed form along the trajectory.
    qxx, qxy, qyy = _moments(res.task.query_x, res.task.query_y)
    for (u, v), loss in zip(panel.trajectory, panel.query_losses, strict=True):
        c = MODELS[name][1](float(u), float(v))
        assert loss == pytest.approx(c * c * qxx - 2 * c * qxy + qyy, rel=1e-4, abs=1e-5)
