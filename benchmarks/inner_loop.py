"""Meta-iteration speed, memory and FLOPs: gbml_ext per-task vs batched vs learn2learn (vs higher).

One meta-iteration = zero the gradients, then add the meta-gradient of the mean query loss of
one meta-batch to `.grad` (no outer optimizer step, which is the same for every
implementation). Every implementation gets a copy of the same initial model and the same
random tasks, and they run interleaved (A, B, C, A, B, C, ...) so machine noise hits all alike;
the median over repeats is reported.

Implementations:
    gbml_ext      `algorithm.accumulate_meta_gradient`: the per-task engine.
    batched       `gbml_ext.batched.batched_meta_gradient`: all tasks at once (vmap).
    batched/4     the same, 4 tasks at a time (`tasks_per_chunk=4`): less memory.
    learn2learn   the reference: `l2l.algorithms.MAML` (or `l2l.algorithms.GBML` with
                  `l2l.optim.KroneckerTransform` for ANIL-KFO), `clone()`, `adapt(loss)` per
                  step, `loss.backward()` per task.
    higher        `higher.innerloop_ctx`, MAML configs only, when `higher` is importable.

Configs (Finn et al. 2017 MAML; Raghu et al. 2020 ANIL; Arnold et al. 2021 KFO):
    a  Omniglot CNN4-64, 5-way 1-shot, 15 queries, meta-batch 32, 1 step, MAML and FOMAML.
    b  mini-ImageNet CNN4-32, 5-way 1-shot, 15 queries, meta-batch 4, 5 steps, MAML.
    c  CIFAR-FS CNN4-32, ANIL with a KFO head, 5-way 5-shot, 15 queries, meta-batch 16, 5 steps.

Memory: on CUDA, `torch.cuda.max_memory_allocated` minus the allocation before the
iteration, in this process. On CPU there is no allocator peak counter, so each implementation
runs in a fresh subprocess and reports its peak resident set size (VmHWM, reset just before)
minus its RSS just before the first meta-iteration: that includes allocator caching and fragmentation, so it
is an upper bound on the tensors' own peak.

Example:
    python -m benchmarks.inner_loop --device cpu --configs a,b,c --repeats 3 --json perf.json
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, conv_backward_flop

import gbml_ext  # noqa: F401  (silences gym's import notice before learn2learn loads it)
import learn2learn as l2l
from gbml_ext import ANIL, MAML, KroneckerTransform, Task
from gbml_ext.batched import batched_meta_gradient
from gbml_ext.measure import hardware_description, peak_resident_bytes, reset_peak_resident, resident_bytes
from gbml_ext.nn import cifarfs_cnn4, mini_imagenet_cnn4, omniglot_cnn4

__all__ = ["BenchmarkConfig", "CONFIGS", "IMPLEMENTATIONS", "build_meta_iteration",
           "measure_throughput_ceiling", "main"]

try:
    import higher
except ImportError:
    higher = None


@dataclass(frozen=True)
class BenchmarkConfig:
    """One meta-training setting: model, task shapes, meta-batch, steps, algorithm."""

    name: str
    description: str
    model: str            # "omniglot", "mini_imagenet" or "cifarfs"
    image_shape: tuple
    ways: int
    shots: int
    queries: int
    meta_batch: int
    steps: int
    first_order: bool
    algorithm: str        # "maml" or "anil_kfo"
    lr: float


MODELS = {"omniglot": omniglot_cnn4, "mini_imagenet": mini_imagenet_cnn4,
          "cifarfs": cifarfs_cnn4}

CONFIGS: Dict[str, BenchmarkConfig] = {config.name: config for config in [
    BenchmarkConfig("a-maml", "Omniglot CNN4-64 5w1s q15 mb32 1 step MAML", "omniglot",
                    (1, 28, 28), 5, 1, 15, 32, 1, False, "maml", 0.4),
    BenchmarkConfig("a-fomaml", "Omniglot CNN4-64 5w1s q15 mb32 1 step FOMAML", "omniglot",
                    (1, 28, 28), 5, 1, 15, 32, 1, True, "maml", 0.4),
    BenchmarkConfig("b-maml", "mini-ImageNet CNN4-32 5w1s q15 mb4 5 steps MAML",
                    "mini_imagenet", (3, 84, 84), 5, 1, 15, 4, 5, False, "maml", 0.01),
    BenchmarkConfig("c-anil-kfo", "CIFAR-FS CNN4-32 ANIL-KFO 5w5s q15 mb16 5 steps",
                    "cifarfs", (3, 32, 32), 5, 5, 15, 16, 5, False, "anil_kfo", 0.1),
]}
CONFIG_GROUPS = {"a": ["a-maml", "a-fomaml"], "b": ["b-maml"], "c": ["c-anil-kfo"]}


def make_tasks(config: BenchmarkConfig, device: torch.device, seed: int = 0) -> List[Task]:
    """Random images and balanced labels of the config's shapes (timing needs no real data)."""
    generator = torch.Generator().manual_seed(seed)

    def split(per_class):
        images = torch.randn(config.ways * per_class, *config.image_shape, generator=generator)
        return images.to(device), torch.arange(config.ways).repeat(per_class).to(device)

    return [Task(*split(config.shots), *split(config.queries))
            for _ in range(config.meta_batch)]


def make_model(config: BenchmarkConfig, device: torch.device, seed: int = 0):
    torch.manual_seed(seed)
    return MODELS[config.model](config.ways).to(device)


def _gbml_ext_algorithm(config: BenchmarkConfig, model):
    if config.algorithm == "anil_kfo":
        return ANIL(model.features, model.classifier, lr=config.lr,
                    transform=KroneckerTransform(), first_order=config.first_order)
    return MAML(model, lr=config.lr, first_order=config.first_order)


def _gbml_ext_per_task(config, model, tasks):
    algorithm = _gbml_ext_algorithm(config, model)
    return algorithm, lambda: algorithm.accumulate_meta_gradient(tasks, config.steps)


def _gbml_ext_batched(config, model, tasks, tasks_per_chunk=None):
    algorithm = _gbml_ext_algorithm(config, model)
    return algorithm, lambda: batched_meta_gradient(algorithm, tasks, config.steps,
                                                    tasks_per_chunk=tasks_per_chunk)


def _gbml_ext_batched_chunks_of_4(config, model, tasks):
    return _gbml_ext_batched(config, model, tasks, tasks_per_chunk=4)


def _learn2learn(config, model, tasks):
    if config.algorithm == "anil_kfo":
        body = model.features
        head = l2l.algorithms.GBML(
            model.classifier, lr=config.lr, first_order=config.first_order,
            transform=l2l.optim.KroneckerTransform(l2l.nn.KroneckerLinear, psd=False))
        meta_model = torch.nn.ModuleDict({"body": body, "head": head})
    else:
        body = None
        head = meta_model = l2l.algorithms.MAML(model, lr=config.lr,
                                                first_order=config.first_order)

    def meta_iteration():
        for task in tasks:
            support_x, query_x = task.support_x, task.query_x
            if body is not None:
                # learn2learn's ANIL example: one body pass over support and query together.
                features = body(torch.cat([support_x, query_x]))
                support_x, query_x = features[:len(support_x)], features[len(support_x):]
            learner = head.clone()
            for _ in range(config.steps):
                learner.adapt(F.cross_entropy(learner(support_x), task.support_y))
            (F.cross_entropy(learner(query_x), task.query_y) / len(tasks)).backward()

    return meta_model, meta_iteration


def _higher(config, model, tasks):
    inner_optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)

    def meta_iteration():
        for task in tasks:
            with higher.innerloop_ctx(model, inner_optimizer, copy_initial_weights=False,
                                      track_higher_grads=not config.first_order) as (
                    functional_model, differentiable_optimizer):
                for _ in range(config.steps):
                    differentiable_optimizer.step(
                        F.cross_entropy(functional_model(task.support_x), task.support_y))
                loss = F.cross_entropy(functional_model(task.query_x), task.query_y)
                (loss / len(tasks)).backward()

    return model, meta_iteration


IMPLEMENTATIONS: Dict[str, Callable] = {"gbml_ext": _gbml_ext_per_task,
                                        "batched": _gbml_ext_batched,
                                        "batched/4": _gbml_ext_batched_chunks_of_4,
                                        "learn2learn": _learn2learn}
if higher is not None:
    IMPLEMENTATIONS["higher"] = _higher


def implementations_for(config: BenchmarkConfig) -> List[str]:
    return [name for name in IMPLEMENTATIONS
            if not (name == "higher" and config.algorithm != "maml")
            and not (name == "batched/4" and config.meta_batch <= 4)]


def build_meta_iteration(config: BenchmarkConfig, implementation: str, device: torch.device
                         ) -> Callable[[], None]:
    """Returns a no-argument function running one meta-iteration of `implementation`.

    Every implementation gets the same initial weights (seeded model) and the same tasks.

    Example:
        >>> step = build_meta_iteration(CONFIGS["a-maml"], "batched", torch.device("cpu"))
        >>> step()   # one meta-gradient over 32 Omniglot-shaped tasks
    """
    meta_model, meta_iteration = IMPLEMENTATIONS[implementation](
        config, make_model(config, device), make_tasks(config, device))

    def run():
        meta_model.zero_grad(set_to_none=True)
        meta_iteration()

    return run


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(function: Callable[[], None], device: torch.device) -> float:
    _synchronize(device)
    start = time.perf_counter()
    function()
    _synchronize(device)
    return time.perf_counter() - start


def _grouped_conv_backward_flop(grad_out_shape, x_shape, w_shape, bias, stride, padding,
                                dilation, transposed, output_padding, groups, output_mask,
                                out_shape, **kwargs) -> int:
    """torch's convolution_backward formula, with the weight gradient divided by `groups`.

    torch 2.x's formula ignores `groups` for the weight gradient, so it over-counts the
    grouped convolutions that vmap runs for per-task weights by a factor of T.
    """
    common = (grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
              output_padding, groups)
    input_flops = conv_backward_flop(*common, [output_mask[0], False, False],
                                     out_val=out_shape)
    weight_flops = conv_backward_flop(*common, [False, output_mask[1], False],
                                      out_val=out_shape)
    return input_flops + weight_flops // groups


def count_flops(function: Callable[[], None]) -> int:
    """FLOPs of the aten ops one call runs (convolutions, matmuls; elementwise ops count 0)."""
    mapping = {torch.ops.aten.convolution_backward: _grouped_conv_backward_flop}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        function()
    return counter.get_total_flops()


def measure_throughput_ceiling(device: torch.device, repeats: int = 5) -> Dict[str, float]:
    """Measured GFLOP/s of a large matmul and of a CNN4-sized conv2d, forward only.

    These are what the hardware reaches on friendly shapes; a meta-iteration mixes them with
    small, memory-bound ops, so it can only approach them.
    """
    matmul_a = torch.randn(2048, 2048, device=device)
    matmul_b = torch.randn(2048, 2048, device=device)
    # Omniglot CNN4 layer 2 over a 32-task query batch: 2400 images, 64->64 channels, 14x14.
    conv_input = torch.randn(2400, 64, 14, 14, device=device)
    conv_weight = torch.randn(64, 64, 3, 3, device=device)
    ceilings = {}
    for name, function in (("matmul_gflops", lambda: matmul_a @ matmul_b),
                           ("conv2d_gflops", lambda: F.conv2d(conv_input, conv_weight,
                                                              stride=2, padding=1))):
        flops = count_flops(function)
        function()
        seconds = statistics.median(_timed(function, device) for _ in range(repeats))
        ceilings[name] = flops / seconds / 1e9
    return ceilings


def _peak_memory_in_process(run: Callable[[], None], device: torch.device) -> int:
    gc.collect()
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - baseline


def _memory_probe(config_json: str, implementation: str) -> None:
    """Subprocess body: prints the peak RSS increase of one meta-iteration as JSON."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    fields = json.loads(config_json)
    config = BenchmarkConfig(**{**fields, "image_shape": tuple(fields["image_shape"])})
    run = build_meta_iteration(config, implementation, torch.device("cpu"))
    gc.collect()
    reset_peak_resident()
    baseline = resident_bytes()
    run()
    print(json.dumps({"peak_increase_bytes": peak_resident_bytes() - baseline}))


def peak_memory(config: BenchmarkConfig, implementation: str, device: torch.device) -> int:
    """Peak memory of one meta-iteration in bytes (see the module docstring for the method)."""
    if device.type == "cuda":
        run = build_meta_iteration(config, implementation, device)
        run()  # first call allocates cuDNN workspaces and caches once
        return _peak_memory_in_process(run, device)
    command = [sys.executable, "-m", "benchmarks.inner_loop", "--memory-probe",
               json.dumps(asdict(config)), implementation]
    environment = dict(os.environ, BENCH_THREADS=str(torch.get_num_threads()))
    output = subprocess.run(command, check=True, capture_output=True, text=True,
                            env=environment, cwd=os.path.dirname(os.path.dirname(
                                os.path.abspath(__file__)))).stdout
    return json.loads(output.strip().splitlines()[-1])["peak_increase_bytes"]


def benchmark_config(config: BenchmarkConfig, implementations: List[str],
                     device: torch.device, repeats: int, warmup: int, measure_memory: bool
                     ) -> Dict[str, Dict[str, float]]:
    """Interleaved median time, FLOPs, GFLOP/s and peak memory for each implementation."""
    runs = {name: build_meta_iteration(config, name, device) for name in implementations}
    for _ in range(warmup):
        for run in runs.values():
            run()
    times: Dict[str, List[float]] = {name: [] for name in implementations}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(_timed(run, device))
    results = {}
    for name, run in runs.items():
        seconds = statistics.median(times[name])
        flops = count_flops(run)
        results[name] = {"median_s": seconds, "times_s": times[name], "flops": flops,
                         "gflops_per_s": flops / seconds / 1e9}
    del runs
    gc.collect()
    for name in implementations:
        results[name]["peak_memory_mb"] = (
            peak_memory(config, name, device) / 2**20 if measure_memory else None)
    reference = results.get("learn2learn", {}).get("median_s")
    for name in implementations:
        results[name]["speedup_vs_learn2learn"] = (
            reference / results[name]["median_s"] if reference else None)
    return results


def print_table(title: str, results: Dict[str, Dict[str, float]]) -> None:
    print(f"\n## {title}")
    print(f"{'implementation':<12} {'median s/iter':>13} {'vs l2l':>7} {'peak MB':>8} "
          f"{'GFLOP/iter':>10} {'GFLOP/s':>8}")
    for name, row in results.items():
        memory = "-" if row["peak_memory_mb"] is None else f"{row['peak_memory_mb']:.0f}"
        speedup = "-" if row["speedup_vs_learn2learn"] is None else \
            f"{row['speedup_vs_learn2learn']:.2f}x"
        print(f"{name:<12} {row['median_s']:>13.3f} {speedup:>7} {memory:>8} "
              f"{row['flops'] / 1e9:>10.1f} {row['gflops_per_s']:>8.1f}", flush=True)


def memory_stays_flat(device: torch.device, iterations: int, every: int = 100
                      ) -> Dict[str, List[List[float]]]:
    """Samples memory every `every` meta-iterations of a small config with an Adam step.

    Small config: Omniglot CNN4-32, 5w1s, 15 queries, meta-batch 4, 1 step, MAML. Returns,
    per implementation, [iteration, MB] pairs: RSS on CPU, allocated memory on CUDA.
    """
    config = BenchmarkConfig("flat", "Omniglot CNN4-32 5w1s q15 mb4 1 step MAML", "omniglot",
                             (1, 28, 28), 5, 1, 15, 4, 1, False, "maml", 0.4)
    samples = {}
    for name in ("gbml_ext", "batched"):
        model = MODELS[config.model](config.ways, hidden=32).to(device)
        meta_model, meta_iteration = IMPLEMENTATIONS[name](config, model,
                                                           make_tasks(config, device))
        optimizer = torch.optim.Adam(meta_model.parameters(), lr=1e-3)
        trace = []
        for iteration in range(1, iterations + 1):
            optimizer.zero_grad(set_to_none=True)
            meta_iteration()
            optimizer.step()
            if iteration == 1 or iteration % every == 0:
                gc.collect()
                used = (torch.cuda.memory_allocated(device) if device.type == "cuda"
                        else resident_bytes())
                trace.append([iteration, used / 2**20])
        samples[name] = trace
        print(f"{name:<12} memory (iteration, MB): "
              + ", ".join(f"({i}, {mb:.0f})" for i, mb in trace), flush=True)
    return samples


def main(argv: Optional[List[str]] = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--configs", default="a,b,c",
                        help="comma-separated subset of a,b,c; empty for none")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed meta-iterations per implementation (default 3 CPU, 20 CUDA)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed meta-iterations first")
    parser.add_argument("--flat-iterations", type=int, default=None,
                        help="meta-iterations of the flat-memory check (default 300 CPU, 2000 "
                             "CUDA; the performance issue asks for 2000); 0 skips it")
    parser.add_argument("--skip-memory", action="store_true", help="no peak-memory runs")
    parser.add_argument("--skip-order-comparison", action="store_true",
                        help="no FOMAML vs MAML comparison at 1 and 5 steps")
    parser.add_argument("--json", default=None, help="write all results to this file")
    parser.add_argument("--memory-probe", nargs=2, metavar=("CONFIG", "IMPLEMENTATION"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        _memory_probe(*args.memory_probe)
        return {}

    device = torch.device(args.device)
    on_cpu = device.type == "cpu"
    repeats = args.repeats or (3 if on_cpu else 20)
    flat_iterations = args.flat_iterations if args.flat_iterations is not None else (
        300 if on_cpu else 2000)
    report = {
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks.inner_loop"]
                            + (sys.argv[1:] if argv is None else argv)),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hardware": hardware_description(device), "torch": torch.__version__,
        "learn2learn": l2l.__version__, "higher": getattr(higher, "__version__", None),
        "repeats": repeats, "warmup": args.warmup,
        "memory_method": ("CUDA max_memory_allocated increase" if not on_cpu else
                          "peak RSS (VmHWM) increase over one meta-iteration, in "
                          "a fresh subprocess per implementation"),
    }
    print(json.dumps(report, indent=1))
    report["ceiling"] = measure_throughput_ceiling(device)
    print(f"\nceiling: matmul {report['ceiling']['matmul_gflops']:.1f} GFLOP/s, conv2d "
          f"{report['ceiling']['conv2d_gflops']:.1f} GFLOP/s", flush=True)

    report["configs"] = {}
    for group in filter(None, args.configs.split(",")):  # --configs "" runs only the extras
        for name in CONFIG_GROUPS[group.strip()]:
            config = CONFIGS[name]
            results = benchmark_config(config, implementations_for(config), device,
                                       repeats, args.warmup, not args.skip_memory)
            report["configs"][name] = {"description": config.description, "results": results}
            print_table(f"{name}: {config.description}", results)

    if not args.skip_order_comparison:
        report["order_comparison"] = {}
        base = CONFIGS["a-maml"]
        for steps in (1, 5):
            for first_order in (False, True):
                # Meta-batch 8 keeps the 5-step second-order runs inside the time budget.
                config = BenchmarkConfig(**{**asdict(base), "meta_batch": 8, "steps": steps,
                                            "first_order": first_order})
                label = f"{'FOMAML' if first_order else 'MAML'} {steps} step(s)"
                results = benchmark_config(config, ["gbml_ext", "batched"], device,
                                           repeats, args.warmup, not args.skip_memory)
                report["order_comparison"][label] = results
                print_table(f"Omniglot CNN4-64 5w1s q15 mb8, {label}", results)

    if flat_iterations:
        print(f"\n## memory over {flat_iterations} meta-iterations (Adam outer step)")
        report["flat_memory"] = memory_stays_flat(device, flat_iterations)

    if args.json:
        with open(args.json, "w") as output:
            json.dump(report, output, indent=1)
    return report


if __name__ == "__main__":
    main()
