"""Shared fixtures. Tests that read real data need BOOK_DATA_DIR (or the files under data/)."""

import pytest

from lib.data import load_mnist


@pytest.fixture(scope="session")
def mnist():
    return load_mnist()
