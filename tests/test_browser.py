"""The built book, as a reader's browser shows it: headless Chromium opens every page of a fresh
``jupyter-book build -W`` (warnings are errors) and checks that each page loads without a console
error, that the scorecard and every chapter's figures are there, that equations are typeset by the
MathJax shipped with the book, and that no request leaves the machine.

Chromium comes from Debian (``apt-get install chromium``; ``.ci/run`` installs it when missing).
Without it the test is skipped, unless ``$BOOK_REQUIRE_BROWSER`` is set, as CI sets it.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from lib.book import build

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = "https://github.com/example/beyond-softmax-book"  # a public address, as Actions or $BOOK_REPOSITORY_URL give one
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHAPTERS = sorted(p.stem for p in (ROOT / "chapters").glob("[0-9]*.py"))
PAGES = ["index", "scorecard", "reference", "bibliography", *(f"chapters/{c}" for c in CHAPTERS)]

if CHROMIUM is None:
    if os.environ.get("BOOK_REQUIRE_BROWSER"):
        pytest.fail("Chromium is missing and $BOOK_REQUIRE_BROWSER is set: apt-get install chromium", pytrace=False)
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    """A fresh build of the book, from the committed executed notebooks, with warnings as errors, for a
    book whose repository is public at ``REPOSITORY``."""
    out = tmp_path_factory.mktemp("book")
    subprocess.run([sys.executable, "-m", "lib.scorecard"], cwd=ROOT, check=True, timeout=300)
    done = build(out, "committed", url=REPOSITORY)
    assert done.returncode == 0, f"the book does not build with -W:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
    return out / "_build" / "html"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def visit(browser, page_file: Path) -> dict:
    """Load a page; return its console errors, the requests that would have left the machine (blocked),
    and the page itself for further checks."""
    context = browser.new_context()
    page = context.new_page()
    errors, outside = [], []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    def guard(route):
        if urlparse(route.request.url).scheme in ("file", "data", "blob", "about"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.goto(page_file.as_uri(), wait_until="load")
    page.wait_for_timeout(300)
    return {"page": page, "context": context, "errors": errors, "outside": outside}


@pytest.mark.parametrize("name", PAGES)
def test_every_page_loads_offline_without_errors(book, browser, name):
    page_file = book / f"{name}.html"
    assert page_file.is_file(), f"{name}.html is missing from the build"
    seen = visit(browser, page_file)
    try:
        assert not seen["errors"], f"console errors on {name}: {seen['errors']}"
        assert not seen["outside"], f"{name} asks for resources off the machine: {seen['outside']}"
        if name.startswith("chapters/"):
            images = seen["page"].eval_on_selector_all("img", "els => els.filter(e => e.src.includes('.png')).map(e => e.naturalWidth)")
            assert images and all(w > 0 for w in images), f"{name}: figures missing or broken ({images})"
    finally:
        seen["context"].close()


def test_the_front_page_shows_the_scorecard(book, browser):
    seen = visit(browser, book / "index.html")
    try:
        page = seen["page"]
        page.wait_for_function("() => document.querySelectorAll('main table').length >= 2", timeout=30_000)  # a loaded machine is slow
        text = page.inner_text("main")
        assert "profile" in text and any(v in text for v in ("reproduced", "untested", "inconclusive")), f"no scorecard on the front page: {text[:800]}"
        assert page.locator("main table").count() >= 2  # the chapters and the scorecard
    finally:
        seen["context"].close()


def test_equations_are_typeset_by_the_shipped_mathjax(book, browser):
    page_file = book / f"chapters/{CHAPTERS[0]}.html"
    assert "mathjax" in page_file.read_text().lower()
    seen = visit(browser, page_file)
    try:
        page = seen["page"]
        page.wait_for_function("() => document.querySelectorAll('mjx-container').length > 0", timeout=30_000)
        sources = page.eval_on_selector_all("script[src*='mathjax' i], script[src*='tex-' i]", "els => els.map(e => e.src)")
        assert sources and all(s.startswith("file:") for s in sources), f"MathJax does not come with the book: {sources}"
        assert not seen["outside"]
    finally:
        seen["context"].close()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_pages_offer_launch_repository_and_download_buttons(book, browser, chapter):
    seen = visit(browser, book / "chapters" / f"{chapter}.html")
    try:
        links = set(seen["page"].eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))"))
    finally:
        seen["context"].close()
    owner_name = REPOSITORY.removeprefix("https://github.com/")
    assert f"https://colab.research.google.com/github/{owner_name}/blob/main/chapters/{chapter}.ipynb" in links
    assert f"https://mybinder.org/v2/gh/{owner_name}/main?urlpath=tree/chapters/{chapter}.ipynb" in links
    assert REPOSITORY in links and any(str(link).startswith(f"{REPOSITORY}/issues/new") for link in links)
    download = f"../_sources/chapters/{chapter}.ipynb"
    assert download in links
    stamped = (book / "_sources" / "chapters" / f"{chapter}.ipynb").read_text()
    assert f'\\"BOOK_REPOSITORY\\", \\"{REPOSITORY}\\"' in stamped  # the download names the book it comes from
