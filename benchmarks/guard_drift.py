"""How far each quick-profile claim moves between machines, measured on one machine.

Another CPU runs the same code with other kernels: another instruction set (AVX2 instead of
AVX-512), another library path (oneDNN, MKL and ATen each pick their kernels by the CPU), another
thread count. The sums round differently, and a training amplifies that. This script emulates such
machines here by capping the instruction sets that oneDNN, ATen and MKL may use, and by changing the
thread count, and runs each chapter's quick profile (``python -m lib.run``, into a temporary results
folder) once per perturbation:

========================  ==============================================================================
``native``                this machine as it is, 2 threads (the quick profile's)
``one-thread``            1 thread (``BOOK_THREADS=1``): other reduction orders
``avx2``                  an AVX2-only machine: ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
                          MKL_ENABLE_INSTRUCTIONS=AVX2``
``avx512-no-bf16``        an AVX-512 machine without bfloat16 or VNNI (Skylake-SP, a common CI
                          runner): ``ONEDNN_MAX_CPU_ISA=AVX512_CORE``
``avx2-mkl-avx512``       oneDNN and ATen capped at AVX2, MKL not: the emulation ``make test`` is
                          checked under (``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``)
``avx2-one-thread``       an AVX2-only machine, 1 thread
========================  ==============================================================================

For every claim the regression guard compares (timings aside) it records the mean over the seeds
under each perturbation (accuracy points as fractions of 1, the guard's scale); the claim's **drift** is the largest difference between two of those means.
The result goes to ``tests/guard_drift.json``, which the guard (``tests/test_regression_guard.py``)
reads: no claim's tolerance is below its drift times the guard's margin.

Run: ``python benchmarks/guard_drift.py`` (all chapters, about 50 minutes on 2 cores), or name
chapters: ``python benchmarks/guard_drift.py chapters/03_*.py``. A chapter's runs are kept in the
json with a digest of its code; a run whose chapter or library code has changed since is made again,
the others are reused (``--fresh`` makes them all again). ``--this-machine`` adds one run of each named
chapter, natively on the machine at hand, to the runs measured on another: a second real CPU (another
vendor's kernels) can move a claim further than the emulations do. Not a test: it takes too long, and its
numbers belong to the code it measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from chapter_runs import ROOT, chapter_digest, run_chapter

from lib.provenance import cpu_description, git_commit
from lib.reporting import comparable_values

DRIFT_FILE = ROOT / "tests" / "guard_drift.json"


@dataclass(frozen=True)
class Perturbation:
    """A machine emulated here: environment variables set for the chapter's process."""

    name: str
    env: dict = field(default_factory=dict)
    what: str = ""


PERTURBATIONS = (
    Perturbation("native", {}, "this machine, 2 threads"),
    Perturbation("one-thread", {"BOOK_THREADS": "1"}, "1 thread"),
    Perturbation("avx2", {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
                 "an AVX2-only CPU (oneDNN, ATen and MKL capped)"),
    Perturbation("avx512-no-bf16", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, "AVX-512 without bfloat16 or VNNI (oneDNN capped)"),
    Perturbation("avx2-mkl-avx512", {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
                 "oneDNN and ATen capped at AVX2, MKL not (the emulation `make test` is checked under)"),
    Perturbation("avx2-one-thread", {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                                     "BOOK_THREADS": "1"}, "an AVX2-only CPU, 1 thread"),
)


def run_quick(chapter: Path, perturbation: Perturbation) -> tuple[dict[str, list[float]], float]:
    """The chapter's quick profile under ``perturbation``: each guarded claim's values, and the wall time."""
    run = run_chapter(chapter, env=perturbation.env)
    if run.saved is None:
        raise RuntimeError(f"{chapter.name} under {perturbation.name} failed before saving its results:\n{run.tail}")
    return {c["id"]: comparable_values(c) for c in run.saved["claims"] if not c.get("timing") and c["ours"]}, run.wall_s


def drift_of(runs: dict[str, dict[str, list[float]]]) -> dict[str, float]:
    """Each claim's drift: the largest difference between the means of two perturbations' runs."""
    ids = sorted({id for claims in runs.values() for id in claims})
    drift = {}
    for id in ids:
        means = [statistics.fmean(claims[id]) for claims in runs.values() if id in claims]
        drift[id] = max(means) - min(means)
    return drift


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="chapter .py files (default: all four)")
    parser.add_argument("--fresh", action="store_true", help="run every perturbation again, even where the code has not changed")
    parser.add_argument("--this-machine", action="store_true",
                        help="add this machine's native run to the chapters' entries, beside the perturbations measured on another: "
                             "a real machine's drift, which emulation can underestimate")
    args = parser.parse_args()
    chapters = [c.resolve() for c in (args.chapters or sorted((ROOT / "chapters").glob("[0-9]*.py")))]
    table = json.loads(DRIFT_FILE.read_text()) if DRIFT_FILE.is_file() else {"chapters": {}}
    table["perturbations"] = {p.name: {"env": p.env, "what": p.what} for p in PERTURBATIONS}
    for chapter in chapters:
        if args.this_machine:
            add_this_machine(table, chapter)
            continue
        digest = chapter_digest(chapter)
        entry = table["chapters"].get(chapter.stem, {})
        if entry.get("digest") != digest or args.fresh:
            entry = {"digest": digest, "runs": {}, "wall_s": {}}
        for p in PERTURBATIONS:
            if p.name in entry["runs"]:
                print(f"{chapter.stem} / {p.name}: kept from {entry['measured']}", flush=True)
                continue
            claims, wall = run_quick(chapter, p)
            entry["runs"][p.name], entry["wall_s"][p.name] = claims, round(wall, 1)
            entry.update(measured=datetime.now(timezone.utc).isoformat(timespec="seconds"), commit=git_commit(),
                         machine=cpu_description(), python=platform.python_version())
            entry["drift"] = drift_of(entry["runs"])
            table["chapters"][chapter.stem] = entry
            DRIFT_FILE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")  # after every run: an interruption loses one
            print(f"{chapter.stem} / {p.name}: {wall:.0f} s", flush=True)
    print_table(table, [c.stem for c in chapters])


def add_this_machine(table: dict, chapter: Path) -> None:
    """Run the chapter's quick profile natively here and keep it as one more run of its entry, named
    by this machine (``native on <cpu>``): the drift then spans a second real CPU as well as the
    emulated ones."""
    entry = table["chapters"].get(chapter.stem)
    if entry is None:
        raise SystemExit(f"{chapter.stem} has no entry in {DRIFT_FILE.name} yet: run python benchmarks/guard_drift.py {chapter} first")
    name = f"native on {cpu_description()}"
    claims, wall = run_quick(chapter, PERTURBATIONS[0])
    entry["runs"][name], entry["wall_s"][name] = claims, round(wall, 1)
    entry["drift"] = drift_of(entry["runs"])
    entry.setdefault("other_machines", {})[name] = {"measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                                    "commit": git_commit(), "digest": chapter_digest(chapter),
                                                    "python": platform.python_version()}
    DRIFT_FILE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"{chapter.stem} / {name}: {wall:.0f} s", flush=True)


def print_table(table: dict, chapters: list[str]) -> None:
    names = [p.name for p in PERTURBATIONS]
    names += sorted({n for stem in chapters for n in table["chapters"][stem]["runs"]} - set(names))  # runs on other machines
    print(f"\n| claim | {' | '.join(names)} | drift |\n|---|{'---|' * len(names)}---|")
    for stem in chapters:
        entry = table["chapters"][stem]
        for id, drift in entry["drift"].items():
            means = [f"{statistics.fmean(entry['runs'][n][id]):.4f}" if id in entry["runs"].get(n, {}) else "—" for n in names]
            print(f"| {id} | {' | '.join(means)} | {drift:.4f} |")


if __name__ == "__main__":
    main()
