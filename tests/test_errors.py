"""Errors: every user-facing error is one or two lines that name the problem and the fix, with a
non-zero exit and no traceback (--debug shows one); nonsense values and divergence included.

The helpers (tiny configs, checksums, the read-only simulation) are in run_fixtures.py; where
something could be lost, the tests compare files' checksums before and after.
"""
import errno
import os
import subprocess
import sys

import pytest
import torch

from gbml_ext import _startup
from gbml_ext.compare import main as compare_main
from gbml_ext.runner import CheckpointError, ConfigError, NonFiniteLossError, load_config, train
from gbml_ext.runner.cli import main
from run_fixtures import OMNIGLOT, TINY, TINY6, clean_error, cli, run_cli, tiny6
from vision_fixtures import write_omniglot_archive, write_omniglot_tree


def test_the_divergence_advice_works(tmp_path):
    train(tiny6(tmp_path, "train.iterations=3"), progress=False)
    with pytest.raises(NonFiniteLossError) as error:
        train(tiny6(tmp_path, "algorithm.inner_lr=1e6"), resume=True,
              progress=False, allow_change=["algorithm.inner_lr"])
    message = str(error.value)
    assert "the inner loop diverges" in message
    assert "Continue from the checkpoint of iteration 3" in message
    assert "--resume --allow-change algorithm.inner_lr algorithm.inner_lr=" in message
    # following the advice (a lower rate, from the same checkpoint) finishes the run
    result = train(tiny6(tmp_path, "algorithm.inner_lr=0.05"), resume=True, progress=False,
                   allow_change=["algorithm.inner_lr"])
    assert result.results["iterations_done"] == 6


@pytest.mark.parametrize("override", ["algorithm.inner_lr=inf", "algorithm.inner_lr=nan",
                                      "train.lr=-1", "data.ways=0", "data.shots=0",
                                      "data.queries=0", "evaluation.tasks=0",
                                      "train.iterations=0", "train.explode_factor=1"])
def test_nonsense_values_are_config_errors(override, tmp_path, capsys):
    key = override.split("=")[0]
    code, _, err = cli(capsys, main, *TINY6, f"output_dir='{tmp_path}'", override)
    assert code == 2 and key in err and "must be" in err
    assert not any(tmp_path.iterdir())


def test_an_exploding_inner_loop_exits_non_zero(tmp_path, capsys):
    code, _, err = cli(capsys, main, *TINY6, f"output_dir='{tmp_path}'", "algorithm.inner_lr=1e6",
                       "--no-progress")
    assert code == 1 and "diverges" in err and "--overwrite algorithm.inner_lr=" in err
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize("overrides,expected", [
    (["data.source=omniglot", "data.root=/nonexistent/omniglot", "model.name=omniglot_cnn4",
      "data.options={}"],
     "/nonexistent/omniglot"),
    (["device=cuda"], "no GPU"),
    (["model.options={nope=1}"], "model.options"),
    (["data.options={nope=1}"], "data.options"),
    (["algorithm.batched=true", "algorithm.name=reptile"], "batched"),
])
def test_user_errors_print_a_short_message_not_a_traceback(overrides, expected, tmp_path, capsys):
    if expected == "no GPU" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = cli(capsys, main, *TINY6, f"output_dir='{tmp_path}'", *overrides,
                       "--no-progress")
    assert code != 0 and expected in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2, err


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"broken")
    with pytest.raises(CheckpointError):
        main([*TINY6, f"output_dir='{tmp_path}'", "--resume", "--debug", "--no-progress"])


def test_config_error_type_is_kept(tmp_path):
    with pytest.raises(ConfigError):
        tiny6(tmp_path, "data.shots=0")


def test_one_way_classification_is_a_config_error(tmp_path, capsys):
    """Checked with the config, before any data is read (a one-way task is 100% right)."""
    args = [OMNIGLOT, f"data.root='{tmp_path}/omniglot-py.tar.gz'", "data.ways=1",
            f"output_dir='{tmp_path}/run'", "--no-progress"]
    code, _, err = cli(capsys, main, *args)
    assert code == 2 and clean_error(err) and "data.ways = 1" in err and ">= 2" in err, err
    assert not (tmp_path / "run").exists()
    code, _, err = cli(capsys, compare_main, OMNIGLOT, "data.ways=1", "--out", tmp_path / "cmp")
    assert code == 2 and "data.ways" in err and not (tmp_path / "cmp").exists()
    with pytest.raises(ConfigError, match="data.ways"):
        load_config(None, ["data.source=omniglot", "data.ways=1"])
    assert load_config(OMNIGLOT, ["data.ways=2"]).data.ways == 2
    # the synthetic sources do not use data.ways (logistic regression has its two classes)
    assert load_config(None, ["data.source=logistic-regression", "data.ways=1"])


def test_a_bad_data_option_is_blamed_on_data_options(tmp_path, capsys):
    code, _, err = run_cli(capsys, tmp_path, 'data.options={dim="x", n_support=8, n_query=8}')
    assert code == 2 and clean_error(err) and "data.options.dim" in err, err
    assert "model.options" not in err


def test_an_outer_step_that_diverges_is_blamed_on_train_lr(tmp_path, capsys):
    code, _, err = run_cli(capsys, tmp_path, "train.lr=1e6")
    assert code == 1 and clean_error(err), err
    assert "train.lr" in err and "outer step" in err and "algorithm.inner_lr=" not in err


def test_a_checkpoint_that_holds_the_diverged_parameters_is_not_offered(tmp_path, capsys):
    code, _, err = run_cli(capsys, tmp_path, "train.lr=1e6", "train.checkpoint_every=1")
    assert code == 1 and clean_error(err), err
    assert "from before it" not in err and "--resume" not in err
    assert "already holds these meta-parameters" in err and "--overwrite train.lr=" in err


def _omniglot(tmp_path, root, *extra):
    return [*TINY, "data.source=omniglot", f"data.root='{root}'", "data.options={}",
            "model.name=omniglot_cnn4",
            "data.ways=2", "data.queries=1", f"output_dir='{tmp_path}/run'", *extra,
            "--no-progress"]


def test_a_truncated_archive_says_fetch_it_again(tmp_path, capsys):
    archive = write_omniglot_archive(write_omniglot_tree(tmp_path / "tree"),
                                     tmp_path / "omniglot-py.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    code, _, err = cli(capsys, main, *_omniglot(tmp_path, archive))
    assert code == 1 and "Traceback" not in err, err
    message = err.split("gbml-train: error: ", 1)[1]
    assert len(message.strip().splitlines()) == 2 and "fetch omniglot-py.tar.gz again" in message
    assert "unzip" not in message and "cache" not in message


def test_a_junk_archive_is_a_two_line_error(tmp_path, capsys):
    junk = tmp_path / "omniglot-py.tar.gz"
    junk.write_bytes(b"<html>not an archive</html>")
    code, _, err = cli(capsys, main, *_omniglot(tmp_path, junk))
    assert code == 1 and clean_error(err), err
    assert "not a tar archive" in err and "fetch omniglot-py.tar.gz again" in err


def test_the_cache_error_names_the_config_key(tmp_path, read_only, capsys):
    archive = write_omniglot_archive(write_omniglot_tree(tmp_path / "tree"),
                                     tmp_path / "omniglot-py.tar.gz")
    read_only(tmp_path / "cache")
    code, _, err = cli(capsys, main, *_omniglot(
        tmp_path, archive, f"data.options={{cache_dir='{tmp_path}/cache/omniglot'}}"))
    assert code == 1 and clean_error(err), err
    assert "data.options.cache_dir" in err


def test_ctrl_c_while_a_command_starts_is_one_line(capsys):
    assert _startup.command_name(["/venv/bin/gbml-train"], []) == "gbml-train"
    assert _startup.command_name(["-m"], ["python", "-m", "gbml_ext.compare"]) == (
        "gbml-compare")
    assert _startup.command_name(["pytest"], ["python", "-m", "pytest"]) is None
    assert _startup.command_name(["-m"], ["python", "-m", "gbml_ext.tune", "c.toml"]) == (
        "gbml-tune")
    assert _startup.command_name(["/venv/bin/gbml-tune"], []) == "gbml-tune"
    seen = []
    hook = _startup.quiet_interrupt_hook("gbml-eval", lambda *exc: seen.append(exc[0]))
    hook(KeyboardInterrupt, KeyboardInterrupt(), None)
    hook(ValueError, ValueError("x"), None)
    err = capsys.readouterr().err
    assert err == "gbml-eval: interrupted while starting; nothing was run or written.\n"
    assert seen == [ValueError]  # anything else is the previous hook's


@pytest.mark.slow
def test_ctrl_c_while_importing_is_one_line_in_a_real_process(tmp_path):
    script = ("import sys; sys.argv[0] = '/venv/bin/gbml-train'; import gbml_ext; "
              "raise KeyboardInterrupt")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip() == "gbml-train: interrupted while starting; nothing was run or " \
                                  "written."


def test_any_write_a_command_cannot_make_is_one_line(capsys):
    from gbml_ext.runner.options import exit_code_of

    def refused():
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/ro/compare.md")

    assert exit_code_of("gbml-compare", refused, debug=False) == 1
    err = capsys.readouterr().err
    assert clean_error(err, 1) and "cannot write /mnt/ro/compare.md" in err, err
    with pytest.raises(OSError):  # --debug shows the traceback
        exit_code_of("gbml-compare", refused, debug=True)

    def missing():
        raise FileNotFoundError(errno.ENOENT, "No such file", "x")

    with pytest.raises(FileNotFoundError):  # not a file-system refusal: a bug to see
        exit_code_of("gbml-compare", missing, debug=False)


def test_a_failed_runs_reason_is_its_error_line_whole(tmp_path):
    from gbml_ext.launch.files import log_tail

    log = tmp_path / "launch.log"
    error = ("gbml-train: error: meta-loss 1.586e+07 at iteration 1 is 9.53e+06x the unadapted "
             "loss 1.66: the inner loop diverges. Start over with a lower rate.")
    log.write_text("gbml_ext: nothing to resume in " + "runs/" * 80 + " (no checkpoint); "
                   "starting fresh.\n" + error + "\n\n")
    assert log_tail(str(log)) == error
    # Without such a line: the last lines, whole ones only, within the limit.
    log.write_text("first " * 30 + "\nsecond line\nTraceback: third line\n")
    assert log_tail(str(log), limit=60) == "second line | Traceback: third line"
    log.write_text("x" * 500 + "\n")
    assert log_tail(str(log)) == "x" * 399 + "…"
