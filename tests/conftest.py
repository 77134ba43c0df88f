"""Shared fixtures. Tests that read real data need BOOK_DATA_DIR (or the files under data/)."""

import pytest

from lib.data import load_mnist


@pytest.fixture(scope="session")
def mnist():
    return load_mnist()


@pytest.fixture(autouse=True)
def own_results_root(monkeypatch):
    """Unit tests name their own temporary results folders; only nbval's chapter runs follow the
    session's $BOOK_RESULTS_ROOT (set by the root conftest.py)."""
    monkeypatch.delenv("BOOK_RESULTS_ROOT", raising=False)
