"""The experiment runner: configs, resume, confidence intervals, output files."""
import json
import math

import numpy as np
import pytest
import torch

from gbml_ext.runner import ConfigError, NonFiniteLossError, confidence_interval, load_config, train
from gbml_ext.runner import loop as loop_module

TINY = ["data.source=linear-regression", "data.options={dim=4, n_support=8, n_query=8}",
        "train.iterations=20", "train.meta_batch=4", "train.lr=0.01", "train.log_every=1",
        "train.checkpoint_every=5", "evaluation.tasks=20", "algorithm.test_steps=2"]


def tiny_config(tmp_path, *extra):
    return load_config(None, TINY + [f"output_dir='{tmp_path}'", *extra])


def test_confidence_interval_matches_formula():
    values = np.random.default_rng(0).normal(size=37)
    expected = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert confidence_interval(values.tolist()) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(confidence_interval([1.0]))


def test_overrides_and_extends(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text('name = "base"\n[train]\niterations = 7\nlr = 0.5\n')
    row = tmp_path / "row.toml"
    row.write_text('extends = "base.toml"\nname = "row"\n[algorithm]\nname = "fomaml"\n')
    config = load_config(row, ["train.lr=0.25", "algorithm.transform=kronecker",
                               "data.options={dim=3}"])
    assert (config.name, config.train.iterations, config.train.lr) == ("row", 7, 0.25)
    assert config.algorithm.name == "fomaml" and config.algorithm.transform == "kronecker"
    assert config.data.options == {"dim": 3}


@pytest.mark.parametrize("override,message", [
    ("train.iters=3", "unknown config key.*train.iters.*iterations"),
    ("algorithm.name=mamlx", "allowed: maml, fomaml"),
    ("train.meta_batch=2.5", "train.meta_batch' must be int"),
    ("train.lr=0", "train.lr' must be > 0"),
    ("algorithm.transform=kronecker", None),
    ("nonsense", "section.key=value"),
])
def test_bad_config_values_are_clear_errors(override, message):
    if message is None:
        load_config(None, [override])
        return
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_missing_config_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; the configs shipped with gbml_ext "
                                          "are in .*experiments/configs"):
        load_config(tmp_path / "nope.toml")


def test_end_to_end_run_writes_results_with_fields(tmp_path):
    result = train(tiny_config(tmp_path), progress=False)
    files = {p.name for p in tmp_path.iterdir()}
    assert {"results.json", "results.md", "metrics.jsonl", "checkpoint.pt", "training.png"} <= files
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["evaluation"]["loss"]["n"] == 20
    assert len(results["evaluation"]["loss_by_step"]) == 3
    assert results["evaluation"]["accuracy"] is None
    for key in ("train_seconds", "seconds_per_iteration", "final_train_loss"):
        assert results[key] > 0
    assert results["peak_memory_mb"] >= 0 and results["peak_memory_kind"] == "peak_rss_increase"
    assert results["environment"]["torch"] == torch.__version__
    assert results["config"]["train"]["iterations"] == 20
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines] == list(range(1, 21))
    assert "± " in (tmp_path / "results.md").read_text()
    assert result.history == lines


def test_classification_run_reports_accuracy(tmp_path):
    config = tiny_config(tmp_path, "data.source=logistic-regression", "model.linnet_depth=2",
                         "algorithm.transform=kronecker")
    results = train(config, progress=False).results
    assert 0.0 <= results["evaluation"]["accuracy"]["mean"] <= 1.0


class _Interrupt(Exception):
    pass


def test_resume_is_bit_identical_to_uninterrupted_run(tmp_path, monkeypatch):
    straight = train(tiny_config(tmp_path / "a", "algorithm.transform=kronecker"), progress=False)

    real_log = loop_module.log_record

    def log_then_crash(run_dir, history, record):
        real_log(run_dir, history, record)
        if record["iteration"] == 13:  # past the checkpoint at 10: iterations 11-13 are redone
            raise _Interrupt

    monkeypatch.setattr(loop_module, "log_record", log_then_crash)
    config = tiny_config(tmp_path / "b", "algorithm.transform=kronecker")
    with pytest.raises(_Interrupt):
        train(config, progress=False)
    monkeypatch.setattr(loop_module, "log_record", real_log)
    resumed = train(config, resume=True, progress=False)

    for a, b in zip(straight.algorithm.state_dict().values(),
                    resumed.algorithm.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(straight.history) == strip(resumed.history)
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines] == list(range(1, 21))
    assert straight.results["evaluation"]["loss"] == resumed.results["evaluation"]["loss"]


def test_nan_loss_is_a_clear_error(tmp_path):
    config = tiny_config(tmp_path, "algorithm.inner_lr=1e6", "algorithm.train_steps=5")
    with pytest.raises(NonFiniteLossError, match="inner_lr"):
        train(config, progress=False)


def test_cli_reports_config_errors(capsys):
    from gbml_ext.runner.cli import main

    assert main(["train.nope=1"]) == 2
    assert "unknown config key" in capsys.readouterr().err


def test_resume_refuses_a_checkpoint_from_another_config(tmp_path):
    train(tiny_config(tmp_path, "train.iterations=5"), progress=False)
    extended = train(tiny_config(tmp_path, "train.iterations=7"), resume=True, progress=False)
    assert [h["iteration"] for h in extended.history][-3:] == [5, 6, 7]
    with pytest.raises(ConfigError, match="different config.*algorithm.inner_lr"):
        train(tiny_config(tmp_path, "train.iterations=9", "algorithm.inner_lr=0.3"), resume=True,
              progress=False)


def test_threads_apply_during_the_run_and_are_restored(tmp_path):
    before = torch.get_num_threads()
    result = train(tiny_config(tmp_path, "threads=1", "train.plot=false"), progress=False)
    assert result.results["environment"]["threads"] == 1
    assert torch.get_num_threads() == before
    files = {p.name for p in tmp_path.iterdir()}
    assert "results.json" in files and "training.png" not in files


def test_channels_last_model_gives_the_same_meta_gradient():
    """NHWC weights run other CPU kernels; the meta-gradient must not change beyond rounding."""
    from gbml_ext.data.tasks import Task
    from gbml_ext.runner.build import build_learner

    overrides = ["data.source=omniglot", "model.name=omniglot_cnn4", "model.options={hidden=8}",
                 "algorithm.name=maml", "algorithm.inner_lr=0.4"]
    generator = torch.Generator().manual_seed(0)
    tasks = [Task(torch.rand(5, 1, 28, 28, generator=generator), torch.arange(5),
                  torch.rand(10, 1, 28, 28, generator=generator), torch.arange(10) % 5)
             for _ in range(2)]
    gradients = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        learner = build_learner(load_config(None, overrides + [
            f"model.channels_last={str(channels_last).lower()}"]))
        convs = [p for p in learner.parameters() if p.dim() == 4]
        assert all(p.is_contiguous(memory_format=torch.channels_last) == channels_last
                   for p in convs if p.shape[1] > 1)
        learner.accumulate_meta_gradient(tasks, 2)
        gradients.append([p.grad.clone() for p in learner.parameters()])
    for plain, nhwc in zip(*gradients, strict=True):
        torch.testing.assert_close(nhwc, plain, rtol=1e-4, atol=1e-6)


def _vanish_at(monkeypatch, iteration, *names):
    """Makes the run folder (or the files `names` in it) disappear during `iteration`."""
    import shutil

    real = loop_module.check_meta_loss

    def check(loss, done, reference, last_checkpoint, config):
        if done == iteration:
            run_dir = config.run_dir()
            for name in names:
                (run_dir / name).unlink()
            if not names:
                shutil.rmtree(run_dir)
        return real(loss, done, reference, last_checkpoint, config)

    monkeypatch.setattr(loop_module, "check_meta_loss", check)


@pytest.mark.parametrize("names", [(), ("config.json",)], ids=["folder", "config.json"])
def test_a_run_whose_folder_vanishes_stops_and_is_not_done(tmp_path, monkeypatch, capsys, names):
    """Deleted while its run trains, a folder is not made again with files that look like a
    finished run: the run stops at its next write with one line, and writes no results."""
    from gbml_ext.runner.cli import main

    out = tmp_path / "run"
    _vanish_at(monkeypatch, 7, *names)
    code = main([*TINY, f"output_dir='{out}'", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert str(out) in err and "iteration 7 of 20" in err and "not done" in err, err
    if names:
        assert "config.json" in err and "--resume" in err
        assert (out / "checkpoint.pt").is_file() and not (out / "run.lock").exists()
    else:
        assert "was deleted" in err and not out.exists()  # not made again
    assert not (out / "results.json").exists() and not (out / "config.json").exists()


def test_a_run_folder_that_vanishes_in_the_final_evaluation_gets_no_results(tmp_path,
                                                                           monkeypatch, capsys):
    import shutil

    import gbml_ext.runner.records as records

    real = records.final_evaluation
    out = tmp_path / "run"

    def evaluate(*args, **kwargs):
        shutil.rmtree(out)
        return real(*args, **kwargs)

    monkeypatch.setattr(records, "final_evaluation", evaluate)
    with pytest.raises(RuntimeError, match="was deleted"):
        train(tiny_config(out), progress=False)
    assert not out.exists()
