"""Where a result comes from: the machine, the libraries, the commit of the code."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

from .training import code_digest

THREADS_ENV = "BOOK_THREADS"  # how many CPU threads a chapter run uses, whatever its profile
QUICK_THREADS = 2  # the quick profile's: its checked outputs and regression guard must agree on every machine
GIT_ENV = "BOOK_GIT_COMMIT"  # the commit a run card names when the tree is not a git checkout (a copied tree on a GPU machine)
ROOT = Path(__file__).resolve().parents[1]


def pin_threads(profile: str) -> int:
    """Fix the CPU threads of a chapter run and return how many: $BOOK_THREADS if set, else 2 for the
    quick profile (a CPU's reductions, and so the last digits of a result, depend on the thread
    count), else all that torch would use. The run card records the number."""
    named = os.environ.get(THREADS_ENV)
    if named is not None:
        if not named.isdigit() or int(named) < 1:
            raise ValueError(f"${THREADS_ENV}={named!r} must be a whole number of threads, at least 1 (or unset)")
        threads = int(named)
    else:
        threads = QUICK_THREADS if profile == "quick" else torch.get_num_threads()
    torch.set_num_threads(threads)
    return threads


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def this_machine() -> str:
    """The accelerator a unit trains on when one is there, else the CPU (for a unit's record)."""
    return device_description(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def library_versions(experiment: str | None = None) -> dict[str, str]:
    import numpy
    import sklearn
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "lib": code_digest(experiment),  # the chapter's experiment module and every lib file it imports
        "git": git_commit(),
    }


def git_commit(root: Path = ROOT) -> str:
    """The project's commit, with "+changes" when ``lib/`` or ``chapters/`` differ from it; outside a
    git checkout, the commit named by $BOOK_GIT_COMMIT (with "(from BOOK_GIT_COMMIT)")."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "lib", "chapters"], cwd=root, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        named = os.environ.get(GIT_ENV)
        return f"{named} (from {GIT_ENV})" if named else f"unknown (not a git checkout; set {GIT_ENV})"
    return head + ("+changes" if dirty else "")
