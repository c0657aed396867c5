"""What a config may hold: one dataclass per section, each key with its type, default and
allowed values (`choices` or a numeric `range`). `gbml_ext.runner.config` reads, overrides
and validates configs against these.

The keys that name an extension take their allowed values from its package's registry
(`gbml_ext.registry`), read when a config is checked: `algorithm.name` from
`gbml_ext.algorithms.ALGORITHMS`, `algorithm.transform` from `gbml_ext.optim.TRANSFORMS`,
`model.name` from `gbml_ext.nn.MODELS`, `data.sampler` from `gbml_ext.data.registry.SAMPLERS`,
each of `logging.backends` from `gbml_ext.trackers.LOGGERS`."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..algorithms import ALGORITHMS
from ..data.registry import SAMPLERS
from ..nn import MODELS
from ..optim import TRANSFORMS
from ..registry import Registry
from ..trackers import LOGGERS

__all__ = ["ALGORITHMS", "TRANSFORMS", "AlgorithmConfig", "Config", "DataConfig", "EvalConfig",
           "LoggingConfig", "ModelConfig", "TrainConfig", "range_text"]


def _choices(*values: str) -> Any:
    return field(default=values[0], metadata={"choices": values})


def _registered(registry: Registry, default: str) -> Any:
    """A string field whose allowed values are the registry's names when a config is read."""
    return field(default=default, metadata={"choices": registry})


def _registered_list(registry: Registry) -> Any:
    """A list of strings, each one of the registry's names when a config is read; from the
    command line also `key=a,b`."""
    return field(default_factory=list, metadata={"items": registry})


def _ranged(default: float, low: Optional[float] = None, high: Optional[float] = None,
            low_open: bool = False) -> Any:
    """A numeric field allowed in [low, high] (or (low, high] with `low_open`); None: unbounded.
    Floats must also be finite."""
    return field(default=default, metadata={"range": (low, high, low_open)})


def range_text(spec: Tuple[Optional[float], Optional[float], bool]) -> str:
    """'> 0', '>= 1' or 'in [0, 16]'."""
    low, high, low_open = spec
    if high is None:
        return f"{'>' if low_open else '>='} {low:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}]"


@dataclass
class DataConfig:
    """Where tasks come from.

    source: a synthetic family ("linear-regression", "logistic-regression") or a dataset
        ("omniglot", "mini-imagenet", "cifar-fs", "fc100").
    root: dataset folder (vision sources only).
    ways, shots, queries: classes per task, support and query examples per class.
    options: source-specific settings (synthetic: dim, condition_number, ...; vision: split, ...).
    sampler: how a meta-batch is drawn. "tensor": all T tasks at once in a few tensor ops, on
        the run's device (vision: `TensorFewShotTasks`; synthetic: one vectorised draw).
        "learn2learn": one task at a time (vision: learn2learn's `Taskset`, one image at a
        time), the reference sampler and that of runs made before this key existed. The two
        draw tasks from the same distribution but not the same tasks.
    """

    source: str = "linear-regression"
    root: str = ""
    ways: int = _ranged(5, 1)
    shots: int = _ranged(1, 1)
    queries: int = _ranged(15, 1)
    options: Dict[str, Any] = field(default_factory=dict)
    sampler: str = _registered(SAMPLERS, "tensor")


@dataclass
class ModelConfig:
    """The network: a registered `name` (`gbml_ext.nn.MODELS`), its `options`, and an optional
    deep-linear head.

    name: a registered model (`gbml_ext.nn.MODELS`: linear, deep_linear, omniglot_cnn4, ...).
    options: the model builder's own arguments (the CNNs: hidden, layers, max_pool_factor, ...).
    linnet_depth: if > 1, the final Linear is replaced by that many linear layers ("LinNet").
    linnet_width: hidden width of the LinNet head (default: its input size).
    linnet_init: default | orthogonal | identity | scaled (see `gbml_ext.nn.DeepLinear`).
    linnet_adapt_hidden: whether the head's extra layers (all but its last) adapt in the inner
        loop; when false they are only meta-learned.
    channels_last: store convolution weights channels-last (NHWC), so that the CPU's oneDNN
        convolutions and batch-norm take their NHWC kernels. Same numbers up to float rounding.
    """

    name: str = _registered(MODELS, "linear")
    options: Dict[str, Any] = field(default_factory=dict)
    linnet_depth: int = _ranged(0, 0, 16)
    linnet_width: int = _ranged(0, 0)
    linnet_init: str = _choices("default", "orthogonal", "identity", "scaled")
    linnet_adapt_hidden: bool = True
    channels_last: bool = False


@dataclass
class AlgorithmConfig:
    """How tasks are adapted to.

    Each algorithm reads only some of these keys (`AlgorithmSpec.keys_read`); a config that sets
    another is refused.

    name: a registered algorithm (`gbml_ext.algorithms.ALGORITHMS`; `--print-config` lists
        them, and the table below gives the keys each reads).
    transform: a registered gradient transform (`gbml_ext.optim.TRANSFORMS`): "none", or a
        Kronecker-factored one (Meta-KFO).
    transform_psd: use MᵀM Kronecker factors (with a transform only, as every transform_* key).
    transform_hidden_layers: hidden Kronecker layers of a non-linear transform
        ("kronecker-mlp"); the linear ones have none.
    transform_params: parameter names that get a transform (empty: all; ANIL: all of the head).
    inner_lr: the inner-loop learning rate α (Meta-SGD: the starting rate).
    train_steps / test_steps: inner steps during meta-training / evaluation.
    adapt_transform: the transform's own parameters adapt in the inner loop too: from the
        second inner step on, a differentiable step on the support loss at `inner_lr`.
    path: auto | per-task | batched | compiled: how tasks are adapted, in training,
        validation and the final evaluation. "batched" adapts a chunk of tasks together
        (gbml_ext.fast, the per-task numbers up to float rounding); "per-task" clones the
        model once per task; "auto" takes "batched" where the algorithm's learner has a
        batched form (`gbml_ext.fast.form`; the run says why when it has none) and the device
        is CUDA or the model has no convolutions, and "compiled" for meta-training only where
        the run is long enough to pay for compiling (gbml_ext.fast.select). "compiled" (every
        learner "batched" runs) makes the whole meta-step, and each evaluation, one graph
        compiled by torch.compile (gbml_ext.fast.compiled): seconds to minutes of compiling
        first, for long runs. The paths are recorded as results.json's "train_path" and
        "path" (evaluation), the compiling first calls as "first_call_s" and
        "evaluation_first_call_s".
    batched: true is a synonym of path = "batched" (kept for older configs).
    adapt_transform: the transform's own parameters also take an inner step, from the second
        step on (with a transform only).
    imaml_lam, cg_steps: iMAML's proximal strength λ and conjugate-gradient iterations.
    tasks_per_chunk: on a path that adapts tasks together (batched, compiled), adapt at most
        this many tasks of a meta-batch at once (0: all of them, or as many as
        `train.memory_budget_mb` allows). Same meta-gradient up to float rounding; peak memory
        grows with the chunk.
    """

    name: str = _registered(ALGORITHMS, "maml")
    transform: str = _registered(TRANSFORMS, "none")
    transform_psd: bool = False
    transform_hidden_layers: int = _ranged(2, 1, 16)
    transform_params: List[str] = field(default_factory=list)
    inner_lr: float = _ranged(0.1, 0.0, None, low_open=True)
    train_steps: int = _ranged(1, 1)
    test_steps: int = _ranged(1, 1)
    adapt_transform: bool = False
    path: str = _choices("auto", "per-task", "batched", "compiled")
    batched: bool = False
    imaml_lam: float = _ranged(1.0, 0.0, None, low_open=True)
    cg_steps: int = _ranged(5, 1, 1000)
    tasks_per_chunk: int = _ranged(0, 0)


@dataclass
class TrainConfig:
    """The outer loop.

    iterations: meta-iterations; meta_batch: tasks per meta-iteration.
    optimizer: adam | sgd (Reptile's ε is the sgd `lr`).
    lr: the outer (meta) optimizer's learning rate.
    fused_optimizer: step the optimizer with torch's fused kernel (one op for every parameter,
        `fused=True`): the same update up to float rounding, and on small models (config s: 9
        parameters) about half the optimizer's time per meta-iteration. Needs a torch whose
        fused Adam / SGD runs on the run's device.
    log_every / eval_every: in meta-iterations (0 disables).
    eval_tasks: validation tasks per periodic evaluation.
    checkpoint_every: also write a checkpoint every this many meta-iterations (0: only by
        time, at the end and on a signal).
    checkpoint_minutes: write a checkpoint after this many minutes of work (0 disables); a
        checkpoint is also written at the end, on SIGINT / SIGTERM, and every
        `checkpoint_every` iterations when that is > 0.
    explode_factor: stop the run when the meta-loss exceeds this multiple of the unadapted
        query loss of the first meta-batch (or is not finite): the inner loop diverges.
    plot: write the run's training.png (experiments that draw their own figure turn it off).
    memory_budget_mb: on the batched or compiled path, split the meta-batch into chunks so that
        one chunk's peak memory stays under this many MB (0: no budget). The first meta-iteration
        runs one task at a time and measures its peak (CUDA: allocated tensors; CPU: resident
        memory), the rest use the largest even chunks that fit (`gbml_ext.fast.chunking`).
        `algorithm.tasks_per_chunk` > 0 takes precedence.
    max_minutes: stop meta-training cleanly once the meta-iterations have taken this many
        minutes (0: no limit; the time is results.json's `train_seconds`, summed over resumes),
        checkpoint, then evaluate as usual; results.json records the iterations reached.
    """

    iterations: int = _ranged(1000, 1)
    meta_batch: int = _ranged(16, 1)
    optimizer: str = _choices("adam", "sgd")
    lr: float = _ranged(1e-3, 0.0, None, low_open=True)
    fused_optimizer: bool = False
    log_every: int = _ranged(10, 0)
    eval_every: int = _ranged(0, 0)
    eval_tasks: int = _ranged(100, 2)
    checkpoint_every: int = _ranged(0, 0)
    checkpoint_minutes: float = _ranged(5.0, 0.0)
    explode_factor: float = _ranged(100.0, 1.0, None, low_open=True)
    plot: bool = True
    memory_budget_mb: float = _ranged(0.0, 0.0)
    max_minutes: float = _ranged(0.0, 0.0)


@dataclass
class EvalConfig:
    """The final evaluation: `tasks` held-out tasks, mean and 95% confidence interval.

    tasks: held-out tasks adapted to and scored.
    split: the tasks it draws: "test", or "validation" (for choosing settings).
    max_steps: every evaluation (the final one and the `train.eval_every` ones) scores the
        learner after 0, 1, ..., K inner steps, K = max(algorithm.test_steps, max_steps), and
        records loss and accuracy after each; 0: K = algorithm.test_steps.
    choose_steps: the steps the final evaluation reports. "fixed": algorithm.test_steps.
        "validation": the step among 1..K with the best mean accuracy (the lowest loss for
        regression; the fewest steps on a tie) on `choice_tasks` validation tasks drawn after
        training; the test tasks never enter the choice. With split = "validation" the
        choice is made on the final evaluation's own tasks. results.json records the step
        (`evaluation.steps_chosen`) and the validation curve (`evaluation.chosen_on`).
    choice_tasks: validation tasks the steps are chosen on.
    """

    tasks: int = _ranged(600, 2)
    split: str = _choices("test", "validation")
    max_steps: int = _ranged(0, 0, 1000)
    choose_steps: str = _choices("fixed", "validation")
    choice_tasks: int = _ranged(200, 2)


@dataclass
class LoggingConfig:
    """Where a run's metrics are copied to, beside its run folder, which stays the record.

    backends: the trackers the run logs to (`gbml_ext.trackers.LOGGERS`), each installed with
        its extra (pip install 'gbml_ext[NAME]'); on the command line
        `logging.backends=NAME,NAME`. Metric names: `gbml_ext.trackers.names`.
    group: the name that groups runs in the trackers (the MLflow experiment, the wandb group);
        empty: the config's name, or, for a run of gbml-compare or a launcher, the comparison's
        (its --out folder's name).
    """

    backends: List[str] = _registered_list(LOGGERS)
    group: str = ""


@dataclass
class Config:
    """One experiment run. `output_dir` defaults to runs/<name>/seed<seed>.

    name: the experiment's name, in its run folder and its results.
    seed: seeds the model's initialization and the tasks drawn (`gbml-compare --seeds` sets
        it per run).
    device: auto (CUDA when there is one, else the CPU) | cpu | cuda.
    output_dir: the run folder (empty: runs/<name>/seed<seed>).
    threads: torch's intra-op CPU threads during the run (0: leave torch's setting). Models of
        a few hundred parameters are bound by per-op overhead, and one thread avoids the cost
        of waking the others for every tiny op.
    precision: fp32 | tf32 | bf16, the arithmetic of the run's forward passes (inner and outer
        loop, training and evaluation): fp32 leaves torch's defaults; tf32 turns on TF32
        tensor cores on CUDA; bf16 runs them under bfloat16 autocast (`gbml_ext.precision`).
    """

    name: str = "experiment"
    seed: int = _ranged(0, 0, 2**31 - 1)
    device: str = _choices("auto", "cpu", "cuda")
    threads: int = _ranged(0, 0, 1024)
    precision: str = _choices("fp32", "tf32", "bf16")
    output_dir: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def run_dir(self) -> Path:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("_") or "experiment"
        return Path(self.output_dir or f"runs/{slug}/seed{self.seed}")
