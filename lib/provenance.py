"""Where a result comes from: the machine, the libraries, the commit of the code."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

from .training import code_digest

GIT_ENV = "BOOK_GIT_COMMIT"  # the commit a run card names when the tree is not a git checkout (a copied tree on a GPU machine)
ROOT = Path(__file__).resolve().parents[1]


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
