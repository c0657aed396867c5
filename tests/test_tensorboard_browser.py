"""A finished run's TensorBoard, for real: `tensorboard --logdir` on the run folder, on a free
port of 127.0.0.1, read in headless Chromium (the browser of test_docs_site.py: Debian's
chromium and chromium-driver through selenium). Its Time Series page must show the run's
`train/loss` card with the run's last training loss.

Outside CI a missing browser or tensorboard skips the test with a one-line reason; in CI
(CI=true) it fails, since .ci/run installs both (scripts/ci_services.sh, scripts/bootstrap.sh).
"""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from gbml_ext.runner import load_config, train
from test_docs_site import IN_CI, _wait, browser  # noqa: F401

TINY = ["data.source=logistic-regression", "data.options={dim=4, n_support=8, n_query=16}",
        "train.iterations=6", "train.meta_batch=2", "train.lr=0.01", "train.log_every=1",
        "evaluation.tasks=4", "train.plot=false", "device=cpu", "logging.backends=tensorboard"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    try:
        import tensorboard  # noqa: F401
    except ImportError as error:
        if IN_CI:
            pytest.fail(f"tensorboard does not import in CI: {error}")
        pytest.skip(f"tensorboard is not installed ({error}): pip install 'gbml_ext[tensorboard]'")
    out = tmp_path_factory.mktemp("tb") / "run"
    train(load_config(None, TINY + [f"output_dir='{out}'"]), progress=False)
    return out


@pytest.fixture(scope="module")
def board(run_dir) -> Iterator[str]:
    """`tensorboard --logdir RUN` on a free port, once it answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(run_dir), "--host",
         "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
    try:
        while True:
            try:
                runs = json.loads(urllib.request.urlopen(url + "/data/runs", timeout=5).read())
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"tensorboard did not start: {process.stderr.read()[-2000:]!r}"
                                if process.poll() is not None else "tensorboard did not answer")
                time.sleep(0.5)
        assert runs == ["tensorboard"]
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_scalars_show_the_runs_train_loss(browser, board, run_dir) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(board + "/#timeseries")
    def filter_tags(d) -> bool:  # typed again from empty if the page redrew the box meanwhile
        boxes = [e for e in d.find_elements(By.CSS_SELECTOR, "input")
                 if e.is_displayed() and "Filter tags" in (e.get_attribute("placeholder") or "")]
        if boxes:
            boxes[0].clear()
            boxes[0].send_keys("^train/loss$", Keys.ESCAPE)
        return bool(boxes)

    _wait(browser, filter_tags)
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = [r["loss"] for r in lines if r["split"] == "train"][-1]

    def card_text(d):  # found again on each try: the page redraws its cards
        tags = [e for e in d.find_elements(By.CSS_SELECTOR, "tb-truncated-path[title='train/loss']")
                if e.is_displayed()]
        text = tags[0].find_element(By.XPATH, "ancestor::scalar-card[1]").text if tags else ""
        return text if re.search(r"\d+\.\d+", text) else None

    text = _wait(browser, card_text)
    shown = [float(x) for x in re.findall(r"\d+\.\d+", text)]
    assert "tensorboard" in text  # the run's row in the card's table
    assert any(abs(value - last) <= 1e-3 * max(1.0, abs(last)) for value in shown), (text, last)
