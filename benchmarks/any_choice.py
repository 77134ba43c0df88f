"""Any valid choice runs: each chapter's quick profile over a grid of seeds and options, as a reader
might pick them, with its code-health checks and its wall time.

The grid, per chapter:

* **seeds**: the default options with seed sets covering seeds 0-19, each set as large as the
  chapter's default (so each run asks the work of the defaults);
* **choices**: other options a reader may pick, with the default seeds: for chapter 1 other class
  triples and added classes, for chapter 2 other held-out classes and picture pairs, for chapter 3
  other novel sub-classes and imbalance settings, for chapter 4 other latent sizes.

Each run is ``python -m lib.run`` into a temporary results folder (``benchmarks/chapter_runs.py``). It
records whether the run passed, its wall time against the quick profile's 3 minutes, and the value of
every code-health check (``ChapterResults.check``) for each seed. For each check, the summary gives
the worst value over the whole grid, its distance from the check's reference (chance), and the bound
the book's rule gives: halfway between the reference and the worst value (a safety factor of 2 on the
distance). The chapters' bounds come from this summary, and the chapter says so beside each check.

Run: ``python benchmarks/any_choice.py`` (about 55 minutes on 2 cores, 2 threads a run: the quick
profile's), or name chapters. ``--workers 2 --threads 1`` measures the checks about twice as fast,
but its wall times are not the quick profile's (2 threads, one run at a time). The results go to
``benchmarks/results/any_choice.json`` (kept per run with a digest of the chapter's code: an unchanged
run is reused, ``--fresh`` makes all again) and the tables to ``benchmarks/results/any_choice.md``
(``--out`` names another pair: the margins were first measured into ``any_choice_margins``, with
``--workers 2 --threads 1``, before the chapters' bounds were set from them).
"""

from __future__ import annotations

import argparse
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from chapter_runs import ROOT, chapter_digest, run_chapter

from lib.provenance import cpu_description, git_commit
from lib.run import read_defaults
from lib.budget import QUICK_LIMIT_MINUTES

OUT = ROOT / "benchmarks" / "results" / "any_choice"  # .json (every run) and .md (the tables)
SEEDS = range(20)  # seeds 0-19
SAFETY = 2.0  # a bound sits at 1/SAFETY of the worst distance from the reference


@dataclass(frozen=True)
class Choice:
    """One cell of the grid: parameter overrides of a chapter's quick profile."""

    name: str
    overrides: dict = field(default_factory=dict)

    def args(self) -> tuple[str, ...]:
        return tuple(a for k, v in self.overrides.items() for a in ("-p", k, json.dumps(v)))


CHOICES = {
    "01_embeddings_extendable_classification": (
        Choice("classes 1 5 8, add 0", {"classes": [1, 5, 8], "added_class": 0}),
        Choice("classes 4 7 9, add 2", {"classes": [4, 7, 9], "added_class": 2}),
        Choice("classes 3 5 6, add 8", {"classes": [3, 5, 6], "added_class": 8}),
    ),
    "02_self_organizing_class_embeddings": (
        Choice("hold out cat, pair cat-dog", {"held_out_class": 3, "pair_classes": [3, 5]}),
        Choice("hold out airplane, pair airplane-ship", {"held_out_class": 0, "pair_classes": [0, 8]}),
        Choice("hold out truck, pair bird-deer", {"held_out_class": 9, "pair_classes": [2, 4]}),
    ),
    "03_hierarchical_transfer_learning": (
        Choice("novel goose, no imbalance", {"novel_subclass": "goose", "imbalance": "none"}),
        Choice("novel German shepherd, step imbalance", {"novel_subclass": "German shepherd", "imbalance": "step"}),
        Choice("novel king penguin, hierarchy seed 1", {"novel_subclass": "king penguin", "hierarchy_seed": 1}),
    ),
    "04_vae_cluster_labelling": (
        Choice("z_dims 5 20", {"z_dims": [5, 20]}),
        Choice("z_dim 5, z_dims 3", {"z_dim": 5, "z_dims": [3]}),
    ),
}


def grid(chapter: Path) -> list[Choice]:
    """The chapter's cells: seed sets over SEEDS of the default size, then its other choices."""
    n = len(read_defaults(chapter)["seeds"])
    starts = range(SEEDS.start, SEEDS.stop, n)
    seed_sets = [Choice(f"seeds {s}-{s + n - 1}", {"seeds": list(range(s, s + n))}) for s in starts]
    return seed_sets + list(CHOICES.get(chapter.stem, ()))


def record(chapter: Path, choice: Choice, threads: int) -> dict:
    run = run_chapter(chapter, env={"BOOK_THREADS": str(threads)}, args=choice.args())
    checks = run.saved.get("checks", []) if run.saved else []
    return {"choice": choice.name, "overrides": choice.overrides, "threads": threads, "ok": run.ok, "wall_s": run.wall_s,
            "tail": "" if run.ok else run.tail, "checks": checks,
            "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit()}


def distance(check: dict, value: float) -> float | None:
    """How far a value lies from the check's reference, on the side the check asks for."""
    if check.get("reference") is None:
        return None
    return value - check["reference"] if check["above"] is not None else check["reference"] - value


def summary(entries: dict[str, dict]) -> list[str]:
    """Per check: the worst value over the grid, its distance from the reference, the bound halfway, and
    whether the chapter's bound held in every run."""
    lines = ["| chapter | check | values | worst | worst distance from reference | bound halfway | chapter's bound | held |",
             "|---|---|---|---|---|---|---|---|"]
    for stem, entry in entries.items():
        by_name: dict[str, list[tuple[dict, float]]] = {}
        for run in entry["runs"].values():
            for check in run["checks"]:
                by_name.setdefault(check["name"], []).extend((check, v) for v in check["values"])
        for name, pairs in by_name.items():
            check = pairs[-1][0]
            above = check["above"] is not None
            worst = (min if above else max)(v for _, v in pairs)
            distances = [d for c, v in pairs if (d := distance(c, v)) is not None]
            near = f"{min(distances):.4f}" if distances else "—"
            halfway = f"reference {'+' if above else '−'} {min(distances) / SAFETY:.4f}" if distances else "—"
            bound = " and ".join(t for t in (f"> {check['above']:.4g}" if check["above"] is not None else "",
                                             f"< {check['below']:.4g}" if check["below"] is not None else "") if t)
            held = all(c["ok"] for c, _ in pairs)
            lines.append(f"| {stem[:2]} | {name} | {len(pairs)} | {worst:.4f} | {near} | {halfway} | {bound} | {'yes' if held else 'NO'} |")
    return lines


def table(entries: dict[str, dict]) -> list[str]:
    limit = QUICK_LIMIT_MINUTES * 60
    lines = [f"| chapter | choice | passed | wall (s) | within {limit:.0f} s | failure |", "|---|---|---|---|---|---|"]
    for stem, entry in entries.items():
        for run in entry["runs"].values():
            timed = run["threads"] == 2
            lines.append(f"| {stem[:2]} | {run['choice']} | {'yes' if run['ok'] else 'NO'} | {run['wall_s']:.0f}"
                         f"{'' if timed else ' (1 thread)'} | {('yes' if run['wall_s'] <= limit else 'NO') if timed else '—'} | "
                         f"{run['tail'].splitlines()[-1][:120] if run['tail'] else ''} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="chapter .py files (default: all four)")
    parser.add_argument("--workers", type=int, default=1, help="runs at a time (1 for wall times that are the quick profile's)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads a run (2: the quick profile's)")
    parser.add_argument("--fresh", action="store_true", help="run every cell again, even where the chapter's code has not changed")
    parser.add_argument("--out", type=Path, default=OUT, help="where the results go: OUT.json and OUT.md")
    args = parser.parse_args()
    OUT_JSON, OUT_MD = args.out.with_suffix(".json"), args.out.with_suffix(".md")
    OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
    chapters = [c.resolve() for c in (args.chapters or sorted((ROOT / "chapters").glob("[0-9]*.py")))]
    saved = json.loads(OUT_JSON.read_text()) if OUT_JSON.is_file() else {"chapters": {}}
    todo = []
    for chapter in chapters:
        digest = chapter_digest(chapter)
        entry = saved["chapters"].get(chapter.stem)
        if entry is None or entry["digest"] != digest or args.fresh:
            entry = saved["chapters"][chapter.stem] = {"digest": digest, "runs": {}}
        todo += [(chapter, c) for c in grid(chapter) if c.name not in entry["runs"] or entry["runs"][c.name]["threads"] != args.threads]

    lock = threading.Lock()

    def one(job):
        chapter, choice = job
        result = record(chapter, choice, args.threads)
        with lock:
            saved["chapters"][chapter.stem]["runs"][choice.name] = result
            saved["machine"] = cpu_description(args.threads)
            OUT_JSON.write_text(json.dumps(saved, indent=1) + "\n")  # after every run: an interruption loses one
        print(f"{chapter.stem[:2]} {choice.name}: {'passed' if result['ok'] else 'FAILED'} in {result['wall_s']:.0f} s", flush=True)

    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(one, todo))
    for chapter in chapters:  # the grid's order, whichever cells were run again
        runs = saved["chapters"][chapter.stem]["runs"]
        saved["chapters"][chapter.stem]["runs"] = {c.name: runs[c.name] for c in grid(chapter) if c.name in runs}
    OUT_JSON.write_text(json.dumps(saved, indent=1) + "\n")
    entries = {c.stem: saved["chapters"][c.stem] for c in chapters}
    text = "\n".join([f"Measured on {saved.get('machine', '?')}.", "", *table(entries), "", *summary(entries)])
    OUT_MD.write_text(text + "\n")
    print(text)
    if any(not r["ok"] for e in entries.values() for r in e["runs"].values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
