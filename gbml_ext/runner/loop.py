"""The experiment runner: meta-training, checkpoints and resume, evaluation, results.

`train` reads as its steps: claim the run folder (`rundir`), build the run, restore a checkpoint
or record the config, meta-train, evaluate, write results. The loop does not know which
algorithm it runs: each step it draws one `TaskBatch` from the training source, asks the
learner for its meta-gradient (`accumulate_meta_gradient` over the batch's task views, or the
batched path on its stacked tensors), averages it across ranks when distributed, and steps the
outer optimizer.
"""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from ..data.tasks import sample_batch
from ..fileio import atomic_write_json
from ..measure import start_peak_watch
from ..precision import precision_context
from .checkpoint import save_checkpoint
from .compat import ALLOWED_CHANGES
from .config import Config, config_to_dict, load_config
from .distributed import (
    DistributedContext,
    all_reduce_gradients,
    broadcast_parameters,
    init_distributed,
)
from .errors import (
    MetaLossDiverged,
    NonFiniteLossError,
    RunFolderError,
)
from .evaluate import training_path
from .guards import (
    OUT_OF_MEMORY,
    StopSignals,
    check_evaluation,
    check_meta_loss,
    explain_divergence,
    is_out_of_memory,
    out_of_memory,
    unadapted_loss,
)
from .plots import plot_training_curves
from .records import final_results, log_record, validate
from .report import write_metrics, write_results
from .rundir import (
    CONFIG_FILE,
    claim_folder,
    keep_previous_results,
    refuse_shortening,
    run_lock,
)
from .seeds import process_seed
from .state import (
    TrainingState,
    build_run,
    cpu_threads,
    resolve_device,
    restore_state,
    seed_everything,
)

__all__ = ["NonFiniteLossError", "RunResult", "TrainingState", "build_run", "check_evaluation",
           "resolve_device", "seed_everything", "train"]


@dataclass
class RunResult:
    """What `train` returns: the trained learner, the logged history and the final results.

    Attributes:
        algorithm: the meta-trained learner (GBML, ANIL, ...), on the run's device.
        history: the logged records, as in metrics.jsonl: `iteration`, `split`, `loss`, ...
        results: the results.json record: `evaluation` (as `evaluate` returns it), `config`, ...
        run_dir: the run folder the files were written to.
        config: the run's resolved config.

    Example:
        >>> result = train("experiments/configs/synthetic/linreg_shallow.toml")  # doctest: +SKIP
        >>> result.results["evaluation"]["loss"]["mean"], result.run_dir  # doctest: +SKIP
    """

    algorithm: torch.nn.Module
    history: List[Dict[str, Any]]
    results: Dict[str, Any]
    run_dir: Path
    config: Optional[Config] = field(repr=False, default=None)


def train(config: Config | str | Path | None, overrides: Sequence[str] = (), resume: bool = False,
          progress: bool = True, overwrite: bool = False,
          allow_change: Sequence[str] = (), shared_process: bool = False) -> RunResult:
    """Meta-trains, evaluates and writes results for one config.

    Arguments:
        config: a `Config`, or the path of a TOML config (None: the defaults).
        overrides: `section.key=value` strings applied on top of the file.
        resume: continue from the run folder's newest checkpoint (on the CPU, with the same
            seed, the resumed run ends bit-identical to an uninterrupted one). With no
            checkpoint there, says so and starts fresh.
        progress: show a progress bar with the live meta-loss and accuracy.
        overwrite: move an existing run in the folder aside (`<folder>.old-<time>`) first.
        allow_change: keys among `ALLOWED_CHANGES` that may differ from the checkpoint's config
            on resume; each change is recorded in results.json.
        shared_process: other runs share this process (gbml-compare --in-process), so on the
            CPU its resident memory is not this run's: the peak is then recorded as None with
            the reason (`report.training_memory`).

    Writes to `config.run_dir()`: `config.json`, `metrics.jsonl` (one line per logged
    iteration and per evaluation), `checkpoint.pt` (+ the previous one), `results.json`,
    `results.md` and `training.png`.

    Example:
        >>> result = train(None, ["train.iterations=3", "data.options={dim=4}",
        ...                       "evaluation.tasks=5", "output_dir=/tmp/gbml_doctest"],
        ...                progress=False, overwrite=True)   # doctest: +SKIP
    """
    if not isinstance(config, Config):
        config = load_config(config, overrides)
    bad = sorted(set(allow_change) - set(ALLOWED_CHANGES))
    if bad:
        raise RunFolderError(f"--allow-change {' '.join(bad)}: only {', '.join(ALLOWED_CHANGES)} "
                             f"may change on resume.")
    device = resolve_device(config.device)
    if config.precision == "bf16" and config.algorithm.transform != "none":
        print("gbml_ext: warning: precision = 'bf16' with a Kronecker transform diverged on the "
              "synthetic tasks (docs/performance.md); prefer precision = 'fp32' for KFO rows.",
              file=sys.stderr)
    dist = init_distributed(device)
    if dist.enabled and device.type == "cuda":  # one GPU per process on each node
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if dist.enabled and config.train.meta_batch % dist.world_size:
        raise RunFolderError(f"train.meta_batch={config.train.meta_batch} must be divisible by "
                             f"the {dist.world_size} processes.")
    run_dir = config.run_dir()
    lock = run_lock(run_dir) if dist.is_main else contextlib.nullcontext()
    with lock, cpu_threads(config.threads), precision_context(config.precision, device):
        checkpoint = claim_folder(run_dir, resume, overwrite, dist.is_main)
        refuse_shortening(checkpoint, config.train.iterations, run_dir)
        state = build_run(config, device, dist.rank)
        if dist.enabled:
            broadcast_parameters(state.algorithm)
        # Each rank draws its own stream of training tasks from the global generators too.
        seed_everything(process_seed(config.seed, dist.rank))
        if checkpoint is not None:
            restore_state(state, checkpoint, config, allow_change)
        if dist.is_main:
            atomic_write_json(run_dir / CONFIG_FILE, config_to_dict(config))
            write_metrics(run_dir, state.history)
        memory_baseline, first_iteration = start_peak_watch(device), state.iteration
        try:
            chunking = _meta_train(state, config, device, dist, run_dir, progress)
        except MetaLossDiverged as error:
            train_tasks = state.sources["train"]
            raise explain_divergence(
                error, state.algorithm,
                lambda: sample_batch(train_tasks, min(4, config.train.meta_batch)).to(device),
                state.reference_loss, state.last_checkpoint, config) from None
        except (*OUT_OF_MEMORY, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise
            raise out_of_memory(error, config, device, "meta-training",
                                state.last_checkpoint) from None
        results: Dict[str, Any] = {}
        if dist.is_main:
            try:
                results = final_results(state, config, device, dist, memory_baseline,
                                         progress, first_iteration, shared_process)
            except (*OUT_OF_MEMORY, RuntimeError) as error:
                if not is_out_of_memory(error):
                    raise
                raise out_of_memory(error, config, device, "the final evaluation",
                                    state.last_checkpoint) from None
            results["chunking"] = chunking
            keep_previous_results(run_dir)
            write_results(run_dir, results)
            if config.train.plot:
                plot_training_curves({config.name: state.history}, run_dir / "training.png")
    return RunResult(state.algorithm, state.history, results, run_dir, config)


def _meta_gradient_fn(config: Config, algorithm) -> Callable:
    """The meta-gradient of a meta-batch on the run's path (`algorithm.path`, see
    `training_path`):
    its entry of `gbml_ext.fast.PATHS`, chunked (`Chunked`) when `algorithm.tasks_per_chunk`
    or `train.memory_budget_mb` asks for it and the path adapts tasks together; it says on
    stderr when the path compiles."""
    from tqdm.auto import tqdm

    from ..fast import PATHS, Chunked
    from ..fast.paths import MetaStep

    path = PATHS[training_path(config, algorithm)]
    if path.batches_tasks and (config.algorithm.tasks_per_chunk or config.train.memory_budget_mb):
        path = Chunked(path, config.algorithm.tasks_per_chunk, config.train.memory_budget_mb)
    return MetaStep(path, algorithm,
                    lambda line: tqdm.write(f"gbml_ext: {line}", file=sys.stderr))


def _meta_train(state: TrainingState, config: Config, device: torch.device,
                dist: DistributedContext, run_dir: Path, progress: bool
                ) -> Optional[Dict[str, Any]]:
    """Meta-trains until `train.iterations` (or `train.max_minutes`); returns how the batched
    path chunked the meta-batch (`ChunkPlan.to_dict`), or None when it did not."""
    from tqdm.auto import tqdm

    train_cfg = config.train
    meta_gradient = _meta_gradient_fn(config, state.algorithm)
    local_batch = train_cfg.meta_batch // dist.world_size
    last_save = time.monotonic()
    bar = tqdm(range(state.iteration, train_cfg.iterations), initial=state.iteration,
               total=train_cfg.iterations, desc=config.name,
               disable=not (progress and dist.is_main), dynamic_ncols=True)
    if _out_of_time(state, config, dist):  # resumed with its train.max_minutes used up
        bar.close()
        return None
    with StopSignals().installed() as stop:
        for iteration in bar:
            tic = time.perf_counter()
            batch = sample_batch(state.sources["train"], local_batch).to(device)
            if state.reference_loss is None:
                state.reference_loss = unadapted_loss(state.algorithm, batch)
            state.optimizer.zero_grad(set_to_none=True)
            outcomes = meta_gradient(batch, config.algorithm.train_steps)
            if dist.enabled:
                all_reduce_gradients(state.algorithm.parameters(), dist.world_size)
            loss = torch.stack([o.loss for o in outcomes]).mean().item()
            check_meta_loss(loss, iteration + 1, state.reference_loss, state.last_checkpoint,
                            config)
            state.optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            state.iteration_seconds.append(time.perf_counter() - tic)
            state.train_seconds += state.iteration_seconds[-1]
            state.iteration = done = iteration + 1
            accuracies = [o.accuracy for o in outcomes if o.accuracy is not None]
            accuracy = torch.stack(accuracies).mean().item() if accuracies else None
            record = {"iteration": done, "split": "train", "loss": loss, "accuracy": accuracy,
                      "seconds": state.iteration_seconds[-1]}
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False,
                            **({"acc": f"{accuracy:.3f}"} if accuracy is not None else {}))
            out_of_time = _out_of_time(state, config, dist)
            asked = stop.check_file(run_dir, dist, device)  # guards.STOP_FILE
            if not dist.is_main:
                if out_of_time or asked:
                    break
                continue
            if train_cfg.log_every and (done % train_cfg.log_every == 0
                                        or done == train_cfg.iterations):
                log_record(run_dir, state.history, record)
            if train_cfg.eval_every and done % train_cfg.eval_every == 0:
                validate(state, config, device, run_dir, done)
            minutes = (time.monotonic() - last_save) / 60
            if (done == train_cfg.iterations or stop.received is not None or out_of_time
                    or (train_cfg.checkpoint_every and done % train_cfg.checkpoint_every == 0)
                    or (train_cfg.checkpoint_minutes and minutes >= train_cfg.checkpoint_minutes)):
                save_checkpoint(run_dir, state.checkpoint_payload(config))
                state.last_checkpoint, last_save = done, time.monotonic()
            if stop.received is not None:
                bar.close()
                raise stop.error(run_dir, done, train_cfg.iterations)
            if out_of_time:
                if train_cfg.log_every and done % train_cfg.log_every:
                    log_record(run_dir, state.history, record)  # the last iteration's loss
                break
    bar.close()
    plan = getattr(meta_gradient, "plan", None)
    return None if plan is None else plan.to_dict()


def _out_of_time(state: TrainingState, config: Config, dist: DistributedContext) -> bool:
    """Whether the meta-iterations have used up `train.max_minutes` (never when it is 0). With
    several processes rank 0's clock decides, so that every rank stops at the same iteration."""
    limit = config.train.max_minutes
    if not limit:
        return False
    out = state.train_seconds >= 60 * limit
    if dist.enabled:
        import torch.distributed

        flag = torch.tensor([float(out)], device=next(state.algorithm.parameters()).device)
        torch.distributed.broadcast(flag, src=0)
        out = bool(flag.item())
    return out
