"""Running out of memory, on the CPU (MemoryError) or a GPU (torch.OutOfMemoryError), is one
line that says what ran out, at which settings and what to lower, with a non-zero exit; the
last checkpoint and the run's other files are kept as they were."""
import json
import re

import pytest
import torch

import gbml_ext.runner.loop as loop
import gbml_ext.runner.records as records
from gbml_ext.runner import train
from gbml_ext.runner.cli import eval_main, main
from gbml_ext.runner.options import exit_code_of
from run_fixtures import TINY6, checksums, clean_error, cli, tiny6

KEPT = ("checkpoint.pt", "results.json", "results.md")


def _raise_at(monkeypatch, iteration: int, error: BaseException) -> None:
    """Makes meta-iteration `iteration` run out of memory (where its loss is checked)."""
    real = loop.check_meta_loss

    def check(loss, done, *args, **kwargs):
        if done == iteration:
            raise error
        return real(loss, done, *args, **kwargs)

    monkeypatch.setattr(loop, "check_meta_loss", check)


@pytest.mark.parametrize("error,what", [
    (MemoryError(), "CPU"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "GPU"),
], ids=["cpu", "cuda"])
def test_out_of_memory_in_training_is_one_line_and_keeps_the_checkpoint(
        error, what, tmp_path, monkeypatch, capsys):
    train(tiny6(tmp_path, "train.iterations=3"), progress=False)
    before = {name: digest for name, digest in checksums(tmp_path).items() if name in KEPT}
    assert set(before) == set(KEPT)
    _raise_at(monkeypatch, 5, error)
    code, out, err = cli(capsys, main, *TINY6, f"output_dir='{tmp_path}'", "--resume",
                         "--no-progress")
    assert code == 1 and clean_error(err, 1), err
    assert f"out of {what} memory in meta-training" in err
    assert "train.meta_batch=2" in err and "model.name=linear" in err
    assert "data.options.dim=4, data.options.n_support=8, data.options.n_query=8" in err
    assert "data.ways" not in err  # a regression task has no ways
    assert "train.memory_budget_mb" in err
    assert "checkpoint of iteration 3 is kept" in err and "--resume" in err
    if what == "GPU":
        assert "2.00 GiB" in err  # the size of the allocation that failed
    after = checksums(tmp_path)
    assert {name: after[name] for name in KEPT} == before
    assert not (tmp_path / "run.lock").exists()
    # the kept checkpoint continues the run once the memory is there
    monkeypatch.undo()
    result = train(tiny6(tmp_path), resume=True, progress=False)
    assert result.results["iterations_done"] == 6


def test_the_advice_after_running_out_of_memory_in_training_works(tmp_path, monkeypatch,
                                                                  capsys):
    """The keys offered with --resume are keys resume accepts; the batch is offered for a new
    run only, as resume refuses a changed train.meta_batch."""
    train(tiny6(tmp_path, "train.iterations=3"), progress=False)
    _raise_at(monkeypatch, 5, MemoryError())
    code, _, err = cli(capsys, main, *TINY6, f"output_dir='{tmp_path}'", "--resume",
                       "--no-progress")
    assert code == 1, err
    chunk = re.search(r"Set (algorithm\.tasks_per_chunk=\d+)", err)
    assert chunk and "which --resume accepts" in err, err
    assert "a new run with a lower train.meta_batch" in err, err
    monkeypatch.undo()
    assert cli(capsys, main, *TINY6, f"output_dir='{tmp_path}'", "train.meta_batch=1",
               "--resume", "--no-progress")[0] == 2  # refused, as the message says
    code, _, err = cli(capsys, main, *TINY6, f"output_dir='{tmp_path}'", chunk.group(1),
                       "--resume", "--no-progress")
    assert code == 0, err
    assert json.loads((tmp_path / "results.json").read_text())["iterations_done"] == 6


def test_out_of_memory_on_the_per_task_path_offers_no_chunking(tmp_path, monkeypatch, capsys):
    _raise_at(monkeypatch, 2, MemoryError())
    code, _, err = cli(capsys, main, *TINY6, "algorithm.path=per-task",
                       f"output_dir='{tmp_path}'", "--no-progress")
    assert code == 1 and clean_error(err, 1), err
    assert "tasks_per_chunk" not in err and "memory_budget_mb" not in err, err
    assert "a new run with a lower train.meta_batch" in err and "no checkpoint" in err, err


def test_out_of_memory_while_building_the_run_names_the_key_that_sized_it(tmp_path, capsys):
    """A task source too large to build: the keys that size the tasks and the model, the size
    asked for, and no advice about the batch or a checkpoint that does not exist."""
    code, _, err = cli(capsys, main, *TINY6, "data.options={dim=20000000}",
                       f"output_dir='{tmp_path}/run'", "--no-progress")
    assert code == 1 and clean_error(err, 1), err
    assert "out of CPU memory building the run" in err and "2.84 PiB" in err, err
    assert "data.options.dim=20000000" in err and "model.name=linear" in err, err
    for misleading in ("meta_batch", "tasks_per_chunk", "data.ways", "last checkpoint"):
        assert misleading not in err, err
    assert not (tmp_path / "run").exists()


def test_out_of_memory_before_any_checkpoint_says_start_again(tmp_path, monkeypatch, capsys):
    _raise_at(monkeypatch, 2, MemoryError())
    code, _, err = cli(capsys, main, *TINY6, f"output_dir='{tmp_path}/run'", "--no-progress")
    assert code == 1 and clean_error(err, 1), err
    assert "out of CPU memory" in err and "no checkpoint was written yet" in err
    assert "--overwrite" in err


def test_out_of_memory_in_the_final_evaluation_names_its_settings(tmp_path, monkeypatch,
                                                                    capsys):
    def evaluate(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(records, "final_evaluation", evaluate)
    code, _, err = cli(capsys, main, *TINY6, f"output_dir='{tmp_path}'", "--no-progress")
    assert code == 1 and clean_error(err, 1), err
    assert "in the final evaluation at algorithm.test_steps=2" in err
    assert "checkpoint of iteration 6 is kept" in err and not (tmp_path / "results.json").exists()


def test_out_of_memory_anywhere_else_is_one_line(tmp_path, monkeypatch, capsys):
    train(tiny6(tmp_path), progress=False)
    before = checksums(tmp_path)
    import gbml_ext.runner.saved as saved

    def evaluate(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(saved, "final_evaluation", evaluate)
    code, _, err = cli(capsys, eval_main, tmp_path, "--no-progress")
    assert code == 1 and clean_error(err, 1) and "out of GPU memory" in err, err
    assert "(--steps N); the run folder was not changed" in err and "meta_batch" not in err
    assert checksums(tmp_path) == before

    def build():
        raise MemoryError()

    assert exit_code_of("gbml-train", build, debug=False) == 1
    assert "out of CPU memory" in capsys.readouterr().err
    with pytest.raises(MemoryError):  # --debug shows the traceback
        exit_code_of("gbml-train", build, debug=True)
    assert json.loads((tmp_path / "results.json").read_text())["iterations_done"] == 6


def test_the_cpu_allocators_failure_is_out_of_memory_too(tmp_path, monkeypatch, capsys):
    """torch's CPU allocator raises a RuntimeError, not a MemoryError (a huge train.meta_batch
    asks it for hundreds of GB)."""
    _raise_at(monkeypatch, 2, RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
        "memory: you tried to allocate 409600000000 bytes. Error code 12"))
    code, _, err = cli(capsys, main, *TINY6, f"output_dir='{tmp_path}/run'", "--no-progress")
    assert code == 1 and clean_error(err, 1), err
    assert "out of CPU memory in meta-training at train.meta_batch=2" in err
    _raise_at(monkeypatch, 2, RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(RuntimeError, match="shapes"):  # any other RuntimeError is a bug to see
        main([*TINY6, f"output_dir='{tmp_path}/other'", "--no-progress"])


def _fill_disk(monkeypatch, folder):
    """From now on every file written under `folder` goes to /dev/full, which refuses the bytes
    as a full disk does: ENOSPC when they are flushed, with no file name attached."""
    import builtins
    import io
    import os
    from pathlib import Path

    real_open = builtins.open
    folder = Path(folder).absolute()

    def full_open(file, mode="r", *args, **kwargs):
        if (not isinstance(file, int) and any(c in mode for c in "wax+")
                and folder in Path(os.fsdecode(file)).absolute().parents):
            return real_open("/dev/full", mode.replace("x", "w"), *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_open)
    monkeypatch.setattr(io, "open", full_open)


def test_a_full_disk_in_training_names_the_file_and_where_training_stopped(
        tmp_path, monkeypatch, capsys):
    real = loop.check_meta_loss

    def check(loss, done, *args, **kwargs):
        if done == 5:
            _fill_disk(monkeypatch, tmp_path)
        return real(loss, done, *args, **kwargs)

    monkeypatch.setattr(loop, "check_meta_loss", check)
    code, _, err = cli(capsys, main, *TINY6, f"output_dir='{tmp_path}'", "--no-progress")
    assert code == 1 and clean_error(err, 1), err
    assert f"cannot write {tmp_path / 'metrics.jsonl'} (No space left on device)" in err, err
    assert "at iteration 5 of 6" in err and "checkpoint of iteration 3 is kept" in err, err
    assert "--resume" in err and not (tmp_path / "run.lock").exists()
    monkeypatch.undo()
    assert train(tiny6(tmp_path), resume=True, progress=False).results["iterations_done"] == 6


def test_a_full_disk_after_training_says_training_finished(tmp_path, monkeypatch, capsys):
    real = records.final_evaluation

    def evaluate(*args, **kwargs):
        _fill_disk(monkeypatch, tmp_path)
        return real(*args, **kwargs)

    monkeypatch.setattr(records, "final_evaluation", evaluate)
    code, _, err = cli(capsys, main, *TINY6, f"output_dir='{tmp_path}'", "--no-progress")
    assert code == 1 and clean_error(err, 1), err
    assert f"cannot write {tmp_path / 'results.json'} (No space left on device)" in err, err
    assert "training finished (6 of 6 meta-iterations)" in err, err
    assert "checkpoint of iteration 6 is kept" in err and "--resume" in err, err
    assert not (tmp_path / "results.json").exists()
