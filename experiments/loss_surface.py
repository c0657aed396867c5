"""The paper's banner figure: loss surface and inner-loop trajectories of MAML-trained models.

Arnold, Iqbal & Sha, "When MAML Can Adapt Fast and How to Assist When It Cannot" (AISTATS 2021),
open with two models of the same function class, one shallow and one deep, of which only the deep
one adapts fast after MAML. This script redraws that picture on 1-D regression tasks
y = a·x + noise, x ~ N(0, 1), a ~ N(0, σ²), where each model has two parameters:

- Shallow: f(x) = (w₁ + w₂)·x, a bias-free nn.Linear(2, 1) that sees x twice;
- Deep:    f(x) = w₂·w₁·x, gbml_ext.nn.DeepLinear(1, 1, depth=2, width=1, bias=False).

Both represent exactly f(x) = c·x. Each is meta-trained with second-order MAML (gbml_ext.GBML)
for K inner steps at the same small inner learning rate α. The PNG shows, for one held-out
task, its query loss over (w₁, w₂) as log-scaled contours, the task's optimum set (the line
w₁ + w₂ = a, the hyperbola w₁·w₂ = a), the meta-learned initialization and the K inner steps
taken from it. A plain step moves the shallow model's c by the fixed fraction 4α·mean(x²) of
its error; the deep model's step on c scales with w₁² + w₂², which its initialization learns.

    python -m experiments.loss_surface [--out PATH] [--seed N] [--steps K]
"""
from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import gbml_ext
from gbml_ext import engine
from gbml_ext.nn import DeepLinear
from gbml_ext.runner.plots import pyplot, save_figure

SIGMA, NOISE, N_SHOTS = 2.0, 0.1, 32  # task scale σ, target noise, support = query size


class TwoWeightLinear(nn.Module):
    """The shallow model f(x) = (w₁ + w₂)·x: a bias-free Linear(2, 1) applied to (x, x)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.expand(-1, 2))


Combine = Callable[[np.ndarray, np.ndarray], np.ndarray]
# name: (build the model, c as a function of (w₁, w₂), c as text)
MODELS: dict[str, tuple[Callable[[], nn.Module], Combine, str]] = {
    "Shallow": (TwoWeightLinear, lambda u, v: u + v, "w₁ + w₂"),
    "Deep": (lambda: DeepLinear(1, 1, depth=2, width=1, bias=False), lambda u, v: u * v,
             "w₂·w₁"),
}


@dataclass
class Panel:
    """One model's picture: meta-learned init + trajectory (steps + 1, 2), surface on a grid."""

    name: str
    trajectory: np.ndarray
    query_losses: list[float]
    grid_w1: np.ndarray
    grid_w2: np.ndarray
    surface: np.ndarray
    mean_final_loss: float


@dataclass
class Result:
    """The pictured held-out task (slope a), the inner learning rate, and one Panel per model."""

    task: gbml_ext.Task
    a: float
    inner_lr: float
    panels: dict[str, Panel]


def sample_task(generator: torch.Generator) -> tuple[gbml_ext.Task, float]:
    """One task y = a·x + NOISE·ε with a ~ N(0, SIGMA²), x ~ N(0, 1), N_SHOTS support and query."""
    a = SIGMA * float(torch.randn((), generator=generator))
    x = torch.randn(2 * N_SHOTS, 1, generator=generator)
    y = a * x + NOISE * torch.randn(2 * N_SHOTS, 1, generator=generator)
    return gbml_ext.Task(x[:N_SHOTS], y[:N_SHOTS], x[N_SHOTS:], y[N_SHOTS:]), a


def weights(model: nn.Module) -> np.ndarray:
    """The model's two parameters (w₁, w₂), in `parameters()` order."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()


def meta_train(model: nn.Module, inner_lr: float, steps: int, iterations: int,
               generator: torch.Generator, meta_batch: int = 4,
               outer_lr: float = 0.1) -> gbml_ext.GBML:
    """Second-order MAML through the package's engine: `steps` inner steps per task."""
    maml = gbml_ext.GBML(model, lr=inner_lr)
    optimizer = torch.optim.Adam(maml.parameters(), lr=outer_lr)
    for _ in range(iterations):
        optimizer.zero_grad()
        tasks = [sample_task(generator)[0] for _ in range(meta_batch)]
        engine.accumulate_meta_gradient(maml, tasks, steps, F.mse_loss)
        optimizer.step()
    return maml


def trajectory(maml: gbml_ext.GBML, task: gbml_ext.Task,
               steps: int) -> tuple[np.ndarray, list[float]]:
    """(w₁, w₂) after 0..steps inner steps on the support set, and the query loss at each."""
    learner = maml.clone(first_order=True)
    points, losses = [weights(learner)], [float(engine.score_query(learner, task, F.mse_loss).loss)]
    for _ in range(steps):
        engine.adapt_learner(learner, task.support_x, task.support_y, 1, F.mse_loss)
        points.append(weights(learner))
        losses.append(float(engine.score_query(learner, task, F.mse_loss).loss))
    return np.stack(points), losses


def query_surface(model: nn.Module, task: gbml_ext.Task, w1: np.ndarray,
                  w2: np.ndarray) -> np.ndarray:
    """The task's query MSE of `model` at every (w₁, w₂) of the grid, by calling the model."""
    named = list(model.named_parameters())

    def loss(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        pieces = torch.stack([u, v]).split([p.numel() for _, p in named])
        params = {n: w.reshape(p.shape) for (n, p), w in zip(named, pieces, strict=True)}
        out = torch.func.functional_call(model, params, (task.query_x,))
        return F.mse_loss(out, task.query_y)

    u, v = (torch.as_tensor(g, dtype=torch.float32).reshape(-1) for g in (w1, w2))
    with torch.no_grad():
        return torch.vmap(loss)(u, v).reshape(w1.shape).numpy()


def plot(result: Result, steps: int, path: Path) -> None:
    """Two panels side by side (Shallow, Deep), written to the PNG `path`."""
    plt = pyplot()
    import matplotlib.ticker
    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(1, 2, figsize=(12, 5.8))
    for ax, (name, panel) in zip(axes, result.panels.items(), strict=True):
        _, combine, formula = MODELS[name]
        low, high = panel.surface.min(), panel.surface.max()
        levels = np.geomspace(low, high, 30)
        filled = ax.contourf(panel.grid_w1, panel.grid_w2, panel.surface, levels=levels,
                             norm=LogNorm(low, high), cmap="viridis")
        ax.contour(panel.grid_w1, panel.grid_w2, panel.surface, levels=levels[::3],
                   colors="white", linewidths=0.4, alpha=0.5)
        ax.contour(panel.grid_w1, panel.grid_w2, combine(panel.grid_w1, panel.grid_w2),
                   levels=[result.a], colors="red", linewidths=2, linestyles="--")
        path_ = panel.trajectory
        ax.plot(path_[:, 0], path_[:, 1], "o", color="white", markersize=5,
                markeredgecolor="black", markeredgewidth=0.5, zorder=3)
        ax.annotate(f"after {steps} steps", path_[-1], xytext=(8, -14), textcoords="offset points",
                    color="white", fontsize=9, fontweight="bold")
        for start, end in itertools.pairwise(path_):
            ax.annotate("", xy=end, xytext=start,
                        arrowprops={"arrowstyle": "->", "color": "white", "lw": 1.5})
        ax.plot(*path_[0], marker="*", color="orange", markersize=18, markeredgecolor="black",
                label="meta-learned initialization")
        ax.plot([], [], "-o", color="white", markeredgecolor="black",
                label=f"{steps} inner steps (α = {result.inner_lr:g})")
        ax.plot([], [], "--", color="red", label=f"task optimum: {formula} = a = {result.a:.2f}")
        ax.set_aspect("equal")
        ax.set(xlabel="w₁", ylabel="w₂",
               title=f"{name}: f(x) = c·x, c = {formula}\nquery loss {panel.query_losses[0]:.3f} → "
                     f"{panel.query_losses[-1]:.3f} after {steps} steps")
        ax.legend(loc="lower left", fontsize="small", framealpha=0.85)
        fig.colorbar(filled, ax=ax, label="task query loss (log scale)",
                     ticks=matplotlib.ticker.LogLocator())
    fig.suptitle("MAML-trained models on a held-out task: the deep model adapts fast, "
                 "the shallow one crawls", fontsize=13)
    fig.text(0.5, 0.02, "equal function class: f(x) = c·x  (Shallow c = w₁ + w₂, Deep c = w₂·w₁); "
             "same inner learning rate and number of steps", ha="center", fontsize=11)
    save_figure(fig, path, dpi=110, rect=(0, 0.06, 1, 0.97))


def grid_around(points: np.ndarray, combine: Combine, a: float,
                n: int = 161) -> tuple[np.ndarray, np.ndarray]:
    """A square (n, n) grid around the trajectory, the origin and the point where the ray from
    the initialization through the last step meets the optimum set combine(w₁, w₂) = a."""
    ray = points[0] + np.linspace(0, 50, 5001)[:, None] * (points[-1] - points[0])
    gap = combine(ray[:, 0], ray[:, 1]) - a
    crossing = np.flatnonzero(np.sign(gap[1:]) != np.sign(gap[:-1]))
    keep = [points, np.zeros((1, 2))] + ([ray[crossing[:1] + 1]] if len(crossing) else [])
    box = np.concatenate(keep)
    centre, half = (box.max(0) + box.min(0)) / 2, (box.max(0) - box.min(0)).max() / 2
    half = 1.25 * half + 0.5
    w1, w2 = np.meshgrid(*(np.linspace(c - half, c + half, n) for c in centre))
    return w1, w2


def run(out: Path, seed: int = 0, steps: int = 5, inner_lr: float = 0.01,
        meta_iterations: int = 150, eval_tasks: int = 100) -> Result:
    """Meta-trains both models, draws one held-out task and the figure; returns the numbers."""
    held_out = torch.Generator().manual_seed(10_000 + seed)
    task, a = sample_task(held_out)
    while abs(a) < SIGMA / 2:  # a task near a = 0 needs no adaptation: draw the next one
        task, a = sample_task(held_out)
    result = Result(task, a, inner_lr, {})
    for name, (build, _, _) in MODELS.items():
        torch.manual_seed(seed)
        model = build()
        maml = meta_train(model, inner_lr, steps, meta_iterations,
                          torch.Generator().manual_seed(seed))
        points, losses = trajectory(maml, task, steps)
        grid_w1, grid_w2 = grid_around(points, MODELS[name][1], a)
        evaluation = torch.Generator().manual_seed(20_000 + seed)
        finals = [float(engine.adaptation_curve(maml, sample_task(evaluation)[0], steps,
                                                F.mse_loss)[-1].loss) for _ in range(eval_tasks)]
        result.panels[name] = Panel(name, points, losses, grid_w1, grid_w2,
                                    query_surface(model, task, grid_w1, grid_w2),
                                    float(np.mean(finals)))
    plot(result, steps, out)
    return result


def main(argv: Sequence[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(prog="python -m experiments.loss_surface",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/loss_surface.png"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=5, help="inner steps K (training and plot)")
    parser.add_argument("--inner-lr", type=float, default=0.01)
    parser.add_argument("--meta-iterations", type=int, default=150)
    parser.add_argument("--eval-tasks", type=int, default=100)
    args = parser.parse_args(argv)
    result = run(args.out, args.seed, args.steps, args.inner_lr, args.meta_iterations,
                 args.eval_tasks)
    print(f"held-out task a = {result.a:.3f}; query loss after {args.steps} inner steps:")
    for name, panel in result.panels.items():
        print(f"  {name:8s} {panel.query_losses[0]:.4f} -> {panel.query_losses[-1]:.4f}   "
              f"(mean over {args.eval_tasks} held-out tasks: {panel.mean_final_loss:.4f})")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
