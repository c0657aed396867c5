"""The fast path: a functional inner loop over stacked per-task fast weights.

For overhead-bound work (small models, GPUs) the per-task engine spends its time launching
small kernels task by task. Here all tasks of a chunk adapt in the same tensor ops
(`torch.func.functional_call` under `torch.vmap`), with the per-task engine's numbers up to
float rounding, for training (`batched_meta_gradient`) and evaluation
(`batched_adaptation_curves`). Every path (per task, batched, compiled) is an entry of
`PATHS` (`paths`) with the same interface, and `choose_path` decides which one a run takes.

Supported: every learner whose `batched_form()` gives a `BatchedForm` (`form`, the protocol the
fast path reads a learner through): MAML and FOMAML (Finn et al. 2017), Meta-SGD (Li et al.
2017), Meta-KFO with or without an adapted transform (Arnold, Iqbal & Sha, AISTATS 2021), and
ANIL (Raghu et al. 2020) with any of these heads. A learner without one (Reptile, iMAML) is
refused with a `BatchedPathUnsupported` that gives its reason and names the per-task path.

Modules: `form` (the batched-form protocol), `support` (what can run, stacking tasks),
`inner` (`StackedLearner`, one inner step of every task, including learn2learn's adapted
transform), `direct` (Linear stacks without vmap), `meta` (the entry points), `paths` (the
registry of paths, `PATHS`: per task, batched, compiled; `step`: one bound to a learner for
the runner), `select` (path selection: "auto" as a
rule over the paths), `functional_step` (the whole meta-step, inner steps, vmap over tasks and
the meta-gradient, as one pure function of the meta-parameters and the stacked tasks) and
`compiled` (that function under `torch.compile`, cached per learner and shapes; opt-in:
`algorithm.path = "compiled"`), `chunking` (how many tasks adapt at once under a memory
budget: `Chunked`, a wrapper of a path).
"""
from .chunking import Chunked, ChunkedMetaGradient, ChunkPlan, tasks_per_chunk_for_budget
from .compiled import (
    CompiledPathUnsupported,
    compiled_adaptation_curves,
    compiled_meta_gradient,
    first_call_seconds,
    needs_compiling,
)
from .form import BatchedForm, FormOrReason
from .inner import StackedLearner
from .meta import batched_adaptation_curves, batched_meta_gradient
from .paths import PATHS, Path, first_call_s
from .select import PATH_CHOICES, choose_path, has_convolutions
from .support import BatchedPathUnsupported, check_supported, unsupported_reason

__all__ = ["PATHS", "PATH_CHOICES", "BatchedForm", "BatchedPathUnsupported", "ChunkPlan", "Chunked",
           "ChunkedMetaGradient", "CompiledPathUnsupported", "FormOrReason", "Path",
           "StackedLearner", "batched_adaptation_curves", "batched_meta_gradient",
           "check_supported", "choose_path", "compiled_adaptation_curves", "compiled_meta_gradient",
           "first_call_s", "first_call_seconds", "has_convolutions", "needs_compiling",
           "tasks_per_chunk_for_budget", "unsupported_reason"]
