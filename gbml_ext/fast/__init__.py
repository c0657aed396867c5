"""The fast path: a functional inner loop over stacked per-task fast weights.

For overhead-bound work (small models, GPUs) the per-task engine spends its time launching
small kernels task by task. Here all tasks of a chunk adapt in the same tensor ops
(`torch.func.functional_call` under `torch.vmap`), with the per-task engine's numbers up to
float rounding, for training (`batched_meta_gradient`) and evaluation
(`batched_adaptation_curves`). `choose_path` decides which path a run takes.

Modules: `support` (what can run, stacking tasks), `inner` (`StackedLearner`, one inner step
of every task, including learn2learn's adapted transform), `meta` (the entry points),
`select` (path selection), `compiled` (first-order steps and evaluation with an
inductor-compiled loss, opt-in: `algorithm.path = "compiled"`), `chunking` (how many tasks
adapt at once under a memory budget).
"""
from .chunking import ChunkedMetaGradient, ChunkPlan, tasks_per_chunk_for_budget
from .compiled import (
    CompiledPathUnsupported,
    compiled_adaptation_curves,
    compiled_meta_gradient,
)
from .inner import StackedLearner
from .meta import batched_adaptation_curves, batched_meta_gradient
from .select import PATHS, choose_path, has_convolutions
from .support import BatchedPathUnsupported, check_supported, unsupported_reason

__all__ = ["BatchedPathUnsupported", "ChunkPlan", "ChunkedMetaGradient",
           "CompiledPathUnsupported", "PATHS", "StackedLearner", "batched_adaptation_curves",
           "batched_meta_gradient", "check_supported", "choose_path",
           "compiled_adaptation_curves", "compiled_meta_gradient", "has_convolutions",
           "tasks_per_chunk_for_budget", "unsupported_reason"]
