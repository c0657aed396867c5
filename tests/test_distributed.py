"""Two CPU processes (gloo) must apply exactly the meta-update one process applies to all tasks."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import gbml_ext
from gbml_ext.runner.distributed import all_reduce_gradients, init_distributed
from helpers import classification_task


def _model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    return model.double()


TASKS = [classification_task(seed=s) for s in range(4)]


def _meta_step(algorithm, tasks, world_size):
    outer = torch.optim.SGD(algorithm.parameters(), lr=0.5)
    outer.zero_grad()
    algorithm.accumulate_meta_gradient(tasks, steps=2)
    if world_size > 1:
        all_reduce_gradients(algorithm.parameters(), world_size)
    outer.step()
    return [p.detach().clone() for p in algorithm.parameters()]


def _worker(rank, world_size, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    context = init_distributed(torch.device("cpu"))
    assert context.rank == rank and context.world_size == world_size
    share = len(TASKS) // world_size
    algorithm = gbml_ext.GBML(_model(), lr=0.4, transform=gbml_ext.KroneckerTransform())
    params = _meta_step(algorithm, TASKS[rank * share:(rank + 1) * share], world_size)
    torch.save(params, os.path.join(out_dir, f"params{rank}.pt"))
    # The whole runner under two processes: only rank 0 writes the run directory.
    from gbml_ext.runner import load_config, train

    config = load_config(None, ["data.options={dim=4, n_support=4, n_query=4}",
                                "train.iterations=4", "train.meta_batch=4", "evaluation.tasks=4",
                                f"output_dir='{out_dir}/run'", "train.checkpoint_every=2",
                                "logging.backends=tensorboard"])
    train(config, progress=False)
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_meta_update_equals_single_process(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    single = _meta_step(gbml_ext.GBML(_model(), lr=0.4, transform=gbml_ext.KroneckerTransform()),
                        TASKS, world_size=1)
    for rank in range(2):
        for a, b in zip(torch.load(tmp_path / f"params{rank}.pt"), single, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["world_size"] == 2
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    # log_every defaults to 10, so only the last iteration is logged, once: rank 1 writes nothing.
    assert [json.loads(x)["iteration"] for x in lines] == [4]
    # Rank 0 alone logs to the backends: one TensorBoard event file.
    assert len(list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))) == 1


def _start_ranks(out, port, extra=(), rank1_path=None):
    """Two gbml-train processes of one gloo group, as torchrun or srun start them (rank 1 with
    `rank1_path` first on its PYTHONPATH, when given)."""
    command = [sys.executable, "-m", "gbml_ext.runner", *TINY_RUN, f"output_dir='{out}'",
               "--no-progress", *extra]
    processes = []
    for rank in range(2):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
               "OMP_NUM_THREADS": "1"}
        if rank == 1 and rank1_path is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(rank1_path),
                                                 os.environ.get("PYTHONPATH", "")])
        processes.append(subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True,
                                          cwd=out.parent))
    return processes


def _wait_for_lines(path, count, processes, seconds=180):
    deadline = time.time() + seconds
    while time.time() < deadline and not (path.exists()
                                          and path.read_text().count("\n") >= count):
        assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
        time.sleep(0.1)


TINY_RUN = ["data.options={dim=4, n_support=4, n_query=4}", "train.iterations=100000",
            "train.meta_batch=2", "train.log_every=1", "train.checkpoint_every=0",
            "evaluation.tasks=4", "train.plot=false"]


@pytest.mark.slow
@pytest.mark.parametrize("signalled", [(0, 1), (1,)], ids=["every-rank", "rank-1-only"])
def test_sigterm_stops_every_rank_together_with_a_checkpoint(tmp_path, signalled):
    """A preempted multi-task job: SIGTERM reaches every rank (or only one of them, or at
    different iterations); all agree to stop, rank 0 checkpoints, each exits 143 in one line,
    none dies inside a collective."""
    out = tmp_path / "run"
    out.mkdir()
    processes = _start_ranks(out, _free_port())
    _wait_for_lines(out / "metrics.jsonl", 3, processes)
    for rank in signalled:
        processes[rank].send_signal(signal.SIGTERM)
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [143, 143], errors
    for err in errors:
        assert "Traceback" not in err and "Connection closed" not in err, err
        assert "SIGTERM at iteration" in err and "--resume" in err, err
    stopped_at = torch.load(out / "checkpoint.pt", weights_only=False)["iteration"]
    assert f"SIGTERM at iteration {stopped_at} of 100000" in errors[0]
    assert not (out / "run.lock").exists() and not (out / "results.json").exists()


RANK1_DIVERGES = """
import gbml_ext.runner.loop as loop
from gbml_ext.runner.errors import MetaLossDiverged

_check = loop.check_meta_loss


def check_meta_loss(loss, iteration, *args):
    if iteration >= 3:
        raise MetaLossDiverged(f"test: rank 1 alone diverged at iteration {iteration}", loss,
                               iteration)
    return _check(loss, iteration, *args)


loop.check_meta_loss = check_meta_loss
"""


@pytest.mark.slow
def test_a_failure_on_one_rank_alone_stops_every_rank(tmp_path):
    """Rank 1's meta-loss diverges while rank 0's does not: both stop at that iteration, rank 1
    with its own message and rank 0 pointing to it, instead of rank 0 waiting in the gradient
    all-reduce that rank 1 never joins."""
    out = tmp_path / "run"
    out.mkdir()
    patch = tmp_path / "rank1"
    patch.mkdir()
    (patch / "sitecustomize.py").write_text(RANK1_DIVERGES)
    processes = _start_ranks(out, _free_port(), rank1_path=patch)
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert all(p.returncode not in (0, None) for p in processes), errors
    assert "at iteration 3 of" in errors[1] and "diverges" in errors[1], errors[1]
    assert "another process of this run stopped with an error" in errors[0], errors[0]
    assert "Traceback" not in errors[0] and "Connection closed" not in errors[0], errors[0]
    assert not (out / "results.json").exists()
