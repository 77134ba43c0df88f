"""One chapter's run, as the benchmarks make it: ``python -m lib.run`` in a fresh process, into a
temporary results folder (``$BOOK_RESULTS_ROOT``), so that nothing committed changes and no record is
reused; what it saved is read back even when the run failed (a failed code-health check stops a run
only after its results are saved)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lib.run import experiment_module  # noqa: E402
from lib.keys import code_digest  # noqa: E402

MACHINE_ENV = ("BOOK_THREADS", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")  # set only by a run's `env`


@dataclass(frozen=True)
class ChapterRun:
    returncode: int
    wall_s: float
    saved: dict | None  # results.json, when the run got that far
    tail: str  # the last lines of its output

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def chapter_digest(chapter: Path) -> str:
    """What a chapter's quick run depends on: its code cells (its prose aside) and its experiment's library code."""
    import jupytext

    experiment = experiment_module(chapter)
    lib = code_digest(experiment.__name__.removeprefix("lib.")) if experiment else code_digest()
    code = "\n".join(c.source for c in jupytext.read(chapter).cells if c.cell_type == "code")
    return hashlib.sha256((code + lib).encode()).hexdigest()[:16]


def run_chapter(chapter: Path, *, env: dict | None = None, args: tuple[str, ...] = ()) -> ChapterRun:
    """``python -m lib.run chapter *args`` with ``env`` added to this machine's environment."""
    with tempfile.TemporaryDirectory(prefix="book-bench-") as tmp:
        full_env = {k: v for k, v in os.environ.items() if k not in MACHINE_ENV}
        full_env.update(env or {}, BOOK_RESULTS_ROOT=tmp)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "lib.run", str(chapter), *args], cwd=ROOT, env=full_env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        path = Path(tmp) / "quick" / chapter.stem / "results.json"
        saved = json.loads(path.read_text()) if path.is_file() else None
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-4:])
    return ChapterRun(done.returncode, round(wall, 1), saved, tail)
