"""The documentation site: built with `mkdocs build --strict`, served over HTTP on 127.0.0.1,
and read in a real headless browser (Debian's chromium and chromium-driver, via selenium).
Every page is checked for what markdown gets wrong unseen: a list run into the paragraph above
it (a literal "- "), a `<name>` placeholder eaten as an HTML tag ("runs//seed"), an empty
meaning in a table, a key broken inside a word, a row made tall by a cell scrolled out of view.

Outside CI a missing browser skips the browser tests with a one-line reason; in CI
(CI=true) it fails them, since .ci/run installs it (scripts/ci_services.sh).
"""
from __future__ import annotations

import dataclasses
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
from typing import Dict, List

import pytest

from gbml_ext.runner import schema
from scripts.docs_config_reference import SECTIONS, render
from scripts.docs_griffe import run_on_list_items, separate_lists
from scripts.docs_placeholders import escape_placeholders

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
    """`condition(driver)` once it is truthy, retried while the page re-renders the elements it
    reads (a stale element is a page still drawing, not a failure)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, WAIT_S,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition)


@pytest.mark.slow  # builds the site (and reads it in the browser)
def test_home_page_renders(browser, server):
    from selenium.webdriver.common.by import By
    browser.get(server + "/")
    assert "gbml_ext" in browser.title
    heading = browser.find_element(By.CSS_SELECTOR, "article h1")
    assert heading.text.strip() == "gbml_ext"
    assert browser.find_element(By.CSS_SELECTOR, "article img").get_attribute("naturalWidth") != "0"


@pytest.mark.slow  # builds the site (and reads it in the browser)
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


@pytest.mark.slow  # builds the site (and reads it in the browser)
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


@pytest.mark.slow  # builds the site (and reads it in the browser)
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


def _pages(site: Path) -> List[str]:
    """Every page of the site, as paths from its root ("" for the home page)."""
    return sorted("" if p.parent == site else f"{p.parent.relative_to(site).as_posix()}/"
                  for p in site.rglob("index.html"))


def test_the_markdown_pages_put_a_blank_line_before_every_list():
    assert run_on_list_items("Some settings:\n- one\n- two\n") == [(2, "- one")]
    for page in sorted((REPO / "docs").rglob("*.md")):
        assert run_on_list_items(page.read_text()) == [], page


def test_a_docstring_list_gets_its_blank_line():
    from gbml_ext.nn import DeepLinear
    doc = separate_lists(DeepLinear.__doc__ or "")
    assert re.search(r"stand in for:\n\n +- \"default\"", doc), doc
    assert run_on_list_items(doc) == []


def test_placeholders_are_escaped_and_markup_is_kept():
    assert escape_placeholders('<p>runs/<name>/seed<seed> <UTC time> <a href="x">a</a><br>'
                               '<autoref id="y" /></p>') == (
        '<p>runs/&lt;name&gt;/seed&lt;seed&gt; &lt;UTC time&gt; <a href="x">a</a><br>'
        '<autoref id="y" /></p>')


def test_every_config_key_has_a_meaning_and_its_allowed_values():
    rows = [line.split(" | ") for line in render().splitlines()
            if line.startswith("| <code>")]
    keys = sum(len([f for f in dataclasses.fields(cls)
                    if not str(f.type).endswith("Config")]) for _, cls in SECTIONS)
    assert len(rows) == keys > 40
    for row in rows:
        assert row[-1].strip(" |"), f"{row[0]} has no meaning"
    source = next(row for row in rows if "data.<wbr>source" in row[0])
    for name in ("linear-regression", "logistic-regression", "omniglot", "mini-imagenet",
                 "cifar-fs", "fc100"):
        assert f"`{name}`" in source[3], source[3]
    assert schema.Config.__doc__ and "runs/<name>/seed<seed>" in schema.Config.__doc__


@pytest.mark.slow  # builds the site (and reads it in the browser)
def test_the_built_pages_keep_lists_and_placeholders(site):
    for page in _pages(site):
        text = (site / page / "index.html").read_text()
        for paragraph in re.findall(r"<p>(.*?)</p>", text, flags=re.S):
            assert not re.search(r"(^|\n)[ \t]*(?:[-*+]|\d+\.) ", paragraph), (page, paragraph)
    for page in ("config", "api/runner"):
        text = (site / page / "index.html").read_text()
        assert "runs/&lt;name&gt;/seed&lt;seed&gt;" in text, page


# Reads one page in the browser: what each check found, as lists of short descriptions.
CHECK_PAGE = r"""
const art = document.querySelector('article');
const out = {runOn: [], slashes: [], emptyMeaning: [], midWord: [], hiddenTall: []};
const short = t => t.replace(/\s+/g, ' ').trim().slice(0, 90);
const texts = document.createTreeWalker(art, NodeFilter.SHOW_TEXT);
for (let node = texts.nextNode(); node; node = texts.nextNode()) {
  if (node.parentElement.closest('pre, code')) continue;
  if (/\n[ \t]*(?:[-*+]|\d+\.) (\S|$)/.test(node.data)) out.runOn.push(short(node.data));
}
for (const el of art.querySelectorAll('p, li, td, th, dd, dt, h1, h2, h3, h4')) {
  const clone = el.cloneNode(true);
  clone.querySelectorAll('code, pre, p, li, ul, ol, table').forEach(e => e.remove());
  if (/(?<![:\/])\/\/(?!\/)/.test(clone.textContent)) out.slashes.push(short(el.textContent));
}
for (const table of art.querySelectorAll('table')) {
  const heads = [...table.querySelectorAll('thead th')].map(th => th.textContent.trim());
  const at = heads.indexOf('meaning');
  if (at < 0) continue;
  for (const tr of table.querySelectorAll('tbody tr')) {
    const cell = tr.cells[at];
    if (!cell || !cell.textContent.trim()) out.emptyMeaning.push(short(tr.textContent));
  }
}
function breaksInsideAWord(el) {
  let last = null;
  const walk = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  for (let node = walk.nextNode(); node; node = walk.nextNode()) {
    for (let i = 0; i < node.length; i++) {
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const box = range.getBoundingClientRect();
      const ch = node.data[i];
      if (box.height === 0) { last = null; continue; }
      if (last && box.top > last.top + 2 && /\w/.test(last.ch) && /\w/.test(ch)) return true;
      last = {ch: ch, top: box.top};
    }
  }
  return false;
}
for (const code of art.querySelectorAll('td:first-child code, .config-reference td code')) {
  if (breaksInsideAWord(code)) out.midWord.push(code.textContent);
}
for (const wrap of art.querySelectorAll('.md-typeset__scrollwrap')) {
  const right = wrap.getBoundingClientRect().right;
  for (const tr of wrap.querySelectorAll('tr')) {
    let seen = 0, hidden = 0;
    for (const cell of tr.cells) {
      const range = document.createRange();
      range.selectNodeContents(cell);
      const box = range.getBoundingClientRect();
      const place = cell.getBoundingClientRect();
      if ((place.left + place.right) / 2 > right) hidden = Math.max(hidden, box.height);
      else seen = Math.max(seen, box.height);
    }
    if (hidden > 2 * seen + 20) out.hiddenTall.push(short(tr.textContent));
  }
}
return out;
"""


@pytest.mark.slow  # builds the site (and reads it in the browser)
def test_every_page_renders_its_lists_placeholders_tables_and_keys(browser, server, site):
    found: Dict[str, Dict[str, List[str]]] = {}
    for page in _pages(site):
        browser.get(f"{server}/{page}")
        problems = {kind: items for kind, items in browser.execute_script(CHECK_PAGE).items()
                    if items}
        if problems:
            found[page or "/"] = problems
    assert found == {}, "\n".join(f"{page}: {problems}" for page, problems in found.items())


@pytest.mark.slow  # builds the site (and reads it in the browser)
def test_the_config_reference_fits_the_page(browser, server):
    browser.get(f"{server}/config/")
    wide = browser.execute_script(
        "return [...document.querySelectorAll('.config-reference .md-typeset__scrollwrap')]"
        ".filter(w => w.scrollWidth > w.clientWidth + 1).length")
    tables = browser.execute_script(
        "return document.querySelectorAll('.config-reference table').length")
    assert tables == len(SECTIONS) and wide == 0
