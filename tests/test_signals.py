"""SIGINT and SIGTERM stop a run cleanly whatever it is doing: one line that says what was
reached and how to continue, the exit code 128 + the signal, the lock released, and a run that
`--resume` continues. During the meta-iterations the run first finishes the iteration and
checkpoints (tests/test_checkpoints.py); before and after them it stops at once."""
import os
import signal

import pytest

import gbml_ext.runner.records as records
import gbml_ext.runner.start as start
from gbml_ext.runner import train
from gbml_ext.runner.cli import main
from run_fixtures import TINY6, clean_error, cli, tiny6


class _Killed(Exception):
    """What the test's own handler raises where the runner did not handle the signal (a real
    process would have died there without a word, leaving its lock)."""


@pytest.fixture
def killable():
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}

    def killed(number, frame):
        raise _Killed(signal.Signals(number).name)

    for number in previous:
        signal.signal(number, killed)
    yield
    for number, handler in previous.items():
        signal.signal(number, handler)


def _signal_inside(monkeypatch, module, name, number):
    """Makes `module.name` deliver `number` to this process, then do its work."""
    real = getattr(module, name)

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), number)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, signalled)


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_the_final_evaluation_stops_in_one_line_and_resumes(
        number, tmp_path, monkeypatch, capsys, killable):
    _signal_inside(monkeypatch, records, "final_evaluation", number)
    code, _, err = cli(capsys, main, *TINY6, f"output_dir='{tmp_path}'", "--no-progress")
    name = signal.Signals(number).name
    assert code == 128 + number and clean_error(err, 1), err
    assert f"{name} during the final evaluation" in err and "6 of 6" in err, err
    assert "--resume" in err and str(tmp_path) in err
    assert not (tmp_path / "run.lock").exists() and not (tmp_path / "results.json").exists()
    monkeypatch.undo()
    resumed = train(tiny6(tmp_path), resume=True, progress=False)
    assert resumed.results["iterations_done"] == 6 and (tmp_path / "results.json").is_file()


def test_a_signal_while_the_run_starts_stops_in_one_line(tmp_path, monkeypatch, capsys,
                                                          killable):
    _signal_inside(monkeypatch, start, "build_run", signal.SIGTERM)
    code, _, err = cli(capsys, main, *TINY6, f"output_dir='{tmp_path}/run'", "--no-progress")
    assert code == 143 and clean_error(err, 1), err
    assert "SIGTERM while the run was starting" in err and "--resume" in err, err
    assert not (tmp_path / "run" / "run.lock").exists()
    monkeypatch.undo()
    assert train(tiny6(tmp_path / "run"), resume=True,
                 progress=False).results["iterations_done"] == 6


def test_a_second_signal_stops_at_once_and_keeps_the_last_checkpoint(tmp_path, monkeypatch,
                                                                     capsys, killable):
    train(tiny6(tmp_path, "train.iterations=3"), progress=False)
    real = records.log_validation

    def twice(*args, **kwargs):  # in iteration 5's validation, before its checkpoint
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    import gbml_ext.runner.loop as loop
    monkeypatch.setattr(loop, "log_validation", twice)
    code, _, err = cli(capsys, main, *TINY6, "train.eval_every=5", f"output_dir='{tmp_path}'",
                       "--resume", "--no-progress")
    assert code == 143 and clean_error(err, 1), err
    assert "SIGTERM again at iteration 5 of 6" in err, err
    assert "checkpoint of iteration 3" in err and "--resume" in err, err
    assert not (tmp_path / "run.lock").exists()
