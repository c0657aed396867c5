"""Every benchmark peer computes gbml_ext's meta-gradient, so the benchmark compares like with
like; and the benchmark's configs come from the runner's registry."""
from __future__ import annotations

import importlib.util
from typing import Dict, List, Optional, Sequence

import pytest
import torch

from benchmarks.configs import CONFIGS, BenchmarkConfig, make_learner, make_tasks, tiny
from benchmarks.peers import (
    OPT_IN,
    PEERS,
    UNAVAILABLE,
    PeerUnavailable,
    build_meta_iteration,
    default_peers,
    peers_for,
)
from gbml_ext.algorithms import ANIL, GBML
from gbml_ext.optim import KroneckerTransform

RTOL = 1e-5


def _small(config_name: str, extra: Sequence[str] = ()) -> BenchmarkConfig:
    """Tiny, 1 query per class; mini-ImageNet's 84x84 double backward in float64 is the slow
    part, so b gets 2 tasks (batched/4 does not run on it anyway). `extra`: more overrides."""
    config = tiny(CONFIGS[config_name], tasks=2 if config_name.startswith("b") else 5, queries=1)
    return config.with_overrides(list(extra)) if extra else config


def _meta_gradient(config_name: str, peer: str, device: torch.device, extra: Sequence[str] = ()
                   ) -> Dict[str, Optional[torch.Tensor]]:
    config = _small(config_name, extra)
    learner = make_learner(config, device)
    build_meta_iteration(config, peer, device, learner)()
    return {name: p.grad for name, p in learner.named_parameters()}


# Compiling takes tens of seconds on a CPU, so the compiled path has its own slow tests.
SLOW_PEERS = ("compiled", "compiled-nhwc", "compiled-cudagraphs")


def _check_all_peers(config_name: str, device: torch.device, only: Sequence[str] = (),
                     extra: Sequence[str] = ()) -> List[str]:
    """Asserts every peer's meta-gradient equals gbml_ext's; returns the peers compared."""
    torch.set_default_dtype(torch.float64)  # 1e-5 is then far above rounding (about 1e-13)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny problems: extra threads only contend for a shared CPU
    try:
        reference = _meta_gradient(config_name, "gbml_ext", device, extra)
        assert all(g is not None for g in reference.values())
        total = torch.cat([g.flatten() for g in reference.values()]).norm()
        assert total > 0
        compared: List[str] = []
        for peer in peers_for(_small(config_name, extra), list(only) or None):
            if peer in SLOW_PEERS and peer not in only:
                continue
            compared.append(peer)
            gradient = _meta_gradient(config_name, peer, device, extra)
            for name, expected in reference.items():
                got = gradient[name]
                if got is None:
                    # learn2learn's ANIL-KFO adapts with its own Kronecker factors, so only the
                    # learner's own factors stay without a gradient; the model's never do.
                    assert peer == "learn2learn" and "compute_update" in name, (peer, name)
                    continue
                # Relative per parameter, with a floor of 1e-3 of the whole meta-gradient for
                # parameters whose exact gradient is 0 (conv biases before batch-norm).
                scale = torch.maximum(expected.norm(), 1e-3 * total)
                error = float((got - expected).norm() / scale)
                assert error < RTOL, f"{peer} differs from gbml_ext on {name}: {error:.2e}"
        return compared
    finally:
        torch.set_default_dtype(torch.float32)
        torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_every_peer_gives_gbml_ext_meta_gradient(config_name):
    compared = _check_all_peers(config_name, torch.device("cpu"))
    assert {"gbml_ext", "learn2learn"} <= set(compared), compared


def test_compiled_peers_run_the_configs_the_compiled_path_can_train():
    from benchmarks.peers.compiled import unsupported
    from gbml_ext.fast import PATHS

    assert "compiled" in peers_for(CONFIGS["a-fomaml"])
    for name, config in CONFIGS.items():
        learner = make_learner(config, torch.device("cpu"))
        reason = PATHS["compiled"].unsupported(learner, "cpu", True)
        assert unsupported(config) == reason
        assert ("compiled" in peers_for(config)) == (reason is None), name
        assert ("compiled-nhwc" in peers_for(config)) == (reason is None and name != "s-linreg")
    step = build_meta_iteration(tiny(CONFIGS["a-fomaml"]), "compiled", torch.device("cpu"))
    assert callable(step)  # built without compiling: compiling waits for the first call
    with pytest.raises(PeerUnavailable, match="CUDA graphs need a CUDA device"):
        build_meta_iteration(tiny(CONFIGS["a-fomaml"]), "compiled-cudagraphs",
                             torch.device("cpu"))


# Two conv blocks instead of four: the same kinds of layers, compiled in less time.
_TWO_BLOCKS = ["model.options={hidden = 8, layers = 2}"]


@pytest.mark.slow
@pytest.mark.parametrize("config_name,extra", [("a-fomaml", _TWO_BLOCKS),
                                               ("a-maml", _TWO_BLOCKS), ("s-linreg", []),
                                               ("c-anil-kfo", _TWO_BLOCKS)])
def test_compiled_peers_give_gbml_ext_meta_gradient(config_name, extra):
    from benchmarks.peers.compiled import unsupported

    reason = unsupported(_small(config_name, extra))
    if reason is not None:
        pytest.skip(f"the compiled path cannot meta-train {config_name}: {reason}")
    only = ["compiled"] + (["compiled-nhwc"] if config_name != "s-linreg" else [])
    assert _check_all_peers(config_name, torch.device("cpu"), only=only, extra=extra) == only


@pytest.mark.slow  # compiles config s's (tiny) meta-step where the compiled path can train it
def test_benchmark_runs_the_compiled_peer_beside_jax_and_learn2learn(tmp_path):
    from benchmarks.inner_loop import main
    from benchmarks.peers.compiled import unsupported

    report = main(["--tiny", "--configs", "s", "--peers", "compiled,batched,learn2learn,jax",
                   "--repeats", "1", "--warmup", "0", "--skip-memory", "--flat-iterations", "0",
                   "--skip-order-comparison", "--count-flops", "none", "--threads", "1",
                   "--json", str(tmp_path / "report.json")])
    entry = report["configs"]["s-linreg"]
    reason = unsupported(tiny(CONFIGS["s-linreg"]))
    assert {"batched", "learn2learn"} <= set(entry["results"])
    if reason is None:
        assert entry["results"]["compiled"]["first_call_s"] > 0
    else:
        assert entry["skipped_peers"]["compiled"] == f"does not run this config: {reason}"
    assert ("jax" in entry["results"]) == ("jax" in PEERS)
    if "jax" not in PEERS:
        assert "jax" in report["unavailable_peers"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_every_peer_gives_gbml_ext_meta_gradient_on_cuda(config_name):
    # JAX compiles each float64 config for seconds: it has its own CUDA test, on config a.
    compared = _check_all_peers(config_name, torch.device("cuda"),
                                only=[peer for peer in PEERS if peer not in (*SLOW_PEERS, "jax")])
    assert "learn2learn" in compared, compared


@pytest.mark.skipif(not torch.cuda.is_available() or "jax" not in PEERS,
                    reason="no CUDA device or no jax here")
def test_jax_peer_gives_gbml_ext_meta_gradient_on_cuda():
    assert _check_all_peers("a-maml", torch.device("cuda"), only=["jax"]) == ["jax"]


@pytest.mark.slow
@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_every_peer_keeps_everything_on_the_requested_device(config_name):
    """Builds every peer on the "meta" device (shapes only, no arithmetic) and runs one
    meta-iteration there: a module or tensor a peer leaves on the CPU (as learn2learn's
    Kronecker factors once did, "mat2 is on cpu" on CUDA) shows up as a CPU parameter or buffer,
    or as a device mismatch inside the iteration, without a GPU."""
    device = torch.device("meta")
    config = tiny(CONFIGS[config_name])
    for peer in peers_for(config):
        if peer in SLOW_PEERS or not PEERS[peer].torch_counters:
            continue  # torch.compile holds only the learner; JAX computes outside torch
        learner = make_learner(config, device)
        meta_model, meta_iteration = PEERS[peer].build(config, learner,
                                                       make_tasks(config, device))
        tensors = [*meta_model.named_parameters(), *meta_model.named_buffers(),
                   *learner.named_parameters(), *learner.named_buffers()]
        elsewhere = [name for name, tensor in tensors if tensor.device != device]
        assert not elsewhere, f"{peer} on {config_name} leaves {elsewhere} off the device"
        meta_model.zero_grad(set_to_none=True)
        meta_iteration()
        gradients = [p.grad for p in learner.parameters() if p.grad is not None]
        assert gradients and all(g.device == device for g in gradients), peer


def test_peers_cover_the_libraries_that_are_installed():
    always = {"gbml_ext", "batched", "batched/4", "nhwc", "learn2learn", "torch.func",
              "compiled", "compiled-nhwc", "compiled-cudagraphs"}
    assert always <= set(PEERS)
    for optional in ("higher", "torchopt"):
        assert (optional in PEERS) == (importlib.util.find_spec(optional) is not None)
    # batched/4 only where it differs from batched.
    assert "batched/4" not in peers_for(CONFIGS["b-maml"])
    assert "batched/4" in peers_for(CONFIGS["a-maml"])


def test_compiled_peers_run_only_when_asked():
    assert set(OPT_IN) == set(SLOW_PEERS)
    assert not set(OPT_IN) & set(default_peers())
    assert set(OPT_IN) <= set(default_peers(compiled=True))


def test_jax_peer_loads_when_jax_imports_and_says_why_not_otherwise():
    if importlib.util.find_spec("jax") is None:
        assert "jax" not in PEERS and "jax does not import" in UNAVAILABLE["jax"]
        pytest.skip("jax is not installed: the benchmark leaves its peer out and says why")
    assert "jax" in PEERS and "jax" not in UNAVAILABLE
    assert {"a-maml", "a-fomaml", "b-maml", "s-linreg"} == {
        name for name in CONFIGS if "jax" in peers_for(CONFIGS[name])}  # not ANIL-KFO
    assert not PEERS["jax"].torch_counters  # its memory and FLOPs are not torch's to count
    # The meta-gradient, on the quick config (the CNNs are in the tests above).
    _check_all_peers("s-linreg", torch.device("cpu"), only=["jax"])


def test_configs_are_built_by_the_runner_registry():
    anil = make_learner(tiny(CONFIGS["c-anil-kfo"]), torch.device("cpu"))
    assert isinstance(anil, ANIL) and isinstance(anil.head.transform, KroneckerTransform)
    maml = make_learner(tiny(CONFIGS["a-fomaml"]), torch.device("cpu"))
    assert isinstance(maml, GBML) and maml.first_order and maml.lr == 0.4
    synthetic = CONFIGS["s-linreg"]
    assert (synthetic.meta_batch, synthetic.steps) == (16, 1)
    linear = make_learner(synthetic, torch.device("cpu")).module
    assert isinstance(linear, torch.nn.Linear) and linear.in_features == 8
    task = make_tasks(synthetic, torch.device("cpu"))[0]
    assert task.support_x.shape == (64, 8) and task.query_x.shape == (64, 8)
