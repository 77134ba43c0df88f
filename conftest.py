"""Set-up shared by the unit tests and nbval's runs of the chapters.

A test run neither reads nor rewrites the book's own results, unit records and checkpoints
(``results/``): every chapter executed during the session (nbval's kernels inherit the environment)
writes under a fresh temporary ``$BOOK_RESULTS_ROOT`` instead, and so trains from scratch even when
``make book`` has left records behind. The regression guard (``tests/test_regression_guard.py``)
runs after the notebooks and compares what they produced with the committed notebooks.
"""

import os
import shutil
import tempfile
from pathlib import Path

RESULTS_ENV = "BOOK_RESULTS_ROOT"  # lib.reporting.RESULTS_ENV (not imported: collecting must stay light)
GUARD_MODULE = "test_regression_guard.py"


def pytest_configure(config):
    """``config.results_root``: where this session's chapter runs write (the guard reads it there: the
    unit tests' fixture in tests/conftest.py hides the variable from every test)."""
    config.book_results_root = None
    if not os.environ.get(RESULTS_ENV):
        config.book_results_root = tempfile.mkdtemp(prefix="book-test-results-")
        os.environ[RESULTS_ENV] = config.book_results_root
    config.results_root = os.environ[RESULTS_ENV]


def pytest_unconfigure(config):
    if getattr(config, "book_results_root", None):
        shutil.rmtree(config.book_results_root, ignore_errors=True)
        os.environ.pop(RESULTS_ENV, None)


def pytest_collection_modifyitems(session, config, items):
    """The guard goes after every notebook, and learns which chapters nbval executes this session."""
    config.book_notebooks = {Path(str(item.fspath)).stem for item in items if str(item.fspath).endswith(".ipynb")}
    items.sort(key=lambda item: Path(str(item.fspath)).name == GUARD_MODULE)  # stable: only moves the guard to the end
