"""A row's meta-gradient on one meta-batch of its own tasks, against central finite differences.

Before a row that learns slowly is called a finding, this checks that its meta-gradient is
the gradient of the loss it reports: the run's learner and task source are built from the
row's config, one meta-batch is drawn, everything moves to float64, and along a few random
unit directions v the directional derivative <g, v> from `accumulate_meta_gradient` is
compared with (L(θ + εv) − L(θ − εv)) / 2ε of the same mean query loss.

    python -m experiments.gradient_check experiments/configs/omniglot/20w1s-all/anil.toml \
        data.root=path/to/omniglot-py.tar.gz

Second-order rows (MAML, ANIL, Meta-SGD, KFO, LinNet) should agree to about 1e-6 relative
error. First-order rows (FOMAML) drop a term on purpose, Reptile's update is not a gradient
and iMAML's is implicit (exact only at the inner problem's solution), so theirs differ: the
check says so instead of passing them.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Sequence, cast

import torch

from gbml_ext.algorithms.base import MetaLearner
from gbml_ext.data.tasks import Task, sample_batch
from gbml_ext.engine import Algorithm, run_task
from gbml_ext.runner.config import load_config
from gbml_ext.runner.state import build_run, seed_everything

__all__ = ["EXACT", "check_row", "main"]

# Rows whose meta-gradient is the exact gradient of the mean query loss.
EXACT = ("maml", "anil", "metasgd", "l2l-maml")


def _double(task: Task) -> Task:
    return Task(task.support_x.double(), task.support_y, task.query_x.double(), task.query_y)


def check_row(config_path: str, overrides: Sequence[str] = (), tasks: int = 2,
              directions: int = 3, epsilon: float = 1e-6, seed: int = 0) -> Dict[str, Any]:
    """The relative error between autograd's and finite differences' directional derivatives.

    Arguments:
        config_path: a row's TOML config; `overrides`: `key=value` words on top of it.
        tasks: tasks in the meta-batch; directions: random unit directions to compare along.
        epsilon: the finite-difference step; seed: for the model, the tasks and the directions.

    Returns:
        {"name", "algorithm", "transform", "loss", "directions": [{"autograd",
        "finite_difference", "relative_error"}], "max_relative_error"}.
    """
    config = load_config(config_path, [*overrides, f"seed={seed}"])
    seed_everything(seed)
    state = build_run(config, torch.device("cpu"))
    algorithm = state.algorithm.double()
    batch = sample_batch(state.sources["train"], tasks)
    task_list = [_double(batch[i]) for i in range(tasks)]
    steps = config.algorithm.train_steps
    params = [p for p in algorithm.parameters() if p.requires_grad]

    def loss() -> float:  # the value only: no graph to the meta-parameters
        return sum(float(run_task(cast(Algorithm, algorithm), t, steps, train=False).loss.item())
                   for t in task_list) / tasks

    algorithm.zero_grad(set_to_none=True)
    outcomes = cast(MetaLearner, algorithm).accumulate_meta_gradient(task_list, steps)
    grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]
    gradient_norm = float(torch.stack([(g * g).sum() for g in grads]).sum().sqrt())
    generator = torch.Generator().manual_seed(seed)
    rows: List[Dict[str, float]] = []
    for _ in range(directions):
        v = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in params]
        norm = torch.stack([(x * x).sum() for x in v]).sum().sqrt()
        v = [x / norm for x in v]
        with torch.no_grad():
            for p, x in zip(params, v, strict=True):
                p.add_(epsilon * x)
        plus = loss()
        with torch.no_grad():
            for p, x in zip(params, v, strict=True):
                p.sub_(2 * epsilon * x)
        minus = loss()
        with torch.no_grad():
            for p, x in zip(params, v, strict=True):
                p.add_(epsilon * x)
        autograd = float(sum((g * x).sum() for g, x in zip(grads, v, strict=True)))
        finite = (plus - minus) / (2 * epsilon)
        rows.append({"autograd": autograd, "finite_difference": finite,
                     "relative_error": abs(autograd - finite) / max(gradient_norm, 1e-12)})
    return {"name": config.name, "algorithm": config.algorithm.name,
            "transform": config.algorithm.transform,
            "loss": float(torch.stack([o.loss for o in outcomes]).mean()),
            "gradient_norm": gradient_norm, "directions": rows,
            "max_relative_error": max(r["relative_error"] for r in rows)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.gradient_check",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. data.root=...")
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--directions", type=int, default=3)
    parser.add_argument("--epsilon", type=float, default=1e-6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = check_row(args.config, args.overrides, args.tasks, args.directions,
                       args.epsilon, args.seed)
    print(json.dumps(result, indent=1))
    exact = result["algorithm"] in EXACT
    verdict = ("agrees" if result["max_relative_error"] < 1e-4 else "DISAGREES") if exact else \
        "not an exact gradient by design (first-order, Reptile or iMAML): no verdict"
    print(f"{result['name']}: max relative error {result['max_relative_error']:.2e}; {verdict}",
          file=sys.stderr)
    return 1 if exact and result["max_relative_error"] >= 1e-4 else 0


if __name__ == "__main__":
    raise SystemExit(main())
