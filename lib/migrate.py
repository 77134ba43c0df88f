"""Carry a committed run's unit records over to the current record key, without training again.

A unit's record is named by a digest of its settings and of the code that runs it
(:mod:`lib.keys`). When the code changes in a way that cannot change a result (a refactoring that
the quick profile's regression guard shows leaves every number as it was), the records of a
committed cpu or full run would otherwise be found no more, and the run would train again. This
renames each record to the name the current code gives its unit: the units are planned again from
the run's profile and seeds (``--plan``'s list), and each is matched to the one record that bears
its name. A unit with no record, or with two, is reported and stops the migration. Then render the
chapter from the records (the same command as the run: it trains nothing), so that its run card
names the current code.

    python -m lib.migrate results/cpu/01_embeddings_extendable_classification     # rename
    python -m lib.migrate results/cpu/* results/full/* --check                    # only report
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .provenance import ROOT


def migrations(run_dir: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(old record, new record) for every unit of the committed run in ``run_dir`` whose record needs
    renaming, and the problems that stop a migration (a unit without a record, or with two)."""
    from .run import planned_units, resolve_parameters

    card = json.loads((run_dir / "results.json").read_text())["run_card"]
    chapter = ROOT / "chapters" / f"{card['chapter']}.py"
    if "profile" in card["settings"]:  # the run's parameters, as its card has them
        params = dict(card["settings"])
    else:  # a card from before the settings were one flat dataclass: the run's profile, as a test keeps committed runs
        params, _ = resolve_parameters(chapter, card["profile"], card["seeds"], {})
    params["results_root"] = str(run_dir.parents[1].resolve())
    units, records = planned_units(chapter, card["profile"], params)
    moves, problems = [], []
    for unit in units:
        new = records.path(unit)
        found = sorted(p for p in records.directory.glob(f"{unit.name}-*.pt") if p.stem.removeprefix(f"{unit.name}-").isalnum())
        if new in found:
            continue
        if len(found) != 1:
            problems.append(f"{unit.name}: {len(found)} records ({[p.name for p in found]}); a migration needs exactly one")
            continue
        moves.append((found[0], new))
    return moves, problems


def migrate(run_dir: Path) -> tuple[int, list[str]]:
    """Rename the records of the committed run in ``run_dir`` to the current key: how many, and the
    problems that stopped it. Some units are planned from earlier units' records (chapter 4's random
    baselines get the labels its method spent), so the plan is made again after every pass, until a
    pass renames nothing."""
    renamed = 0
    for _ in range(10):
        moves, problems = migrations(run_dir)
        if problems or not moves:
            return renamed, problems
        for old, new in moves:
            old.rename(new)
        renamed += len(moves)
    return renamed, ["the records did not settle in 10 passes"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lib.migrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="committed run folders, results/<profile>/<chapter>")
    parser.add_argument("--check", action="store_true", help="report what would be renamed; rename nothing")
    args = parser.parse_args(argv)
    failed = False
    for run_dir in args.runs:
        if not (run_dir / "results.json").is_file():
            parser.exit(2, f"error: {run_dir} holds no results.json: give a committed run's folder, results/<profile>/<chapter>\n")
        if args.check:
            moves, problems = migrations(run_dir.resolve())
            print(f"{run_dir}: {len(moves)} records to rename to the current code's key (in a first pass)")
        else:
            renamed, problems = migrate(run_dir.resolve())
            print(f"{run_dir}: {renamed} records renamed to the current code's key")
        for line in problems:
            print(f"{run_dir}: {line}")
        failed |= bool(problems)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
