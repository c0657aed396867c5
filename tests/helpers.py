"""Small shared helpers for the tests: tiny tasks and independent reference computations."""
from __future__ import annotations

import math
import statistics
from typing import List

import numpy as np
import torch

from gbml_ext import Task


def regression_task(n_support=6, n_query=7, dim=3, seed=0, dtype=torch.float64) -> Task:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, 1, generator=g, dtype=dtype)
    xs = torch.randn(n_support, dim, generator=g, dtype=dtype)
    xq = torch.randn(n_query, dim, generator=g, dtype=dtype)
    return Task(xs, xs @ w + 0.1 * torch.randn(n_support, 1, generator=g, dtype=dtype),
                xq, xq @ w)


def classification_task(ways=3, shots=2, queries=3, dim=4, seed=0, dtype=torch.float64) -> Task:
    g = torch.Generator().manual_seed(seed)
    ys = torch.arange(ways).repeat(shots)
    yq = torch.arange(ways).repeat(queries)
    return Task(torch.randn(len(ys), dim, generator=g, dtype=dtype), ys,
                torch.randn(len(yq), dim, generator=g, dtype=dtype), yq)


def mse_grad_hessian(X: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Gradient and Hessian of mean((X w - y)^2) for a linear model without bias, in numpy."""
    n = X.shape[0]
    grad = 2.0 / n * X.T @ (X @ w - y)
    hess = 2.0 / n * X.T @ X
    return grad, hess


def maml_linear_regression_metagrad(task: Task, w0: np.ndarray, lr: float, steps: int,
                                    first_order: bool = False):
    """Closed-form MAML meta-gradient for y = Xw with MSE: (I - lr H_s)^k grad_q(w_k)."""
    Xs, ys = task.support_x.numpy(), task.support_y.numpy()
    Xq, yq = task.query_x.numpy(), task.query_y.numpy()
    w = w0.copy()
    jac = np.eye(len(w0))
    for _ in range(steps):
        g, H = mse_grad_hessian(Xs, ys, w)
        w = w - lr * g
        jac = (np.eye(len(w0)) - lr * H) @ jac
    gq, _ = mse_grad_hessian(Xq, yq, w)
    return (gq if first_order else jac.T @ gq), w


def params_snapshot(module: torch.nn.Module):
    return [p.detach().clone() for p in module.parameters()]


def finite_difference_grad(fn, params, eps=1e-6):
    """Central differences of a scalar fn() w.r.t. each entry of params (float64 tensors)."""
    grads = []
    for p in params:
        g = torch.zeros_like(p)
        flat, gflat = p.data.view(-1), g.view(-1)
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + eps
            plus = fn().item()
            flat[i] = old - eps
            minus = fn().item()
            flat[i] = old
            gflat[i] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


def table_row(text: str, label: str, nth: int = 0) -> List[str]:
    """The cells of the `nth` markdown table row of `text` whose first cell is `label`."""
    lines = [x for x in text.splitlines() if x.startswith(f"| {label} |")]
    return [cell.strip() for cell in lines[nth].strip("|").split("|")]


def ci_cell(values: List[float]) -> str:
    """mean ± 1.96 s/√n in %, one decimal, computed here without the package's summaries."""
    ci = 1.96 * statistics.stdev(values) / math.sqrt(len(values))
    return f"{100 * statistics.mean(values):.1f} ± {100 * ci:.1f}"
