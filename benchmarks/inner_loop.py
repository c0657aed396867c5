"""Meta-iteration speed, memory and FLOPs: gbml_ext against its peers, interleaved.

One meta-iteration = zero the gradients, then add the meta-gradient of the mean query loss of
one meta-batch to `.grad` (no outer optimizer step, which is the same for every
implementation). Every peer gets the runner's learner for the config (`build_learner`, from the
same seed) and the same tasks; they run interleaved and the median over repeats is reported
(benchmarks/harness.py says how time, memory and FLOPs are measured).

Peers (benchmarks/peers/, each checked to give gbml_ext's meta-gradient by
tests/test_benchmark_peers.py):
    gbml_ext      `learner.accumulate_meta_gradient`: the per-task engine.
    batched       `gbml_ext.fast.batched_meta_gradient`: all tasks at once (vmap), the
                  runner's fast path (`algorithm.path = "batched"`, gbml_ext.fast).
    batched/4     the same, 4 tasks at a time: less memory.
    learn2learn   the reference: `l2l.algorithms.MAML` (or `GBML` + its KroneckerTransform for
                  ANIL-KFO), `clone()`, `adapt(loss)` per step, `backward()` per task.
    torch.func    `functional_call` + `torch.autograd.grad(create_graph=True)`, per task.
    higher        `higher.innerloop_ctx` (higher 0.2.1), when installed.
    torchopt      TorchOpt 0.7.3's functional `sgd` + `apply_updates`, when installed. With
                  torch 2.14.1 it imports and its Python optimizers work; only its compiled
                  extension fails to load ("torchopt/_C...so: undefined symbol:
                  _ZN2at4_ops10empty_like4call..."), which serves the fused Adam alone.
    jax           the same network in JAX, vmap over tasks, the meta-step under `jax.jit`, when
                  jax imports (configs a, b, s).
    nhwc          the per-task engine with channels-last weights (benchmarks/peers/gbml_ext.py).
    compiled      the runner's compiled path (`algorithm.path = "compiled"`), on every config
                  it can meta-train; compiled-nhwc with channels-last weights, and
                  compiled-cudagraphs with CUDA graphs on top (CUDA only); see
                  benchmarks/peers/compiled.py. Only with `--compiled` (or named in --peers):
                  they spend seconds to minutes compiling, reported as `first_call_s`.
                  `--compiled-configs` limits them to some configs.
Install the optional peers with `pip install -e ".[bench]"`.

The JSON (--json) and markdown (--markdown) reports are rewritten after every config, so a run
cut off by a time limit keeps what it measured; `--max-seconds` stops starting new sections
once that much time has gone by, and the report lists what it skipped.

Configs (benchmarks/configs.py): a (Omniglot MAML and FOMAML), b (mini-ImageNet MAML, 5 steps),
c (CIFAR-FS ANIL-KFO), s (synthetic linear regression, experiments/configs/synthetic/
linreg_shallow.toml).

Example:
    python -m benchmarks.inner_loop --device cpu --configs a,b,c,s --repeats 3 --json perf.json
    python -m benchmarks.inner_loop --tiny --repeats 1 --skip-memory   # a smoke test
    python -m benchmarks.inner_loop --configs s --peers compiled,batched,learn2learn,jax \
        --threads 1                     # the compiled path beside JAX and learn2learn
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from gbml_ext.fileio import atomic_write_json, atomic_write_text
from gbml_ext.measure import hardware_description

from .configs import CONFIG_GROUPS, CONFIGS, BenchmarkConfig, tiny
from .harness import (
    benchmark_config,
    markdown_table,
    measure_throughput_ceiling,
    memory_probe,
    print_table,
)
from .peers import OPT_IN, PEERS, UNAVAILABLE, build_meta_iteration, default_peers, peers_for
from .peers.compiled import unsupported as compiled_unsupported
from .studies import memory_stays_flat, order_comparison

__all__ = ["build_meta_iteration", "main", "markdown_report", "memory_stays_flat"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--configs", default="a,b,c,s",
                        help="comma-separated groups (a,b,c,s) or configs (a-maml, ...), run in "
                             "that order; empty for none")
    parser.add_argument("--count-flops", default="all", choices=["all", "one", "none"],
                        help="count FLOPs of every peer, of the first one only (all peers do "
                             "the same arithmetic; counting is slow), or of none")
    parser.add_argument("--peers", default=None,
                        help=f"comma-separated subset of {','.join(PEERS)} (default: all "
                             f"installed but the compiled ones)")
    parser.add_argument("--compiled", action="store_true",
                        help=f"add the compiled peers ({', '.join(OPT_IN)}; seconds to minutes "
                             f"of compiling each)")
    parser.add_argument("--compiled-configs", default=None,
                        help="comma-separated groups or configs on which the compiled peers "
                             "run (default: every config they can run)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed meta-iterations per implementation (default 3 CPU, 20 CUDA)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed meta-iterations first (at least one is always run: it "
                             "holds compilation and leaves out a peer that fails)")
    parser.add_argument("--max-seconds", type=float, default=0.0,
                        help="start no new config or section after this many seconds (0: no "
                             "limit); what was left out is listed in the report")
    parser.add_argument("--markdown", default=None,
                        help="write the tables as markdown to this file, config by config")
    parser.add_argument("--flat-iterations", type=int, default=None,
                        help="meta-iterations of the flat-memory check (default 300 CPU, 2000 "
                             "CUDA; a long run shows a leak best); 0 skips it")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads for every peer (0: torch's default)")
    parser.add_argument("--skip-memory", action="store_true", help="no peak-memory runs")
    parser.add_argument("--skip-order-comparison", action="store_true",
                        help="no FOMAML vs MAML comparison at 1 and 5 steps")
    parser.add_argument("--tiny", action="store_true",
                        help="shrink every config (width 8, <= 5 tasks, <= 2 steps): smoke tests "
                             "only, its numbers mean nothing")
    parser.add_argument("--json", default=None, help="write all results to this file")
    parser.add_argument("--memory-probe", nargs=2, metavar=("CONFIG", "IMPLEMENTATION"),
                        help=argparse.SUPPRESS)
    return parser


def _config_names(text: str) -> List[str]:
    """The configs of comma-separated groups (a,b,c,s) or config names, in order."""
    names = [name for group in filter(None, text.split(","))  # "" runs only extras
             for name in CONFIG_GROUPS.get(group.strip(), [group.strip()])]
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        raise SystemExit(f"unknown configs {unknown}; groups: {list(CONFIG_GROUPS)}, configs: "
                         f"{list(CONFIGS)}")
    return names


def _why_not(peer: str, config: BenchmarkConfig) -> str:
    """Why `peer` does not run `config` (the compiled path's reason for its peers)."""
    reason = compiled_unsupported(config) if peer in OPT_IN else None
    return f"does not run this config: {reason}" if reason else "does not run this config"


def _unchanged(config: BenchmarkConfig) -> BenchmarkConfig:
    return config


def _header(args: argparse.Namespace, argv: Optional[List[str]], device: torch.device,
            repeats: int) -> Dict[str, Any]:
    import learn2learn

    header = {
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks.inner_loop"]
                            + (sys.argv[1:] if argv is None else argv)),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hardware": hardware_description(device), "torch": torch.__version__,
        "learn2learn": learn2learn.__version__,
        "peers": {name: peer.version for name, peer in PEERS.items()},
        "repeats": repeats, "warmup": args.warmup, "tiny": args.tiny,
        "threads": torch.get_num_threads(),
        "memory_method": ("CUDA max_memory_allocated increase" if device.type == "cuda" else
                          "peak RSS (VmHWM) increase over one meta-iteration, in "
                          "a fresh subprocess per implementation"),
    }
    if "jax" in PEERS:
        from .peers.jax import backend

        header["jax"] = backend()
    return header


def _chosen_peers(args: argparse.Namespace) -> Tuple[List[str], Dict[str, str]]:
    """The peers asked for (or the default ones), and the optional ones left out with why."""
    if args.peers is None:
        return default_peers(args.compiled), dict(UNAVAILABLE)
    names = [name.strip() for name in args.peers.split(",") if name.strip()]
    unknown = sorted(set(names) - set(PEERS) - set(UNAVAILABLE))
    if unknown:
        raise SystemExit(f"unknown or uninstalled peers {unknown}; available: {list(PEERS)}")
    chosen = [name for name in names if name in PEERS]
    chosen += [name for name in PEERS if args.compiled and name in OPT_IN
               and name not in chosen]
    return chosen, {name: UNAVAILABLE[name] for name in names if name in UNAVAILABLE}


def markdown_report(report: Dict[str, Any]) -> str:
    """The report so far as markdown: header, then one table per config measured."""
    lines = ["# Meta-iteration benchmark", "",
             f"- command: `{report['command']}`", f"- date: {report['date']}",
             f"- hardware: {report['hardware']}; torch {report['torch']}",
             f"- repeats: {report['repeats']} (median), warm-up {report['warmup']}"
             + (" (TINY: numbers mean nothing)" if report["tiny"] else "")]
    ceiling = report.get("ceiling")
    if ceiling:
        lines.append(f"- ceiling: matmul {ceiling['matmul_gflops']:.1f} GFLOP/s, conv2d "
                     f"{ceiling['conv2d_gflops']:.1f} GFLOP/s")
    for name, reason in report.get("unavailable_peers", {}).items():
        lines.append(f"- {name}: not run ({reason})")
    for name, entry in report.get("configs", {}).items():
        lines += ["", f"## {name}: {entry['description']}", ""] + markdown_table(entry["results"])
        lines += [f"- {peer}: {why}" for peer, why in entry.get("skipped_peers", {}).items()]
    if report.get("skipped"):
        lines += ["", "## Not run (time budget)", ""] + [
            f"- {name}: {why}" for name, why in report["skipped"].items()]
    return "\n".join(lines) + "\n"


def _save(report: Dict[str, Any], args: argparse.Namespace) -> None:
    """Writes the reports so far (atomically: a cut-off run leaves the previous version)."""
    if args.json:
        atomic_write_json(args.json, report)
    if args.markdown:
        atomic_write_text(args.markdown, markdown_report(report))


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Runs the benchmark (see the module docstring and `--help`) and returns the report."""
    args = _parser().parse_args(argv)
    if args.memory_probe:
        memory_probe(*args.memory_probe)
        return {}
    if args.threads < 0:
        raise SystemExit(f"--threads {args.threads}: give 0 (torch's default) or more")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.monotonic()

    def out_of_time(section: str) -> bool:
        if args.max_seconds and time.monotonic() - started > args.max_seconds:
            report.setdefault("skipped", {})[section] = (
                f"--max-seconds {args.max_seconds:g} used up")
            print(f"\n{section}: skipped, --max-seconds {args.max_seconds:g} used up", flush=True)
            _save(report, args)
            return True
        return False

    device = torch.device(args.device)
    on_cpu = device.type == "cpu"
    repeats = args.repeats or (3 if on_cpu else 20)
    flat_iterations = args.flat_iterations if args.flat_iterations is not None else (
        300 if on_cpu else 2000)
    chosen, unavailable = _chosen_peers(args)
    shrink: Callable[[BenchmarkConfig], BenchmarkConfig] = tiny if args.tiny else _unchanged
    report = _header(args, argv, device, repeats)
    report["unavailable_peers"] = unavailable
    print(json.dumps(report, indent=1))
    report["ceiling"] = measure_throughput_ceiling(device, scale=0.05 if args.tiny else 1.0)
    print(f"\nceiling: matmul {report['ceiling']['matmul_gflops']:.1f} GFLOP/s, conv2d "
          f"{report['ceiling']['conv2d_gflops']:.1f} GFLOP/s", flush=True)

    report["configs"] = {}
    names = _config_names(args.configs)
    compiled_on = None if args.compiled_configs is None else _config_names(args.compiled_configs)
    for name in dict.fromkeys(names):
        if out_of_time(name):
            continue
        config = shrink(CONFIGS[name])
        skipped: Dict[str, str] = {}
        here = [peer for peer in chosen if compiled_on is None or peer not in OPT_IN
                or name in compiled_on]
        runs = peers_for(config, here)
        if args.peers is not None:  # a peer named that cannot run this config says why
            skipped.update({peer: _why_not(peer, config) for peer in here if peer not in runs})
        results = benchmark_config(config, runs, device, repeats, args.warmup,
                                   not args.skip_memory, skipped, args.count_flops)
        report["configs"][name] = {"description": config.description, "results": results,
                                   "skipped_peers": skipped}
        print_table(f"{name}: {config.description}", results)
        _save(report, args)

    if not args.skip_order_comparison and not out_of_time("order_comparison"):
        report["order_comparison"] = order_comparison(shrink, device, repeats, args.warmup,
                                                    not args.skip_memory)
        _save(report, args)
    if flat_iterations and not out_of_time("flat_memory"):
        print(f"\n## memory over {flat_iterations} meta-iterations (Adam outer step)")
        report["flat_memory"] = memory_stays_flat(device, flat_iterations, small=args.tiny)
    report["seconds"] = round(time.monotonic() - started, 1)
    _save(report, args)
    return report


if __name__ == "__main__":
    main()
