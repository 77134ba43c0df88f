"""The book's scorecard: every claim of every chapter, at the strongest scale the book holds.

``python -m lib.scorecard`` writes the files that the book includes:

* ``_generated/scorecard.md`` (the first page): per chapter, how many claims got each verdict;
  the figure ``_generated/scorecard.png`` (a panel per claim: our mean and interval against the
  region the rule accepts and the paper's value, coloured by verdict); then one row per claim,
  taken from the strongest profile that has a result for it (full, then cpu, then quick), saying
  which profile and how many seeds;
* ``_generated/scorecard_by_profile.md``: every profile's claims in full, with run cards;
* ``_generated/status.md``: a row per run (chapter, profile, date, commit, the machines its trainings ran on and the numeric path,
  seeds, wall time, converged), read from the run cards.

A claim whose strongest run was made by other code than the current library's (its code digest
differs) is marked, so a stale result is never mistaken for a current one; so is a run whose main
models did not meet the chapter's convergence criterion (a cpu run then counts at toy scale).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import math

from .readings import trained_at, trained_on
from .reporting import format_ours, format_rule, format_verdict, load_results
from .keys import code_digest
from .verdicts import INCONCLUSIVE, NEEDS_LARGER, NOT_REPRODUCED, NOT_RUN, PROFILE_SCALE, REPRODUCED, UNTESTABLE, VERDICTS, Region

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


def _marks(card: dict) -> str:
    """The marks a run's rows and panels carry: † made by earlier code, ‡ its models did not converge."""
    return (" †" if _stale(card) else "") + (" ‡" if _unconverged(card) else "")


def latex_columns(*widths: int) -> str:
    """A wide table's column widths in the PDF, as parts of the line (HTML ignores them): without them LaTeX
    sets each column as wide as its longest cell, and a wide table runs off the page."""
    return "```{tabularcolumns} " + "".join(rf"\X{{{w}}}{{{sum(widths) + 2}}}" for w in widths) + "\n```"


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
            stale_note, unconverged_note = stale_note or _stale(card), unconverged_note or _unconverged(card)
            table.append(f"| {_link(py)} | {c['claim']} | {c['paper']} | {format_ours(c)} | {profile}{_marks(card)} | {c['n']} | {format_verdict(c)} | {format_rule(c)} |")
    shown = [m for m, used in (("†", stale_note), ("‡", unconverged_note)) if used]
    marks = f"; {' and '.join(shown)} as in the table below" if shown else ""
    out = ["<!-- written by `python -m lib.scorecard` from results/*/*/results.json; do not edit -->", "",
           "**Verdicts per chapter** (each claim counted once, at the strongest scale the book holds)", "", *counts, "",
           "```{figure} /_generated/scorecard.png", ":name: scorecard-figure", ":width: 100%", "",
           "Every claim at its strongest scale: our mean and 95% interval over seeds (the bar, coloured by verdict), the "
           "region the claim's rule accepts (shaded green) and the paper's value (a black diamond, where it is a number). "
           "Differences of accuracies are in points; a panel's scale is its claim's own" + marks + ".", "```", "",
           "**Every claim at its strongest scale**", "", latex_columns(2, 7, 2, 3, 2, 1, 3, 5), "", *table, ""]
    if stale_note:
        out += ["† made by an earlier version of the chapter's code (its code digest differs from the current one): re-run that profile.", ""]
    if unconverged_note:
        out += ["‡ the run's main models did not meet the chapter's convergence criterion (its page shows the criterion and the "
                "curves). A full run is still judged, at the paper's own schedule; a cpu run that did not converge counts at toy "
                "scale: it tests no claim, and its numbers are shown unjudged.", ""]
    return "\n".join(out)


COLOURS = {REPRODUCED: "#2e7d32", NOT_REPRODUCED: "#c62828", INCONCLUSIVE: "#ef8f00", UNTESTABLE: "#9e9e9e", NEEDS_LARGER: "#5c6bc0"}


def region_of(c: dict) -> Region | None:
    """The region a claim's rule accepts: from its row, or from the rule's text in an earlier record."""
    if c.get("region"):
        return Region.from_list(c["region"])
    try:
        return Region.from_short(c["rule"]) if c.get("rule") else None
    except ValueError:
        return None


def figure(root: Path = ROOT):
    """A panel per claim (chapters in columns, their claims down), or None when no claim has a number."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    results = load_all(root)
    columns = [(py, [r for r in strongest(results.get(py.stem, {})) if r[0]["verdict"] != NOT_RUN and r[0]["ours"]])
               for py in sorted((root / "chapters").glob("[0-9]*.py"))]
    columns = [(py, rows) for py, rows in columns if rows]
    if not columns:
        return None
    height = max(len(rows) for _, rows in columns)
    fig, axes = plt.subplots(height, len(columns), figsize=(4.2 * len(columns), 0.95 * height + 1.2), squeeze=False)
    for col, (py, rows) in enumerate(columns):
        for row in range(height):
            ax = axes[row, col]
            if row >= len(rows):
                ax.axis("off")
                continue
            c, profile, card = rows[row]
            _claim_panel(ax, c, profile + _marks(card))
    fig.legend(handles=[Patch(color=colour, label=verdict) for verdict, colour in COLOURS.items()], loc="lower center",
               ncol=len(COLOURS), frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1 - 0.45 / fig.get_figheight()))
    for col, (py, _) in enumerate(columns):
        box = axes[0, col].get_position()
        fig.text((box.x0 + box.x1) / 2, 1 - 0.2 / fig.get_figheight(), f"Ch. {int(py.stem[:2])}", ha="center", va="top", fontsize=11,
                 fontweight="bold")
    return fig


def _claim_panel(ax, c: dict, profile: str) -> None:
    """One claim: the accepted region, the paper's value, our mean with its interval. ``profile``: the scale it was
    judged at, with the table's † where that run was made by earlier code and ‡ where its models did not converge."""
    region, paper = region_of(c), c["paper"] if isinstance(c["paper"], (int, float)) else None
    low, high = c["low"], c["high"]
    finite = [x for x in (c["mean"], low, high, paper, region and region.low, region and region.high)
              if isinstance(x, (int, float)) and math.isfinite(x)]
    left, right = min(finite), max(finite)
    pad = 0.15 * (right - left) or 0.1 * abs(right) or 1.0
    left, right = left - pad, right + pad
    if region:
        ax.axvspan(max(region.low, left), min(region.high, right), color="#a5d6a7", alpha=0.6, lw=0)
    colour = COLOURS.get(c["verdict"], "#000000")
    ax.errorbar([c["mean"]], [0], xerr=[[c["mean"] - max(low, left)], [min(high, right) - c["mean"]]], fmt="o", color=colour, capsize=3, lw=2)
    if paper is not None:
        ax.plot([paper], [0], marker="D", color="black", ms=5)
    ax.set_xlim(left, right)
    ax.set_yticks([])
    ax.tick_params(axis="x", labelsize=7)
    unit = {"points": " (points)", "×": " (×)"}.get(c.get("unit", ""), "")
    title = c["claim"] if len(c["claim"]) <= 58 else c["claim"][:55] + "…"
    ax.set_title(f"{title}{unit}\n{profile}, n={c['n']}: {c['verdict']}", fontsize=7, loc="left")


def render_status(root: Path = ROOT) -> str:
    """A row per committed run: chapter, profile, date, commit, the machines its trainings ran on and the numeric path, seeds, wall time, converged."""
    results = load_all(root)
    lines = ["<!-- written by `python -m lib.scorecard` from the run cards; do not edit -->", "",
             latex_columns(3, 3, 4, 6, 12, 5, 3, 3, 3, 4), "",
             "| chapter | profile | date | commit | trained on, numeric path | seeds | wall time | trainings | converged | code |",
             "|---" * 10 + "|"]
    for py in sorted((root / "chapters").glob("[0-9]*.py")):
        for profile in STRONGEST_FIRST:
            saved = results.get(py.stem, {}).get(profile)
            if profile != "quick" and not (root / "chapters" / "profiles" / f"{py.stem}.{profile}.yaml").is_file():
                continue  # the chapter has no such profile
            if saved is None:
                lines.append(f"| {_link(py)} | {profile} | — | — | — | — | — | — | — | not run |")
                continue
            card = saved["run_card"]
            conv = card["convergence"]
            converged = "—" if conv is None else "yes" if conv["converged"] else "**no**"
            code = "stale †" if _stale(card) else "current"
            commits = trained_at(card)
            commit = ", ".join(f"`{g}`" for g in commits)
            if commits != [card["versions"]["git"]]:
                commit = f"trainings {commit}; page `{card['versions']['git']}`"
            lines.append(f"| {_link(py)} | {profile} | {card['started'][:10]} | {commit} | {trained_on(card)}; "
                         f"{card['numerics']} | {len(card['seeds'])} ({', '.join(map(str, card['seeds']))}) | "
                         f"{card['wall_time_s'] / 60:.1f} min | {card.get('units_wall_time_s', 0) / 60:.1f} min | {converged} | {code} |")
    lines += ["", "Wall time: the run that rendered the page (a page rendered from earlier records takes minutes); trainings: the "
              "training time of every unit the page rests on, wherever it ran. Commit: the code the trainings ran, and the page's own "
              "commit where it was rendered later. † the chapter's code has changed since the run: "
              "re-run that profile.", ""]
    return "\n".join(lines)


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
    (target / "status.md").write_text(render_status())
    fig = figure()
    if fig is None:  # no claim has a number yet: an empty panel, so the page's figure still has a file
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(6, 1))
        fig.text(0.5, 0.5, "No chapter has been run yet: run make book.", ha="center", va="center")
    fig.savefig(target / "scorecard.png", dpi=110, bbox_inches="tight")
    print(f"wrote scorecard.md, scorecard.png, scorecard_by_profile.md and status.md in {target}")


if __name__ == "__main__":
    main()
