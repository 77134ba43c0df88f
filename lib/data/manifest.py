"""Where the data files are, and proof that they are the right ones.

Look-up order for every dataset (see data/README.md):

1. the folder named by the environment variable ``BOOK_DATA_DIR``;
2. the project's own ``data/`` folder (where torchvision downloads land);
3. torchvision's ``download=True`` into ``data/`` (needs the internet).

Every file is checked against ``data/manifest.tsv`` before it is read. A
missing or altered file raises :class:`DataError` naming the file, the
digest expected and how to get a good copy; nothing is used unverified.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_ENV = "BOOK_DATA_DIR"
MANIFEST = PROJECT_ROOT / "data" / "manifest.tsv"
HOW_TO_GET = (
    "Set BOOK_DATA_DIR to a folder holding the offline copies (this machine: ../shared/data), "
    "or delete the bad file and run once with internet access so torchvision downloads it into data/. "
    "data/README.md lists every file and its source."
)


NETWORK_TIMEOUT_S = 20.0  # a download that cannot reach its server gives up after this long, instead of hanging


@contextlib.contextmanager
def network_timeout(seconds: float = NETWORK_TIMEOUT_S):
    """Every socket opened inside waits at most ``seconds`` for a connection or data (torchvision's
    dataset and weight downloads use urllib, which otherwise waits as long as the network lets it)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def fingerprint(files: dict[str, str]) -> str:
    """A short digest of a dataset's files by their checksums, not by where they lie: the same data
    on two machines has the same fingerprint. Part of the key of every training on that data."""
    return hashlib.sha256("".join(sorted(files.values())).encode()).hexdigest()[:16]


class DataError(RuntimeError):
    """A dataset is missing, incomplete or does not match its manifest entry."""


class DataUnavailable(DataError):
    """A dataset is in no data root and cannot be downloaded (offline): a chapter may mark its claims
    as not run. A copy that exists but is damaged raises plain :class:`DataError` instead."""


@dataclass(frozen=True)
class Entry:
    layout: str  # folder inside a data root, e.g. "mnist" or "MNIST/raw"
    file: str
    algorithm: str  # "sha256" or "md5"
    digest: str
    hashed: str  # "content" (uncompressed .gz) or "file"


def read_manifest(path: Path = MANIFEST) -> list[Entry]:
    entries = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            entries.append(Entry(*line.split("\t")))
    return entries


def data_roots() -> list[Path]:
    """The folders searched, in order: ``$BOOK_DATA_DIR`` (if set), then ``data/``."""
    roots = []
    env = os.environ.get(DATA_ENV)
    if env:
        root = Path(env).expanduser().resolve()
        if not root.is_dir():
            raise DataError(f"{DATA_ENV}={env!r} is not a folder. {HOW_TO_GET}")
        roots.append(root)
    roots.append(PROJECT_ROOT / "data")
    return roots


_verified: dict[tuple, str] = {}  # digests already computed in this process, by path and file identity


def file_digest(path: Path, algorithm: str, hashed: str) -> str:
    """Digest of a file, or of its uncompressed content when ``hashed == 'content'``.

    A digest is computed once per process and file version: any write to the file (even one that
    keeps its size and restores its modification time) changes its inode change time, and so the key.
    """
    stat = path.stat()
    key = (f"{path}:{algorithm}:{hashed}", stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key not in _verified:
        h = hashlib.new(algorithm)
        opener = gzip.open if hashed == "content" else open
        try:
            with opener(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except (OSError, EOFError) as err:  # a truncated or non-gzip file
            raise DataError(f"{path} cannot be read ({err}). {HOW_TO_GET}") from err
        _verified[key] = h.hexdigest()
    return _verified[key]


def verify_layout(root: Path, layout: str, manifest: list[Entry] | None = None) -> dict[str, str]:
    """Check every manifest file of ``layout`` under ``root``; return ``{path: 'algo:digest'}``."""
    entries = [e for e in (manifest or read_manifest()) if e.layout == layout]
    if not entries:
        raise DataError(f"data/manifest.tsv has no entry for layout {layout!r}")
    checked = {}
    for e in entries:
        path = root / e.layout / e.file
        if not path.is_file():
            raise DataError(
                f"missing data file {path} (expected {e.algorithm} {e.digest} of its {e.hashed}). {HOW_TO_GET}"
            )
        actual = file_digest(path, e.algorithm, e.hashed)
        if actual != e.digest:
            raise DataError(
                f"data file {path} does not match the manifest: expected {e.algorithm} {e.digest} "
                f"of its {e.hashed}, found {actual}. The file is corrupted or a different version. {HOW_TO_GET}"
            )
        checked[str(path)] = f"{e.algorithm}:{actual}"
    return checked


def find_layout(layouts: list[str]) -> tuple[Path, str] | None:
    """The first (root, layout) whose folder exists, searching roots in order, then layouts."""
    for layout in layouts:
        for root in data_roots():
            if (root / layout).is_dir():
                return root, layout
    return None
