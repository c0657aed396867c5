"""JAX: the same network and loss, vmap over tasks, the whole meta-step under one `jax.jit`.

Used only when `jax` imports (`pip install jax`; on a GPU machine a CUDA build of jaxlib). It is
the benchmark's external anchor: no torch in the meta-step at all.

The learner's network is rewritten as a pure JAX function of the same parameters, read by name
from the torch module every meta-iteration (DLPack, no copy when the devices match):
    CNN4 (omniglot/mini-ImageNet/CIFAR-FS): conv 3x3 (NCHW, OIHW, the block's stride and
        padding) -> batch-norm with the batch's statistics (biased variance, the module's eps)
        -> ReLU (-> max-pool, floor mode, written as a reshape and a max, since
        `lax.reduce_window`'s gradient cannot be differentiated again) per block, then the
        global mean or the flattened map, then the Linear classifier;
    Linear (the synthetic config s).
The loss is gbml_ext's default: cross-entropy for integer labels, mean squared error otherwise.
One meta-step is `jax.jit(jax.value_and_grad(meta_loss))`, where `meta_loss` is the mean over
tasks, by `jax.vmap`, of the query loss after `steps` inner SGD steps, each
w + (-lr · ∇w L_support(w)) (learn2learn's arithmetic); FOMAML stops the gradient through the
inner gradients. The meta-gradient is added to the torch parameters' `.grad` like every peer's.

Runs MAML and FOMAML without transform on CNN4 and Linear models (configs a, b, s); ANIL and
KFO (config c) are not rewritten. On a CUDA benchmark it refuses to run when JAX sees no GPU,
rather than time JAX on the CPU. JAX allocates its own GPU memory, so torch's memory readings
and FLOP counter cannot see its work: its peak-memory and GFLOP/s cells stay empty. XLA's
default precision lets float32 convolutions and matmuls use TF32 on recent NVIDIA GPUs, as
torch's cuDNN convolutions do by default.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from gbml_ext.algorithms import GBML
from gbml_ext.data.tasks import Task
from gbml_ext.nn import CNN4

from ..configs import BenchmarkConfig
from .common import MetaIteration, Peer, PeerUnavailable

# JAX takes 75% of a GPU's memory at its first use unless told not to; torch shares the GPU.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
try:
    import jax
    import jax.numpy as jnp
    UNAVAILABLE: Optional[str] = None
except ImportError as error:  # optional: the GPU machine has it, CI has not
    jax = jnp = None  # type: ignore[assignment]
    UNAVAILABLE = f"jax does not import ({error}); `pip install jax` adds this peer"

__all__ = ["PEERS", "UNAVAILABLE", "backend", "jax_network", "meta_step"]

Params = Dict[str, Any]
Network = Callable[[Params, Any], Any]
MODELS = ("omniglot_cnn4", "mini_imagenet_cnn4", "cifarfs_cnn4", "linear")


def _conv_block(prefix: str, block: nn.Module) -> Callable[[Params, Any], Any]:
    conv: Any = block.get_submodule("conv")  # a Conv2d with integer padding
    norm: Any = block.get_submodule("normalize")  # a batch norm (eps, affine weights)
    stride = tuple(conv.stride)
    padding: List[Tuple[int, int]] = [(int(p), int(p)) for p in conv.padding]
    eps = float(norm.eps)
    pool = block.max_pool if isinstance(block.max_pool, nn.MaxPool2d) else None
    window = None if pool is None else tuple(np.broadcast_to(pool.kernel_size, 2).tolist())

    def apply(params: Params, x: Any) -> Any:
        x = jax.lax.conv_general_dilated(x, params[prefix + "conv.weight"], stride, padding,
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))
        x = x + params[prefix + "conv.bias"][None, :, None, None]
        mean = x.mean(axis=(0, 2, 3), keepdims=True)
        variance = ((x - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
        x = (x - mean) / jnp.sqrt(variance + eps)
        x = (x * params[prefix + "normalize.weight"][None, :, None, None]
             + params[prefix + "normalize.bias"][None, :, None, None])
        x = jnp.maximum(x, 0)
        if window is not None:  # max-pool in floor mode (not lax.reduce_window: see above)
            (kh, kw), (n, c, h, w) = window, x.shape
            x = x[:, :, :h // kh * kh, :w // kw * kw]
            x = x.reshape(n, c, h // kh, kh, w // kw, kw).max(axis=(3, 5))
        return x

    return apply


def jax_network(module: nn.Module) -> Network:
    """`(params by torch name, inputs) -> outputs` of a CNN4 or Linear module, in JAX.

    Raises:
        PeerUnavailable: another kind of module.
    """
    if isinstance(module, nn.Linear):
        return lambda params, x: x @ params["weight"].T + params["bias"]
    if not isinstance(module, CNN4):
        raise PeerUnavailable(f"the JAX peer rewrites CNN4 and Linear, not "
                              f"{type(module).__name__}")
    body, pool = module.features.get_submodule("0"), module.features.get_submodule("1")
    blocks = [_conv_block(f"features.0.{index}.", block)
              for index, block in enumerate(body.children())]
    flatten = isinstance(pool, nn.Flatten)

    def apply(params: Params, x: Any) -> Any:
        for block in blocks:
            x = block(params, x)
        x = x.reshape(x.shape[0], -1) if flatten else x.mean(axis=(2, 3))
        return x @ params["classifier.weight"].T + params["classifier.bias"]

    return apply


def _loss(outputs: Any, targets: Any) -> Any:
    if jnp.issubdtype(targets.dtype, jnp.integer):
        log_probabilities = jax.nn.log_softmax(outputs, axis=-1)
        return -jnp.take_along_axis(log_probabilities, targets[:, None], axis=1).mean()
    return ((outputs - targets) ** 2).mean()


def meta_step(network: Network, lr: float, steps: int, first_order: bool) -> Callable:
    """The jitted `(params, support_x, support_y, query_x, query_y) -> (mean query loss,
    meta-gradient)` over stacked tasks (T, ...)."""
    def task_loss(params: Params, x: Any, y: Any) -> Any:
        return _loss(network(params, x), y)

    def query_loss(params: Params, support_x: Any, support_y: Any, query_x: Any,
                   query_y: Any) -> Any:
        for _ in range(steps):
            gradients = jax.grad(task_loss)(params, support_x, support_y)
            if first_order:
                gradients = jax.lax.stop_gradient(gradients)
            params = {name: params[name] + gradients[name] * (-lr) for name in params}
        return task_loss(params, query_x, query_y)

    def meta_loss(params: Params, *tasks: Any) -> Any:
        return jax.vmap(query_loss, in_axes=(None, 0, 0, 0, 0))(params, *tasks).mean()

    return jax.jit(jax.value_and_grad(meta_loss))


def backend() -> str:
    """JAX's version, backend and devices, for the report."""
    try:
        return f"jax {jax.__version__}, backend {jax.default_backend()}: {jax.devices()}"
    except Exception as error:  # noqa: BLE001 (a report line, never a crash)
        return f"jax {jax.__version__}: {type(error).__name__}: {error}"


def _jax_device(device: torch.device) -> Any:
    if device.type == "cuda":
        try:
            gpus = jax.devices("gpu")
        except RuntimeError:
            gpus = []
        if not gpus:
            raise PeerUnavailable(f"jax {jax.__version__} sees no GPU (backend "
                                  f"{jax.default_backend()}): install a CUDA build of jaxlib "
                                  f"to compare on the GPU")
        return gpus[device.index or 0]
    return jax.devices("cpu")[0]


def _to_jax(tensor: torch.Tensor, device: Any) -> Any:
    """A torch tensor as a JAX array on `device`: DLPack (no copy) where it can, else a copy."""
    tensor = tensor.detach()
    readers: Tuple[Any, ...] = (getattr(jnp, "from_dlpack", None), jax.dlpack.from_dlpack)
    for from_dlpack in readers:
        try:
            array = from_dlpack(tensor)
            if array.devices() == {device}:
                return array
        except Exception:  # noqa: BLE001 (another jax version or device: try the next way)
            continue
    return jax.device_put(tensor.cpu().numpy(), device)


def _to_torch(array: Any, like: torch.Tensor) -> torch.Tensor:
    try:
        return torch.from_dlpack(array).to(like.device)
    except Exception:  # noqa: BLE001 (copy through the host instead)
        return torch.from_numpy(np.asarray(array)).to(like.device)


def _jax(config: BenchmarkConfig, learner: nn.Module, tasks: Sequence[Task]
         ) -> Tuple[nn.Module, MetaIteration]:
    if not isinstance(learner, GBML) or any(
            index is not None for index in learner.compute_update.transforms_indices):
        raise PeerUnavailable("the JAX peer runs MAML and FOMAML without transform")
    module = learner.module
    network = jax_network(module)
    names = [name for name, _ in module.named_parameters()]
    parameters = [p for _, p in module.named_parameters()]
    step = meta_step(network, float(learner.lr), config.steps, bool(learner.first_order))
    device = _jax_device(parameters[0].device)
    if parameters[0].dtype == torch.float64:  # the gradient tests run in float64
        jax.config.update("jax_enable_x64", True)
    stacked: List[Any] = []
    for field in ("support_x", "support_y", "query_x", "query_y"):  # the tasks, once
        values = torch.stack([getattr(task, field) for task in tasks])
        if not values.is_floating_point():
            values = values.int()  # JAX's default integers are 32-bit
        stacked.append(jax.device_put(values.cpu().numpy(), device))

    def meta_iteration() -> None:
        params = {name: _to_jax(p, device) for name, p in zip(names, parameters, strict=True)}
        _, gradients = step(params, *stacked)
        gradients = jax.block_until_ready(gradients)
        for name, param in zip(names, parameters, strict=True):
            gradient = _to_torch(gradients[name], param).to(param.dtype)
            param.grad = gradient.clone() if param.grad is None else param.grad + gradient

    return learner, meta_iteration


def _supported(config: BenchmarkConfig) -> bool:
    algorithm, model = config.config.algorithm, config.config.model
    return (algorithm.name in ("maml", "fomaml") and algorithm.transform == "none"
            and model.name in MODELS and model.linnet_depth <= 1 and not model.channels_last)


PEERS: List[Peer] = [] if jax is None else [
    Peer("jax", _jax, _supported, version=jax.__version__, torch_counters=False)]
