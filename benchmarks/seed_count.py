"""How many seeds each profile needs: the expected 95% half-width of every claim at n seeds.

With n seeds the interval's half-width is t(0.975, n-1) * s / sqrt(n). This reads s, the spread
over seeds, from every committed cpu and full run (``results/*/*/results.json``) and from the
paired pilots of the main models (``benchmarks/results/fast_path_pilot.json``, fp32 seeds), and
writes, per claim, s, today's half-width, and the half-width expected at each candidate n, beside
the distance from our mean to the edge of the rule's region: a claim whose expected half-width is
below that distance would be decided at that n. The estimate of s from two or three seeds is itself
rough (its own interval spans a factor of several), so the table is for choosing n before a run,
never for reading a verdict. Writes ``benchmarks/results/seed_count.md`` and ``.json``.

    python benchmarks/seed_count.py
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib.scorecard import region_of  # noqa: E402

CANDIDATES = (5, 8, 10, 15)


def half_width(s: float, n: int) -> float:
    return float(stats.t.ppf(0.975, n - 1)) * s / math.sqrt(n)


def edge_distance(c: dict) -> float | None:
    """How far our mean lies from the nearest finite edge of the rule's region (None without a region)."""
    region = region_of(c)
    if region is None:
        return None
    edges = [e for e in (region.low, region.high) if math.isfinite(e)]
    return min(abs(c["mean"] - e) for e in edges) if edges else None


def claim_rows(root: Path = ROOT) -> list[dict]:
    rows = []
    for path in sorted((root / "results").glob("[cf]*/*/results.json")):
        saved = json.loads(path.read_text())
        for c in saved["claims"]:
            if len(c.get("ours", [])) < 2:
                continue
            s = statistics.stdev(c["ours"])
            rows.append({"profile": path.parts[-3], "chapter": path.parts[-2][:2], "id": c["id"], "unit": c.get("unit", ""),
                         "n": len(c["ours"]), "s": s, "now": half_width(s, len(c["ours"])), "edge": edge_distance(c),
                         **{f"n={n}": half_width(s, n) for n in CANDIDATES}})
    return rows


def pilot_rows(root: Path = ROOT) -> list[dict]:
    path = root / "benchmarks" / "results" / "fast_path_pilot.json"
    if not path.is_file():
        return []
    by_model: dict[str, list[float]] = {}
    for r in json.loads(path.read_text())["rows"]:
        if r["path"] == "fp32":
            by_model.setdefault(f"ch{r['chapter']} {r['model']}", []).append(100 * r["accuracy"])
    return [{"model": m, "n": len(v), "s": statistics.stdev(v), **{f"n={n}": half_width(statistics.stdev(v), n) for n in CANDIDATES}}
            for m, v in by_model.items() if len(v) >= 2]


def main() -> None:
    claims, pilots = claim_rows(), pilot_rows()
    fmt = lambda x: "—" if x is None else f"{x:.3g}"  # noqa: E731
    lines = ["# Expected 95% half-widths at n seeds", "", "Written by `python benchmarks/seed_count.py` (see its docstring).", "",
             "## Claims of the committed runs", "",
             "| profile | ch. | claim | unit | n now | s | half-width now | distance to the rule's edge | "
             + " | ".join(f"n={n}" for n in CANDIDATES) + " |", "|---" * (8 + len(CANDIDATES)) + "|"]
    for r in claims:
        lines.append(f"| {r['profile']} | {r['chapter']} | `{r['id']}` | {r['unit']} | {r['n']} | {fmt(r['s'])} | {fmt(r['now'])} | "
                     f"{fmt(r['edge'])} | " + " | ".join(fmt(r[f'n={n}']) for n in CANDIDATES) + " |")
    lines += ["", "## Test accuracy of the main models (paired pilots, fp32 seeds, in points)", "",
              "| model | n | s | " + " | ".join(f"n={n}" for n in CANDIDATES) + " |", "|---" * (3 + len(CANDIDATES)) + "|"]
    for r in pilots:
        lines.append(f"| {r['model']} | {r['n']} | {fmt(r['s'])} | " + " | ".join(fmt(r[f'n={n}']) for n in CANDIDATES) + " |")
    out = ROOT / "benchmarks" / "results"
    (out / "seed_count.md").write_text("\n".join(lines) + "\n")
    (out / "seed_count.json").write_text(json.dumps({"claims": claims, "pilots": pilots}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
