"""The book's scorecard: every claim of every chapter, at the strongest scale the book holds.

``python -m lib.scorecard`` writes two files that the book includes:

* ``_generated/scorecard.md`` (the first page): per chapter, how many claims got each verdict;
  then one row per claim, taken from the strongest profile that has a result for it (full, then
  cpu, then quick), saying which profile and how many seeds;
* ``_generated/scorecard_by_profile.md``: every profile's claims in full, with run cards.

A claim whose strongest run was made by other code than the current library's (its code digest
differs) is marked, so a stale result is never mistaken for a current one; so is a run whose main
models did not meet the chapter's convergence criterion (a cpu run then counts at toy scale).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .reporting import format_ours, format_rule, format_verdict, load_results
from .keys import code_digest
from .verdicts import NOT_RUN, PROFILE_SCALE, VERDICTS

ROOT = Path(__file__).resolve().parents[1]
STRONGEST_FIRST = sorted(PROFILE_SCALE, key=PROFILE_SCALE.get, reverse=True)  # full, cpu, quick


def chapter_title(py: Path) -> str:
    for line in py.read_text().splitlines():
        if line.startswith("# # "):
            return line[4:].strip()
    return py.stem


def load_all(root: Path) -> dict[str, dict[str, dict]]:
    """``{chapter: {profile: results}}`` for every results.json under ``root/results``."""
    found: dict[str, dict[str, dict]] = {}
    for profile in PROFILE_SCALE:
        for path in sorted((root / "results" / profile).glob("*/results.json")):
            saved = load_results(root / "results", profile, path.parent.name)
            if not saved["run_card"].get("settings", {}).get("run", {}).get("smoke"):  # a plumbing test is no evidence
                found.setdefault(path.parent.name, {})[profile] = saved
    return found


def strongest(by_profile: dict[str, dict]) -> list[tuple[dict, str, dict]]:
    """One (claim, profile, run card) per claim id: the strongest profile whose verdict is not 'not run'
    (or the strongest at all when every profile says 'not run'), in the claims' order."""
    ids: list[str] = []
    for profile in reversed(STRONGEST_FIRST):  # quick's order first, then claims only the others have
        ids += [c["id"] for c in by_profile.get(profile, {}).get("claims", []) if c["id"] not in ids]
    rows = []
    for claim_id in ids:
        candidates = [(c, p, by_profile[p]["run_card"]) for p in STRONGEST_FIRST if p in by_profile
                      for c in by_profile[p]["claims"] if c["id"] == claim_id]
        run = [x for x in candidates if x[0]["verdict"] != NOT_RUN]
        rows.append((run or candidates)[0])
    return rows


def _link(py: Path) -> str:
    return f"{{doc}}`Ch. {int(py.stem[:2])} <{'/chapters/' + py.stem}>`"


def _stale(card: dict) -> bool:
    """Whether a run was made by other code than the chapter's current code."""
    return card["versions"]["lib"] != code_digest(card["experiment"])


def _unconverged(card: dict) -> bool:
    """Whether the run recorded that its main models did not meet the chapter's convergence criterion."""
    conv = card.get("convergence")
    return bool(conv) and not conv["converged"]


def render(root: Path = ROOT) -> str:
    """The first page's scorecard: verdict counts per chapter, then the headline table."""
    chapters = sorted((root / "chapters").glob("[0-9]*.py"))
    results = load_all(root)
    counts = ["| chapter | " + " | ".join(VERDICTS) + " |", "|---" * (1 + len(VERDICTS)) + "|"]
    table = ["| chapter | claim | paper | ours (mean ± 95% CI) | profile | n | verdict | rule |", "|---" * 8 + "|"]
    stale_note = unconverged_note = False
    for py in chapters:
        rows = strongest(results.get(py.stem, {}))
        if not rows:
            counts.append(f"| {_link(py)} | " + " | ".join("" for _ in VERDICTS) + " |")
            table.append(f"| {_link(py)} | {chapter_title(py)} | | — | — | 0 | **not run** | run `python -m lib.run chapters/{py.name}` |")
            continue
        tally = Counter(c["verdict"] for c, _, _ in rows)
        counts.append(f"| {_link(py)} | " + " | ".join(str(tally.get(v, "")) for v in VERDICTS) + " |")
        for c, profile, card in rows:
            mark = ""
            if _stale(card):
                mark, stale_note = " †", True
            if _unconverged(card):
                mark, unconverged_note = mark + " ‡", True
            table.append(f"| {_link(py)} | {c['claim']} | {c['paper']} | {format_ours(c)} | {profile}{mark} | {c['n']} | {format_verdict(c)} | {format_rule(c)} |")
    out = ["<!-- written by `python -m lib.scorecard` from results/*/*/results.json; do not edit -->", "",
           "**Verdicts per chapter** (each claim counted once, at the strongest scale the book holds)", "", *counts, "",
           "**Every claim at its strongest scale**", "", *table, ""]
    if stale_note:
        out += ["† made by an earlier version of the chapter's code (its code digest differs from the current one): re-run that profile.", ""]
    if unconverged_note:
        out += ["‡ the run's main models did not meet the chapter's convergence criterion (its page shows the criterion and the "
                "curves). A full run is still judged, at the paper's own schedule; a cpu run that did not converge counts at toy "
                "scale: it tests no claim, and its numbers are shown unjudged.", ""]
    return "\n".join(out)


def render_by_profile(root: Path = ROOT) -> str:
    """Every profile's claims and run cards, chapter by chapter."""
    from .reporting import claims_markdown, run_card_markdown

    chapters = sorted((root / "chapters").glob("[0-9]*.py"))
    results = load_all(root)
    out = ["<!-- written by `python -m lib.scorecard`; do not edit -->", ""]
    for profile in STRONGEST_FIRST:
        out += [f"## The {profile} profile: {PROFILE_SCALE[profile].label}", ""]
        for py in chapters:
            saved = results.get(py.stem, {}).get(profile)
            out += [f"### {_link(py)}: {chapter_title(py)}", ""]
            if saved is None:
                out += [f"Not run. Run `python -m lib.run chapters/{py.name} --profile {profile}`.", ""]
                continue
            out += [claims_markdown(saved["claims"]), "", "Run card:", "", run_card_markdown(saved["run_card"]), ""]
    return "\n".join(out)


def main() -> None:
    target = ROOT / "_generated"
    target.mkdir(exist_ok=True)
    (target / "scorecard.md").write_text(render())
    (target / "scorecard_by_profile.md").write_text(render_by_profile())
    print(f"wrote {target / 'scorecard.md'} and {target / 'scorecard_by_profile.md'}")


if __name__ == "__main__":
    main()
