"""The documentation site: built with `mkdocs build --strict`, served over HTTP on 127.0.0.1,
and read in a real headless browser (Debian's chromium and chromium-driver, via selenium).

Outside CI a missing browser skips the browser tests with a one-line reason; in CI
(CI=true) it fails them, since .ci/run installs it (scripts/ci_services.sh).
"""
from __future__ import annotations

import functools
import html
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"
WAIT_S = 30


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built from this checkout into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                            str(out)], cwd=REPO, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stderr[-4000:]}"
    return out


@pytest.fixture(scope="module")
def server(site):
    """The site over HTTP (search needs it: its index is fetched, not read from file://)."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"headless browser unavailable in CI: {reason}")
    pytest.skip(f"headless browser unavailable ({reason}); scripts/ci_services.sh installs it")


@pytest.fixture(scope="module")
def browser():
    """Headless chromium driven by the system's chromedriver (never downloaded)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        _unavailable(f"selenium does not import: {error}")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        _unavailable("chromium or chromedriver is not on PATH")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except Exception as error:  # selenium raises several kinds here
        _unavailable(f"chromium did not start: {str(error).splitlines()[0]}")
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def _wait(driver, condition):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, WAIT_S).until(condition)


def test_home_page_renders(browser, server):
    from selenium.webdriver.common.by import By
    browser.get(server + "/")
    assert "gbml_ext" in browser.title
    heading = browser.find_element(By.CSS_SELECTOR, "article h1")
    assert heading.text.strip() == "gbml_ext"
    assert browser.find_element(By.CSS_SELECTOR, "article img").get_attribute("naturalWidth") != "0"


def test_navigation_reaches_the_kronecker_transform_api(browser, server):
    from selenium.webdriver.common.by import By
    browser.get(server + "/")
    link = _wait(browser, lambda d: next(
        (a for a in d.find_elements(By.CSS_SELECTOR, "nav.md-nav--primary a.md-nav__link")
         if a.is_displayed() and a.text.strip() == "gbml_ext.optim"), None))
    link.click()
    _wait(browser, lambda d: d.current_url.rstrip("/").endswith("/api/optim"))
    entry = browser.find_element(By.ID, "gbml_ext.optim.KroneckerTransform")
    assert entry.is_displayed() and "KroneckerTransform" in entry.text


def test_search_finds_kronecker_transform(browser, server):
    from selenium.webdriver.common.by import By
    browser.get(server + "/")
    # The search box, in the header on a wide window (behind its icon on a narrow one).
    for opener in browser.find_elements(By.CSS_SELECTOR, "label[for='__search']"):
        if opener.is_displayed() and not browser.find_element(
                By.CSS_SELECTOR, "input.md-search__input").is_displayed():
            opener.click()
            break
    box = _wait(browser, lambda d: next(
        (e for e in d.find_elements(By.CSS_SELECTOR, "input.md-search__input")
         if e.is_displayed()), None))
    box.click()
    box.send_keys("KroneckerTransform")
    hits = _wait(browser, lambda d: [e for e in d.find_elements(
        By.CSS_SELECTOR, ".md-search-result__item") if "KroneckerTransform" in e.text])
    assert any("/api/optim/" in (a.get_attribute("href") or "")
               for hit in hits for a in hit.find_elements(By.TAG_NAME, "a"))


def test_config_reference_is_generated_at_build_time(site):
    page = html.unescape(re.sub(r"<[^>]+>", "", (site / "config" / "index.html").read_text()))
    assert "config-reference" not in page
    for key, rule in (("algorithm.inner_lr", "with --allow-change"),
                      ("train.iterations", "may grow"), ("seed", "no"),
                      ("train.log_every", "yes"), ("data.sampler", "no")):
        assert re.search(rf"\n{re.escape(key)}\n.*?\n{re.escape(rule)}\n", page, flags=re.S), key
    assert re.search(r"\ndata\.sampler\n[^\n]*\n'tensor'\ntensor \| learn2learn\n", page)


@pytest.mark.parametrize("page", ["getting-started.md", "guides/algorithms.md",
                                  "guides/kfo-linnet.md", "guides/batched.md"])
def test_python_examples_in_the_guides_run(page):
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / page).read_text(), flags=re.S)
    assert blocks, f"docs/{page} lost its example"
    for block in blocks:
        exec(compile(block, page, "exec"), {})
