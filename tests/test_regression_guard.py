"""The regression guard: the quick profile's claims, as nbval's execution of each chapter produced
them in this session, against the values the committed notebook carries.

A change that moves a result fails here; it is accepted by re-executing the chapter (``make book``)
and committing the notebook. Only runs of the same data are compared: a machine that reads another
copy of a dataset (the official CIFAR-10 files rather than the book's JPEG copy, say) skips it. Timings are left out (they belong to the machine). The tolerance comes
from the committed spread across seeds: a difference of two means of n seeds varies with standard
deviation s * sqrt(2 / n), and the guard allows 2.5 of those (plus a floor of 0.1% for values the seeds
agree on), so a re-run on another machine passes and a broken method does not.
"""

import json
import math
import statistics
from pathlib import Path

import pytest

from lib.reporting import GUARD_DATA_KEY, GUARD_KEY, RESULTS_ENV, data_read, load_results

CHAPTERS = sorted((Path(__file__).resolve().parents[1] / "chapters").glob("[0-9]*.ipynb"))
SPREADS = 2.5


def committed_claims(notebook: Path) -> tuple[dict[str, dict], list | None]:
    """The claims a committed notebook's tables carry (the last table that shows a claim wins), and the
    data files its run read."""
    claims, data = {}, None
    for cell in json.loads(notebook.read_text())["cells"]:
        for output in cell.get("outputs", []):
            for claim in output.get("metadata", {}).get(GUARD_KEY, []):
                claims[claim["id"]] = claim
            data = output.get("metadata", {}).get(GUARD_DATA_KEY, data)
    return claims, data


def tolerance(values: list[float]) -> float:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) * math.sqrt(2 / len(values)) if len(values) > 1 else 0.0
    return SPREADS * spread + 1e-3 * max(1.0, abs(mean))


def drifted(committed: dict[str, dict], fresh: list[dict]) -> list[str]:
    """What moved: one line per claim whose fresh mean left the committed mean's tolerance, or that
    appeared, vanished or changed its number of seeds."""
    problems = []
    fresh_by_id = {c["id"]: c for c in fresh}
    for id in sorted(set(committed) | set(fresh_by_id)):
        if id not in fresh_by_id or id not in committed:
            problems.append(f"{id}: {'no longer made' if id in committed else 'new'}; re-execute and commit the notebook")
            continue
        old, new = committed[id], fresh_by_id[id]
        if old.get("timing") or new.get("timing"):
            continue
        if len(old["ours"]) != len(new["ours"]):
            problems.append(f"{id}: {len(new['ours'])} values now, {len(old['ours'])} committed")
            continue
        if not old["ours"]:
            continue  # not run, both times
        delta, allowed = statistics.fmean(new["ours"]) - statistics.fmean(old["ours"]), tolerance(old["ours"])
        if abs(delta) > allowed:
            problems.append(f"{id}: mean {statistics.fmean(new['ours']):.4g} now, {statistics.fmean(old['ours']):.4g} committed "
                            f"(moved {delta:+.3g}, allowed ±{allowed:.3g})")
    return problems


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem[:2])
def test_the_quick_claims_are_those_of_the_committed_notebook(notebook, request):
    if notebook.stem not in getattr(request.config, "book_notebooks", set()):
        pytest.skip("nbval did not execute this chapter in this session (make test does)")
    committed, committed_data = committed_claims(notebook)
    assert committed and committed_data is not None, f"{notebook.name} carries no claims or data record: re-execute it with `make book` and commit it"
    fresh = load_results(request.config.results_root, "quick", notebook.stem)
    assert fresh is not None, f"nbval's run of {notebook.name} left no results.json under ${RESULTS_ENV}"
    if data_read(fresh["run_card"]["data"]) != committed_data:
        pytest.skip(f"this machine read other data files than the committed run of {notebook.name} (another copy, or a dataset "
                    "more or fewer): its numbers cannot be compared value for value")
    problems = drifted(committed, fresh["claims"])
    assert not problems, "results moved:\n" + "\n".join(problems)


def claim(id: str, ours: list[float], timing: bool = False) -> dict:
    return {"id": id, "ours": ours, "timing": timing}


def test_the_guard_catches_a_moved_result_and_lets_noise_pass():
    committed = {"a": claim("a", [0.80, 0.82, 0.81]), "t": claim("t", [2.0, 2.1, 2.2], timing=True), "z": claim("z", [0.5, 0.5, 0.5])}
    same = [claim("a", [0.80, 0.82, 0.81]), claim("t", [9.0, 9.0, 9.0], timing=True), claim("z", [0.5, 0.5, 0.5])]
    assert drifted(committed, same) == []  # timings may change
    noise = [claim("a", [0.81, 0.80, 0.83]), claim("t", [2.0, 2.0, 2.0], timing=True), claim("z", [0.5004, 0.5, 0.5])]
    assert drifted(committed, noise) == []
    broken = [claim("a", [0.50, 0.52, 0.51]), claim("t", [2.0, 2.0, 2.0], timing=True), claim("z", [0.52, 0.5, 0.5])]
    assert [p.split(":")[0] for p in drifted(committed, broken)] == ["a", "z"]
    assert [p.split(":")[0] for p in drifted(committed, same[:2])] == ["z"]  # a claim that vanished
    assert [p.split(":")[0] for p in drifted(committed, [*same, claim("new", [1.0])])] == ["new"]
    assert "2 values now" in drifted(committed, [claim("a", [0.8, 0.8]), *same[1:]])[0]


def test_the_tolerance_is_a_multiple_of_the_spread_of_a_difference_of_means():
    values = [1.0, 2.0, 3.0]
    assert tolerance(values) == pytest.approx(2.5 * 1.0 * math.sqrt(2 / 3) + 2e-3)
    assert tolerance([0.3]) == pytest.approx(1e-3)
