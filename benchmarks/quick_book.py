"""The quick book's time against its budget: each chapter's quick profile, executed as ``make book``
executes it, on this machine.

The budget: each chapter's quick profile within 3 minutes on a 2-core CPU, the four together within
10 (CI executes them). Each chapter runs through ``python -m lib.run`` into a fresh temporary results
folder (``$BOOK_RESULTS_ROOT``), so nothing committed changes and no record is reused. The table gives
each chapter's wall time from the command's start to its end (kernel start, data, every training,
the figures and the page), the time its units trained, its three slowest units and cells, and whether the
decoded-JPEG cache under ``data/cache/`` existed before the chapter ran (a fresh clone decodes
CIFAR-10 and Tiny-ImageNet once; later runs read the cache).

Run: ``python benchmarks/quick_book.py`` (about 10 minutes), or name chapters:
``python benchmarks/quick_book.py chapters/02_*.py``. Not a test: the numbers depend on the machine,
whose speed here varies by about a third within a day.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_BUDGET_S, BOOK_BUDGET_S = 180.0, 600.0


def unit_times(results: Path) -> dict[str, float]:
    """Each unit record's training wall time, by unit name."""
    times = {}
    for record in sorted(results.glob("quick/*/units/*.pt")):
        r = torch.load(record, map_location="cpu", weights_only=True)
        times[r.get("unit", record.stem)] = float(r.get("wall_time_s", 0.0))
    return times


def slowest_cells(notebook: Path, n: int = 3) -> str:
    """The ``n`` cells that took longest in an executed notebook (papermill's timings), as text."""
    cells = json.loads(notebook.read_text())["cells"]
    timed = [(c["metadata"].get("papermill", {}).get("duration") or 0.0, i, "".join(c["source"]).split("\n")[0][:40]) for i, c in enumerate(cells)]
    return ", ".join(f"cell {i} ({first}…) {d:.0f}" for d, i, first in sorted(timed, reverse=True)[:n])


def run_chapter(chapter: Path) -> tuple[float, dict[str, float], bool, str]:
    warm = any((ROOT / "data" / "cache").glob("*.pt"))
    with tempfile.TemporaryDirectory(prefix="quick-book-") as tmp:
        env = {**os.environ, "BOOK_RESULTS_ROOT": tmp}
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "lib.run", str(chapter), "--profile", "quick"], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{chapter.name} failed (exit {done.returncode}): {(done.stdout + done.stderr).strip().splitlines()[-2:]}")
        return wall, unit_times(Path(tmp)), warm, slowest_cells(Path(tmp) / "quick" / chapter.stem / f"{chapter.stem}.ipynb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="chapter .py files (default: all four)")
    args = parser.parse_args()
    chapters = args.chapters or sorted((ROOT / "chapters").glob("[0-9]*.py"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    print(f"| chapter | wall (s) | units trained (s) | units | slowest units (s) | slowest cells (s) | JPEG cache warm | within {CHAPTER_BUDGET_S:.0f} s |")
    print("|---|---|---|---|---|---|---|---|")
    total = 0.0
    failed = []
    for chapter in chapters:
        try:
            wall, units, warm, cells = run_chapter(chapter.resolve())
        except RuntimeError as err:  # the others are still measured
            failed.append(str(err))
            print(f"| {chapter.stem} | failed | | | | | | NO |", flush=True)
            continue
        total += wall
        slowest = ", ".join(f"{name} {s:.0f}" for name, s in sorted(units.items(), key=lambda kv: -kv[1])[:3])
        print(f"| {chapter.stem} | {wall:.0f} | {sum(units.values()):.0f} | {len(units)} | {slowest} | {cells} | {'yes' if warm else 'no'} | "
              f"{'yes' if wall <= CHAPTER_BUDGET_S else 'NO'} |", flush=True)
    for message in failed:
        print(message)
    if failed:
        raise SystemExit(1)
    if len(chapters) > 1:
        print(f"\nall {len(chapters)} chapters: {total:.0f} s (budget {BOOK_BUDGET_S:.0f} s: {'within' if total <= BOOK_BUDGET_S else 'OVER'})")


if __name__ == "__main__":
    main()
