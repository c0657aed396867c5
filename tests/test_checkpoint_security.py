"""Reading a checkpoint never runs code from it: every reader (gbml-eval, load_run, reevaluate,
gbml-train --resume, a damaged config.json's fallback) loads with weights_only, and refuses a
file that holds a pickled call with one line that names the file and the flag that trusts it.

The checkpoints runs write hold only what weights_only reads, for every algorithm; those of
earlier versions (NumPy's random state as an array) still load and resume bit-identically.
"""
import os

import numpy as np
import pytest
import torch

from gbml_ext.runner import (
    UnsafeCheckpoint,
    load_config,
    load_run,
    reevaluate,
    train,
    trust_checkpoints,
)
from gbml_ext.runner.cli import eval_main, main
from run_fixtures import TINY6, checksums, clean_error, cli, tiny, tiny6
from vision_fixtures import write_cifar_fs


class RunsCommand:
    """Pickles as a call of os.system: loading it with full unpickling runs `command`."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def plant(run_dir, marker, name="checkpoint.pt"):
    """Rewrites the run's checkpoint `name` to hold, beside its real contents, an object whose
    unpickling creates `marker`."""
    path = run_dir / name
    payload = torch.load(path, weights_only=True)
    payload["note"] = RunsCommand(f"touch '{marker}'")
    torch.save(payload, path)
    return path


def refused(err, path):
    return (clean_error(err, 1) and str(path) in err and "--trust-checkpoint" in err
            and "run code" in err)


def test_gbml_eval_refuses_a_checkpoint_that_would_run_code(tmp_path, capsys):
    run, marker = tmp_path / "run", tmp_path / "marker"
    train(tiny(run), progress=False)
    path = plant(run, marker)
    before = checksums(run)
    code, out, err = cli(capsys, eval_main, run, "--no-progress")
    assert code == 1 and refused(err, path), err
    assert not marker.exists() and checksums(run) == before
    # the payload is real: trusted on purpose, it runs (and the evaluation goes on)
    code, out, err = cli(capsys, eval_main, run, "--no-progress", "--trust-checkpoint")
    assert code == 0, err
    assert marker.exists()


def test_load_run_and_reevaluate_refuse_it(tmp_path):
    run, marker = tmp_path / "run", tmp_path / "marker"
    train(tiny(run), progress=False)
    path = plant(run, marker)
    with pytest.raises(UnsafeCheckpoint, match="trust=True") as error:
        load_run(run)
    assert str(path) in str(error.value)
    with pytest.raises(UnsafeCheckpoint):
        reevaluate(run, out=tmp_path / "evals")
    assert not marker.exists() and not (tmp_path / "evals").exists()
    assert load_run(run, trust=True).iteration == 3 and marker.exists()


def test_resume_refuses_it_and_loses_nothing(tmp_path, capsys):
    run, marker = tmp_path / "run", tmp_path / "marker"
    train(tiny6(run), progress=False)
    path = plant(run, marker)
    before = checksums(run)
    code, _, err = cli(capsys, main, *TINY6, f"output_dir='{run}'", "train.iterations=9",
                       "--resume", "--no-progress")
    assert code == 1 and refused(err, path), err
    assert "falling back" not in err  # never past a refused file to an older one
    assert not marker.exists() and checksums(run) == before
    with pytest.raises(UnsafeCheckpoint):
        train(tiny6(run, "train.iterations=9"), resume=True, progress=False)
    assert not marker.exists()
    with trust_checkpoints():
        done = train(tiny6(run, "train.iterations=9"), resume=True, progress=False)
    assert marker.exists() and done.results["iterations_done"] == 9


def test_the_previous_checkpoint_and_the_config_fallback_are_checked_too(tmp_path, capsys):
    run, marker = tmp_path / "run", tmp_path / "marker"
    train(tiny6(run), progress=False)
    path = plant(run, marker, "checkpoint.prev.pt")
    (run / "checkpoint.pt").write_bytes(b"\x00damaged")
    code, _, err = cli(capsys, main, *TINY6, f"output_dir='{run}'", "--resume", "--no-progress")
    assert code == 1 and refused(err, path), err
    (run / "config.json").write_text("{")  # gbml-eval then reads the checkpoint's config
    code, _, err = cli(capsys, eval_main, run, "--no-progress")
    assert code == 1 and refused(err, path), err
    assert not marker.exists()


@pytest.mark.parametrize("extra", [["algorithm.name=maml", "algorithm.transform=kronecker"],
                                   ["algorithm.name=metasgd"], ["algorithm.name=imaml"],
                                   ["algorithm.name=reptile", "train.optimizer=sgd"]])
def test_the_checkpoints_runs_write_hold_only_plain_data(tmp_path, extra):
    train(tiny(tmp_path, *extra), progress=False)
    payload = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # no allow-list at all
    assert payload["iteration"] == 3 and isinstance(payload["rng"]["numpy"], dict)


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["tensor", "learn2learn"])
def test_a_vision_runs_checkpoint_holds_only_plain_data_too(tmp_path, sampler):
    """Image tasks, accuracy and validation records in the history, each sampler's state."""
    root = write_cifar_fs(tmp_path / "cifar", (4, 3, 3), images_per_class=4)
    overrides = [f"data.root='{root}'", "data.source=cifar-fs", "model.name=cifarfs_cnn4",
                 "data.ways=3", "data.queries=1", "model.options={hidden=4}",
                 f"data.sampler={sampler}", "train.iterations=2", "train.meta_batch=2",
                 "train.log_every=1", "train.eval_every=1", "train.eval_tasks=2",
                 "evaluation.tasks=3", "device=cpu", f"output_dir='{tmp_path / 'run'}'"]
    train(load_config(None, overrides), progress=False)
    payload = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert [h["split"] for h in payload["history"]] == ["train", "validation"] * 2
    resumed = train(load_config(None, overrides + ["train.iterations=3"]), resume=True,
                    progress=False)
    assert resumed.results["iterations_done"] == 3


def test_a_checkpoint_of_the_earlier_format_still_resumes_bit_identically(tmp_path):
    straight = train(tiny6(tmp_path / "a"), progress=False)
    train(tiny6(tmp_path / "b", "train.iterations=3"), progress=False)
    path = tmp_path / "b" / "checkpoint.pt"
    payload = torch.load(path, weights_only=True)
    new = payload["rng"]["numpy"]
    # as earlier versions wrote it: np.random.get_state()'s tuple, its key a uint32 array
    payload["rng"]["numpy"] = ("MT19937", new["state"]["key"].numpy().astype(np.uint32),
                               new["state"]["pos"], new["has_gauss"], new["gauss"])
    torch.save(payload, path)
    assert "numpy.ndarray" in torch.serialization.get_unsafe_globals_in_checkpoint(path)
    resumed = train(tiny6(tmp_path / "b"), resume=True, progress=False)
    for a, b in zip(straight.algorithm.state_dict().values(),
                    resumed.algorithm.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.results["evaluation"]["loss"] == straight.results["evaluation"]["loss"]


def test_gbml_train_help_names_the_flag(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--trust-checkpoint" in capsys.readouterr().out
