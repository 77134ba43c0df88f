"""A profile split over machines: each shard runs some of the seeds, and their unit records merge.

    python -m lib.run chapters/02_self_organizing_class_embeddings.py --profile cpu --seeds 0 1     # machine A
    python -m lib.run chapters/02_self_organizing_class_embeddings.py --profile cpu --seeds 2 3 4   # machine B
    python -m lib.shards merge results/cpu/02_self_organizing_class_embeddings/units B/units       # records together
    python -m lib.run chapters/02_self_organizing_class_embeddings.py --profile cpu --from-records  # the page; trains nothing

A record's name carries the digest of its settings and code (:mod:`lib.units`), so records of
different shards never collide unless they are the same unit: one that every shard trains because
all seeds share it (chapter 4's annotator and judge, say). Of such a pair the merge keeps the record
already in place, and says whether the two agree in every result (stamps such as wall time and
machine aside); records that disagree are kept apart, named, for a person to look at.
``.github/workflows/profile.yml`` runs a profile this way, one job per seed.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

STAMPS = ("wall_time_s", "git", "machine", "resumed")  # where and how long a record was made; not its result


def same_result(a, b) -> bool:
    """Whether two records (or parts of them) hold the same results: equal tensors, numbers and containers."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = (a.keys() | b.keys()) - set(STAMPS)
        return all(k in a and k in b and same_result(a[k], b[k]) for k in keys)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_result(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    return type(a) is type(b) and a == b


@dataclass
class Merged:
    copied: list[str] = field(default_factory=list)  # records new to the destination
    agreeing: list[str] = field(default_factory=list)  # already there, with the same results
    differing: list[str] = field(default_factory=list)  # already there, with other results: the destination's kept

    def summary(self) -> str:
        text = f"{len(self.copied)} records copied, {len(self.agreeing)} already there with the same results"
        if self.differing:
            text += (f", {len(self.differing)} already there with other results (the ones in place are kept; the others are "
                     f"beside them as .shard-N files): {', '.join(self.differing)}")
        return text


def merge(destination: Path, sources: list[Path]) -> Merged:
    """Copy every unit record (``*.pt``) of ``sources`` into ``destination`` (see the module's docstring)."""
    destination = Path(destination)
    missing = [str(s) for s in sources if not Path(s).is_dir()]
    if missing:
        raise FileNotFoundError(f"no such records folder: {', '.join(missing)} (give the units/ folders the shards wrote)")
    destination.mkdir(parents=True, exist_ok=True)
    merged = Merged()
    for n, source in enumerate(map(Path, sources)):
        if source.resolve() == destination.resolve():
            continue
        for record in sorted(source.glob("*.pt")):
            target = destination / record.name
            if not target.exists():
                shutil.copy2(record, target)
                merged.copied.append(record.name)
            elif same_result(torch.load(record, weights_only=True), torch.load(target, weights_only=True)):
                merged.agreeing.append(record.name)
            else:
                shutil.copy2(record, destination / f"{record.name}.shard-{n}")
                merged.differing.append(record.name)
    return merged


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lib.shards", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("merge", help="copy the shards' unit records into one units/ folder")
    m.add_argument("destination", type=Path, help="the units/ folder the page renders from")
    m.add_argument("sources", nargs="+", type=Path, help="the shards' units/ folders")
    args = parser.parse_args(argv)
    try:
        merged = merge(args.destination, args.sources)
    except FileNotFoundError as err:
        parser.exit(2, f"error: {err}\n")
    print(merged.summary())
    if merged.differing:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
