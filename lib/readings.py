"""How a chapter's page reads its runs: earlier readings kept beside new ones, and the reproducibility summary.

**Earlier readings.** A claim's rule is committed before the run that judges it, and never changed
after seeing the numbers. When a reading was wrong (a claim misread, a rule that could not fail),
the new reading is committed first, and the earlier one stays visible beside it:
``python -m lib.readings keep results/cpu/<chapter>`` copies that profile's current claims (with the
commit, date and seeds of the run that judged them) into ``earlier_readings.json`` before the
re-run. The page then shows, for every claim whose reading changed, the earlier rule and verdict,
the new rule, the new verdict once a run has judged it, and why the reading changed.

**The reproducibility summary** follows the form of ML reproducibility reports: scope, method,
results, what was easy, what was difficult, total compute, and what the authors left open. Its
scope, results and compute are read from the run's records; the chapter writes the rest.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from .keys import code_digest
from .verdicts import PROFILE_SCALE, VERDICTS, Scale, legacy_verdict

EARLIER = "earlier_readings.json"
KEPT = ("id", "claim", "paper", "rule", "verdict", "mean", "low", "high", "n", "unit", "why")


def keep(folder: Path) -> Path:
    """Append the claims of ``folder/results.json`` to ``folder/earlier_readings.json`` (once per run:
    a run already kept is not kept twice)."""
    folder = Path(folder)
    results = folder / "results.json"
    if not results.is_file():
        raise FileNotFoundError(f"{results} does not exist: there is no run whose readings could be kept")
    saved = json.loads(results.read_text())
    card = saved["run_card"]
    run = {"commit": card["versions"]["git"], "started": card["started"], "seeds": card["seeds"], "profile": card["profile"]}
    path = folder / EARLIER
    kept = json.loads(path.read_text()) if path.is_file() else []
    if any(k["run"] == run for k in kept):
        return path
    claims = [_in_points({key: c.get(key) for key in KEPT} | {"verdict": legacy_verdict(c)}) for c in saved["claims"]]
    kept.append({"run": run, "claims": claims})
    path.write_text(json.dumps(kept, indent=1))
    return path


def _in_points(c: dict) -> dict:
    """An earlier record's difference of accuracies, kept as a fraction labelled "accuracy points", in points."""
    if c.get("unit") != "accuracy points":
        return c
    scale = {k: 100 * c[k] for k in ("mean", "low", "high") if c.get(k) is not None}
    rule = re.sub(r"-?\d+(\.\d+)?", lambda m: f"{100 * float(m.group()):g}", c["rule"] or "")
    return c | scale | {"rule": rule, "unit": "points"}


def earlier(folder: Path) -> list[dict]:
    """Every kept run's readings of a profile's folder, oldest first ([] when none was kept)."""
    path = Path(folder) / EARLIER
    return json.loads(path.read_text()) if path.is_file() else []


def _ours(c: dict) -> str:
    if not c.get("n"):
        return "—"
    if c["n"] < 2:
        return f"{c['mean']:.3g}"
    return f"{c['mean']:.3g} ± {c['high'] - c['mean']:.2g}"


def changed_readings_markdown(folder: Path, now: list[dict], judged: dict | None, changes: dict[str, str]) -> str:
    """A table of the claims whose reading changed since the last kept run of a profile: the earlier
    claim, rule and verdict; the rule that applies now (from ``now``, this run's claims); the verdict of
    ``judged`` (that profile's saved results) if they come from a later run than the kept one; and why
    (``changes``: claim id → the reason, which the chapter states). '' when nothing was kept."""
    kept = earlier(folder)
    if not kept:
        return ""
    last = kept[-1]
    later = judged is not None and judged["run_card"]["started"] != last["run"]["started"]
    by_id_now = {c["id"]: c for c in now}
    by_id_judged = {c["id"]: c for c in judged["claims"]} if later else {}
    lines = [f"Readings changed since the {last['run']['profile']} run of commit {last['run']['commit']} "
             f"({last['run']['started'][:10]}, seeds {last['run']['seeds']}):", "",
             "| claim | earlier reading | earlier verdict | reading now | verdict now | why it changed |", "|---|---|---|---|---|---|"]
    ids = [c["id"] for c in last["claims"]] + [i for i in changes if i not in {c["id"] for c in last["claims"]}]
    for claim_id in ids:
        before = next((c for c in last["claims"] if c["id"] == claim_id), None)
        after = by_id_now.get(claim_id)
        if claim_id not in changes:
            continue
        old = f"{before['claim']}: {before['rule'] or before['why']}" if before else "(no such claim)"
        new = f"{after['claim']}: {after['rule'] or after['why']}" if after else "dropped"
        old_verdict = f"**{before['verdict']}** ({_ours(before)}, n={before['n']})" if before else "—"
        verdict = (f"**{by_id_judged[claim_id]['verdict']}**" if claim_id in by_id_judged
                   else "dropped" if after is None else "not re-run yet")
        lines.append(f"| `{claim_id}` | {old} | {old_verdict} | {new} | {verdict} | {changes[claim_id]} |")
    return "\n".join(lines)


def _stale(card: dict) -> bool:
    """Whether a run was made by other code than its chapter's current code (its code digest differs)."""
    return card["versions"]["lib"] != code_digest(card["experiment"])


def trained_on(card: dict) -> str:
    """The machines whose trainings a run card's page rests on: a page rendered from records (``--from-records``,
    merged shards) ran on another machine, or on other threads, than its trainings."""
    return "; ".join(sorted({m["machine"] for m in card.get("units_made_by", [])})) or card["device"]


def trained_at(card: dict) -> list[str]:
    """The commits whose code made the trainings a run card's page rests on (its render's own commit when the card
    names none): a page rendered from records, or from merged shards, is rendered at a later commit than its trainings."""
    return sorted({m["git"] for m in card.get("units_made_by", [])}) or [card["versions"]["git"]]


def _scale_of(profile: str, card: dict) -> str:
    """Where a profile's claims were judged: its own scale, or the lower one its run card recorded (a cpu
    run whose models missed the convergence criterion counts at toy scale)."""
    nominal, recorded = PROFILE_SCALE[profile], Scale[card.get("scale", PROFILE_SCALE[profile].name)]
    if recorded == nominal:
        return f"at the {profile} profile's scale"
    return f"from the {profile} profile's run, counted at {recorded.label} (its models missed the convergence criterion)"


def reproducibility_summary(by_profile: dict[str, dict], *, method: str, easy: str, difficult: str, left_open: str,
                            ids: list[str] | None = None) -> str:
    """The chapter's reproducibility summary (markdown). ``by_profile``: each profile's saved results
    that the page holds (this run's included). Scope, results and compute come from them; ``method``,
    ``easy``, ``difficult`` and ``left_open`` are the chapter's words. ``ids``: the claims the chapter
    makes today (a claim an earlier run judged and the chapter has since dropped is left out)."""
    order = sorted(by_profile, key=PROFILE_SCALE.get, reverse=True)
    strongest: dict[str, tuple[str, dict]] = {}
    for profile in order:
        for c in by_profile[profile]["claims"]:
            if ids is None or c["id"] in ids:
                strongest.setdefault(c["id"], (profile, c))
    stale = {p for p in order if _stale(by_profile[p]["run_card"])}
    scope = ", ".join(f"{sum(p == profile for p, _ in strongest.values())} {_scale_of(profile, by_profile[profile]['run_card'])}"
                      f"{' †' if profile in stale else ''}" for profile in order if any(p == profile for p, _ in strongest.values()))
    tally = Counter(legacy_verdict(c) for _, c in strongest.values())
    results = "; ".join(f"{tally[v]} {v}" for v in VERDICTS if tally[v])
    used = sorted({p for p, _ in strongest.values()} & stale, key=order.index)
    if used:
        results += (f". † The {' and '.join(used)} run{'s were' if len(used) > 1 else ' was'} made by an earlier version of this "
                    "chapter's code: its verdicts are earlier readings, some under rules revised since (the changed readings above "
                    "say which), until that profile is run again")
    compute = []
    for profile in order:
        card = by_profile[profile]["run_card"]
        compute.append(f"{profile}: {card.get('units_wall_time_s', card['wall_time_s']) / 3600:.2f} h of training on {trained_on(card)} "
                       f"({len(card['seeds'])} seeds; page rendered in {card['wall_time_s'] / 60:.1f} min)")
    return "\n".join([
        "```{admonition} Reproducibility summary", ":class: note", "",
        f"**Scope.** {len(strongest)} claims of the paper, each at the strongest scale this page holds: {scope}.", "",
        f"**Method.** {method}", "",
        f"**Results.** {results}. The claims tables above give each number with its interval and rule.", "",
        f"**What was easy.** {easy}", "",
        f"**What was difficult.** {difficult}", "",
        f"**Total compute.** " + "; ".join(compute) + ".", "",
        f"**What the authors' code or text left open.** {left_open}", "```"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lib.readings", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    k = sub.add_parser("keep", help="keep a profile's current readings before a run that changes them")
    k.add_argument("folders", nargs="+", type=Path, help="results/<profile>/<chapter> folders")
    args = parser.parse_args(argv)
    for folder in args.folders:
        print(f"kept the readings of {folder / 'results.json'} in {keep(folder)}")


if __name__ == "__main__":
    main()
