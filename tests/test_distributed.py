"""Two CPU processes (gloo) must apply exactly the meta-update one process applies to all tasks."""
import json
import os
import socket

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
