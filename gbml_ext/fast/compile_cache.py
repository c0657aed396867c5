"""The compiled path's cache: one compiled function per learner, tensor shapes, steps, mode
and loss, and how long the first call of each took (compiling included).

Entries are weakly keyed on the learner, so they go with it. A compiled function bakes in what
`structure` lists of the learner's batched form; a change there (another learning rate,
first-order, a replaced module) makes a new entry. Each entry's function gets a code object of
its own, so dynamo's `recompile_limit` counts the recompiles of one entry only, never the
learners and shapes of a whole process.
"""
from __future__ import annotations

import time
import types
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, Hashable, Optional, Sequence, Tuple

import torch
from torch import nn

from ..engine import LossFn
from .form import BatchedForm

__all__ = ["CompiledEntry", "cache_key", "cached_entry", "call_timed", "entry_of",
           "first_call_seconds", "forget", "is_compiled", "structure"]


@dataclass
class CompiledEntry:
    """A compiled function and its first call's seconds (None: no call has gone through)."""

    function: Callable
    first_call_s: Optional[float] = None


_CACHE: weakref.WeakKeyDictionary[nn.Module, Dict[Hashable, CompiledEntry]] = (
    weakref.WeakKeyDictionary())
_FIRST_CALL_S: weakref.WeakKeyDictionary[nn.Module, float] = weakref.WeakKeyDictionary()


def structure(form: BatchedForm) -> Hashable:
    """What a compiled function bakes in of a form: its settings, its modules and its
    parameters' shapes, dtypes and devices (a fresh encoder module around the same body counts
    as the same), and what the compiled path's checks read (`requires_grad`, batch-norm's
    `track_running_stats`), so a key that passed them once passes them again.

    Example:
        >>> import gbml_ext
        >>> maml = gbml_ext.MAML(torch.nn.Linear(3, 1), lr=0.1)
        >>> structure(maml.batched_form()) == structure(maml.batched_form())
        True
    """
    roots = [form.module, *form.transforms]
    modules = [_module_key(m, id(m)) for root in roots for m in root.modules()]
    if form.encoder is not None:
        modules += [_module_key(form.encoder, 0)]
        modules += [_module_key(m, id(m)) for m in list(form.encoder.modules())[1:]]
        roots.append(form.encoder)
    params = [(tuple(p.shape), p.dtype, p.device, p.requires_grad)
              for root in roots for p in root.parameters()]
    return (float(form.lr), form.first_order, form.adapt_transform, form.allow_unused,
            tuple(form.transform_of), tuple(modules), tuple(params))


def _module_key(module: nn.Module, identity: int) -> Hashable:
    """A module's type and identity, and what the compiled path's checks read of it."""
    return type(module), identity, getattr(module, "track_running_stats", None)


def cache_key(kind: str, form: BatchedForm, steps: int, loss_fn: Optional[LossFn],
              tensors: Sequence[torch.Tensor]) -> Hashable:
    """The key of a compiled function: its kind, steps, loss (None: the default loss of the
    targets' dtype), the stacked tasks' shapes, dtypes and devices, and the form's
    `structure`."""
    loss_key = loss_fn if loss_fn is not None else ("default", tensors[1].dtype)
    shapes = tuple((tuple(t.shape), t.dtype, t.device) for t in tensors)
    return (kind, int(steps), loss_key, shapes, structure(form))


def _own_code(function: Callable) -> Callable:
    """`function` with a copy of its code object: dynamo keeps its graphs per code object."""
    code = function.__code__.replace()
    return types.FunctionType(code, function.__globals__, function.__name__,
                              function.__defaults__, function.__closure__)


def cached_entry(algorithm: nn.Module, key: Hashable, build: Callable[[], Callable]
                 ) -> CompiledEntry:
    """The entry of `key` for `algorithm`; if new, `build()`'s function under
    `torch.compile(fullgraph=True, dynamic=False)`, which compiles on its first call."""
    per_learner = _CACHE.setdefault(algorithm, {})
    if key not in per_learner:
        function = _own_code(build())
        per_learner[key] = CompiledEntry(torch.compile(function, fullgraph=True, dynamic=False))
    return per_learner[key]


def entry_of(algorithm: nn.Module, key: Hashable) -> Optional[CompiledEntry]:
    """`key`'s entry for `algorithm`, or None when there is none yet."""
    return _CACHE.get(algorithm, {}).get(key)


def is_compiled(algorithm: nn.Module, key: Hashable) -> bool:
    """Whether a call of `key`'s entry has gone through (so the next one does not compile)."""
    entry = entry_of(algorithm, key)
    return entry is not None and entry.first_call_s is not None


def forget(algorithm: nn.Module, key: Hashable) -> None:
    """Drops `key`'s entry (one that failed to compile)."""
    _CACHE.get(algorithm, {}).pop(key, None)


def call_timed(algorithm: nn.Module, entry: CompiledEntry, args: Tuple) -> Any:
    """Calls `entry`'s function; the first call that goes through records its seconds. An
    exception (an interrupt while compiling included) propagates and records nothing."""
    if entry.first_call_s is not None:
        return entry.function(*args)
    start = time.perf_counter()
    result = entry.function(*args)
    entry.first_call_s = time.perf_counter() - start
    _FIRST_CALL_S[algorithm] = entry.first_call_s
    return result


def first_call_seconds(algorithm: nn.Module) -> Optional[float]:
    """Seconds the latest first call of a compiled function of `algorithm` took, compiling
    included (None: nothing compiled for it yet). The calls after it do not compile.

    Example:
        >>> import gbml_ext
        >>> first_call_seconds(gbml_ext.MAML(torch.nn.Linear(3, 1))) is None
        True
    """
    return _FIRST_CALL_S.get(algorithm)
