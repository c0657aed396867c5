"""The inner-loop benchmark's two side studies: whether memory stays flat over many
meta-iterations with an outer step, and FOMAML against MAML at 1 and 5 inner steps, per task
and batched. `benchmarks/inner_loop.py` runs them after its tables."""
from __future__ import annotations

import gc
from typing import Any, Callable, Dict, List

import torch

from gbml_ext.measure import memory_in_use

from .configs import CONFIGS, BenchmarkConfig, make_learner, make_tasks, tiny
from .harness import benchmark_config, print_table
from .peers import PEERS

__all__ = ["memory_stays_flat", "order_comparison"]


def memory_stays_flat(device: torch.device, iterations: int, every: int = 100,
                      small: bool = False) -> Dict[str, List[List[float]]]:
    """Samples memory every `every` meta-iterations of a small config with an Adam step.

    Small config: Omniglot CNN4-32, 5w1s, 15 queries, meta-batch 4, 1 step, MAML. Returns,
    per implementation, [iteration, MB] pairs: RSS on CPU, allocated memory on CUDA.
    """
    config = CONFIGS["a-maml"].with_overrides(
        ["train.meta_batch=4", "model.options={hidden = 32}"], "flat",
        "Omniglot CNN4-32 5w1s q15 mb4 1 step MAML")
    config = tiny(config) if small else config
    samples = {}
    for name in ("gbml_ext", "batched"):
        learner = make_learner(config, device)
        meta_model, meta_iteration = PEERS[name].build(config, learner, make_tasks(config, device))
        optimizer = torch.optim.Adam(meta_model.parameters(), lr=1e-3)
        trace = []
        for iteration in range(1, iterations + 1):
            optimizer.zero_grad(set_to_none=True)
            meta_iteration()
            optimizer.step()
            if iteration == 1 or iteration % every == 0:
                gc.collect()
                trace.append([iteration, memory_in_use(device) / 2**20])
        samples[name] = trace
        print(f"{name:<12} memory (iteration, MB): "
              + ", ".join(f"({i}, {mb:.0f})" for i, mb in trace), flush=True)
    return samples


def order_comparison(shrink: Callable[[BenchmarkConfig], BenchmarkConfig],
                     device: torch.device, repeats: int, warmup: int,
                     measure_memory: bool) -> Dict[str, Any]:
    """FOMAML vs MAML at 1 and 5 steps on Omniglot, meta-batch 8, per-task vs batched
    (`shrink` makes the configs tiny in a smoke test)."""
    comparison = {}
    for steps in (1, 5):
        for algorithm in ("maml", "fomaml"):
            label = f"{algorithm.upper()} {steps} step(s)"
            # Meta-batch 8 keeps the 5-step second-order runs inside the time budget.
            config = shrink(CONFIGS["a-maml"].with_overrides(
                ["train.meta_batch=8", f"algorithm.train_steps={steps}",
                 f"algorithm.name={algorithm}"], f"order-{algorithm}-{steps}", label))
            results = benchmark_config(config, ["gbml_ext", "batched"], device, repeats,
                                       warmup, measure_memory)
            comparison[label] = results
            print_table(f"Omniglot CNN4-64 5w1s q15 mb8, {label}", results)
    return comparison
