"""Every implementation of one meta-iteration that the benchmark compares, by name.

    gbml_ext, batched, batched/4,  gbml_ext itself (peers/gbml_ext.py)
    nhwc
    compiled, compiled-nhwc,       gbml_ext's compiled path (peers/compiled.py)
    compiled-cudagraphs
    learn2learn                    the reference wrappers (peers/learn2learn.py)
    torch.func                     a hand-written functional inner loop (peers/torchfunc.py)
    higher                         `higher.innerloop_ctx`, when installed (peers/higher.py)
    torchopt                       TorchOpt's functional SGD, when installed (peers/torchopt.py)
    jax                            the same network in JAX, vmap + jit, when jax imports
                                   (peers/jax.py)

All of them compute the same meta-gradient; tests/test_benchmark_peers.py checks it (the
compiled peers in a slow test). The compiled peers spend tens of seconds compiling, so the
benchmark runs them only when asked (`OPT_IN`: `--compiled`, or by name in `--peers`).
`UNAVAILABLE` says why an optional peer did not load.

`PEERS` is a `gbml_ext.registry.Registry`: each peer module lists its peers (`PEERS` there,
empty when its library does not import), and they are registered here in table order.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import nn

from gbml_ext.registry import Registry

from ..configs import BenchmarkConfig, make_learner, make_tasks
from . import compiled, gbml_ext, higher, jax, learn2learn, torchfunc, torchopt
from .common import MetaIteration, Peer, PeerUnavailable

__all__ = ["OPT_IN", "PEERS", "UNAVAILABLE", "Peer", "PeerUnavailable", "build_meta_iteration",
           "default_peers", "peers_for"]

PEERS: Registry[Peer] = Registry("benchmark peer")
for _module in (gbml_ext, compiled, learn2learn, torchfunc, higher, torchopt, jax):
    for _peer in _module.PEERS:
        PEERS.register(_peer.name, _peer)
# Run only when asked: torch.compile spends tens of seconds (minutes on a GPU) compiling.
OPT_IN = ("compiled", "compiled-nhwc", "compiled-cudagraphs")
# Optional peers that did not load here, and why.
UNAVAILABLE: Dict[str, str] = {name: reason for name, reason in (
    ("higher", None if higher.higher is not None else "higher is not installed; the bench "
                                                      "extra has it"),
    ("torchopt", None if torchopt.torchopt is not None else "torchopt is not installed; the "
                                                            "bench extra has it"),
    ("jax", jax.UNAVAILABLE)) if reason is not None}


def default_peers(compiled: bool = False) -> List[str]:
    """Every available peer, the compiled ones only with `compiled`."""
    return [name for name in PEERS if compiled or name not in OPT_IN]


def peers_for(config: BenchmarkConfig, names: Optional[List[str]] = None) -> List[str]:
    """The peers (all available ones, or those of `names`) that run `config`, in order."""
    chosen = list(PEERS) if names is None else [name for name in names if name in PEERS]
    return [name for name in chosen if PEERS[name].supports(config)]


def build_meta_iteration(config: BenchmarkConfig, peer: str, device: torch.device,
                         learner: Optional[nn.Module] = None) -> MetaIteration:
    """A no-argument function running one meta-iteration of `peer` (gradients zeroed first).

    Every peer gets the runner's learner from the same seed and the same tasks.

    Example:
        >>> from benchmarks.configs import CONFIGS, tiny
        >>> step = build_meta_iteration(tiny(CONFIGS["a-maml"]), "batched", torch.device("cpu"))
        >>> step()   # one meta-gradient over 5 small Omniglot-shaped tasks
    """
    learner = make_learner(config, device) if learner is None else learner
    meta_model, meta_iteration = PEERS[peer].build(config, learner, make_tasks(config, device))

    def run() -> None:
        meta_model.zero_grad(set_to_none=True)
        meta_iteration()

    return run
