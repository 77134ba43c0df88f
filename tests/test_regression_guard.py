"""The regression guard: the quick profile's claims, as nbval's execution of each chapter produced
them in this session, against the values the committed notebook carries.

A change that moves a result fails here; it is accepted by re-executing the chapters (``make
notebooks``, which refreshes ``chapters/*.ipynb``) and committing them. ``make book`` never touches
those notebooks, so the guard always compares with what was committed. Only runs of the same data are
compared: a machine that reads another copy of a dataset (the official CIFAR-10 files rather than the
book's JPEG copy, say) skips it. Timings are left out (they belong to the machine).

**Tolerance.** A quick run is deterministic on one machine; what moves its numbers on another is
the machine: other kernels (instruction sets, thread counts) round differently, and a training
amplifies that. ``benchmarks/guard_drift.py`` measures it here by emulating other CPUs (AVX2 and
AVX-512 kernels, 1 and 2 threads; ``tests/guard_drift.json``), plus a native run on each other real
CPU it was run on (``--this-machine``: an Intel Xeon with AMX moved chapter 1's MNIST extension by a
point from the AMD EPYC the notebook was committed on, more than any emulation did), and the guard
allows ``MARGIN`` times the largest difference it measured between two of those, and at least ``FLOOR``
(one accuracy point, or 1% of a larger value: a single test image flipping moves a mean by about
that much). The committed seeds' spread does not enter: two runs of the same seeds differ by the
machine, not by a new draw of seeds.

A claim with no measured drift fails the guard until it is measured. A claim whose tolerance exceeds
``PROTECTS`` (5 accuracy points, or 5% of a larger value) is one the guard cannot protect: its quick
run is as chaotic as the effects a bug would have. Those are listed in :data:`UNPROTECTED` with the
reason, and a test keeps that list equal to what the tolerances say.
"""

import json
import statistics
from pathlib import Path

import pytest

from lib.reporting import GUARD_DATA_KEY, GUARD_KEY, RESULTS_ENV, comparable_values, data_read, load_results

CHAPTERS = sorted((Path(__file__).resolve().parents[1] / "chapters").glob("[0-9]*.ipynb"))
DRIFT_FILE = Path(__file__).with_name("guard_drift.json")
MARGIN = 2.0  # the tolerance is at least this many times the largest drift measured between two emulated machines
FLOOR = 0.01  # ... and at least this (times max(1, |mean|)): one accuracy point
PROTECTS = 0.05  # a claim whose tolerance exceeds this (times max(1, |mean|)) is not protected by the guard

# Claims whose tolerance is too wide to catch a bug: the claim, and why its quick run cannot be guarded
# (the drifts are benchmarks/guard_drift.py's, in tests/guard_drift.json).
RESNET = ("the quick ResNet keeps the epoch of lowest validation loss, on 2 to 18 validation images a sub-class, and stops early: "
          "between emulated machines that choice flips (seed 1's super-class accuracy ranged from 0.34 to 0.52). A patience of 5 "
          "(no early stop) or a validation share of 0.3 left a drift of 0.05 to 0.1")
UNPROTECTED: dict[str, str] = {
    "c2-new-class": "the added class's mean, placed by 200 Adam steps on a frozen model of 1,400 images, wins 19-24% of its images "
                    "depending on the machine: a drift of 0.047",
    "c3-resnet-super": RESNET,
    "c3-resnet-sub": RESNET,
    "c3-class-weights-help": "a difference of two ResNets: " + RESNET,
    "c3-class-weights-help-as-trained": "a difference of two ResNets: " + RESNET,
    "c3-convnext-better-sub": "the ConvNeXt's sub-class F1 (drift 0.002) minus the ResNet's: " + RESNET,
    "c3-convnext-super": "the quick ConvNeXt's super-class accuracy, after its 5 short epochs, is 0.437 under AVX-512 "
                         "kernels and 0.408 under AVX2 ones: a drift of 0.030",
    "c4-recon-gain": "the judge's accuracy on 500 reconstructed validation images after 5 epochs moves by up to 4.7 points",
    "c4-recon-gain-size": "the judge's accuracy on 500 reconstructed validation images after 5 epochs moves by up to 4.7 points",
    "c4-recon-gain-random": "a difference of two VAEs' reconstruction accuracies, each read by the judge on 500 validation images: "
                            "a drift of 9.5 points",
}


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


def measured_drift(path: Path = DRIFT_FILE) -> dict[str, float]:
    """Each claim's drift across the emulated machines and any other real machine measured
    (benchmarks/guard_drift.py), by claim id."""
    table = json.loads(path.read_text())
    return {id: d for entry in table["chapters"].values() for id, d in entry["drift"].items()}


def tolerance(values: list[float], drift: float) -> float:
    """How far a fresh mean may move from the committed ``values``' mean: MARGIN times the claim's
    measured drift across machines, and at least FLOOR."""
    return max(MARGIN * drift, FLOOR * max(1.0, abs(statistics.fmean(values))))


def protected(values: list[float], drift: float) -> bool:
    """Whether the guard's tolerance for this claim is narrow enough to catch a bug."""
    return tolerance(values, drift) <= PROTECTS * max(1.0, abs(statistics.fmean(values)))


def drifted(committed: dict[str, dict], fresh: list[dict], drift: dict[str, float]) -> list[str]:
    """What moved: one line per claim whose fresh mean left the committed mean's tolerance, that
    appeared, vanished or changed its number of seeds, or whose drift was never measured."""
    problems = []
    fresh_by_id = {c["id"]: c for c in fresh}
    for id in sorted(set(committed) | set(fresh_by_id)):
        if id not in fresh_by_id or id not in committed:
            problems.append(f"{id}: {'no longer made' if id in committed else 'new'}; re-execute and commit the notebook (make notebooks)")
            continue
        old, new = committed[id], fresh_by_id[id]
        if old.get("timing") or new.get("timing"):
            continue
        if old.get("unit", "") != new.get("unit", ""):
            problems.append(f"{id}: in {new.get('unit') or 'its own scale'} now, {old.get('unit') or 'its own scale'} committed; "
                            "re-execute and commit the notebook (make notebooks)")
            continue
        if len(old["ours"]) != len(new["ours"]):
            problems.append(f"{id}: {len(new['ours'])} values now, {len(old['ours'])} committed")
            continue
        if not old["ours"]:
            continue  # not run, both times
        old, new = {**old, "ours": comparable_values(old)}, {**new, "ours": comparable_values(new)}  # accuracy points as fractions
        if id not in drift:
            problems.append(f"{id}: its drift across machines was never measured; run python benchmarks/guard_drift.py and commit "
                            f"{DRIFT_FILE.name}")
            continue
        delta, allowed = statistics.fmean(new["ours"]) - statistics.fmean(old["ours"]), tolerance(old["ours"], drift[id])
        if abs(delta) > allowed:
            problems.append(f"{id}: mean {statistics.fmean(new['ours']):.4g} now, {statistics.fmean(old['ours']):.4g} committed "
                            f"(moved {delta:+.3g}, allowed ±{allowed:.3g})")
    return problems


def guarded_claims() -> dict[str, tuple[list[float], float | None]]:
    """Every committed claim the guard compares: its committed values and its measured drift."""
    drift = measured_drift()
    return {id: (comparable_values(c), drift.get(id)) for nb in CHAPTERS for id, c in committed_claims(nb)[0].items()
            if c["ours"] and not c.get("timing")}


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
    problems = drifted(committed, fresh["claims"], measured_drift())
    assert not problems, "results moved:\n" + "\n".join(problems)


def claim(id: str, ours: list[float], timing: bool = False) -> dict:
    return {"id": id, "ours": ours, "timing": timing}


def test_the_guard_catches_a_moved_result_and_lets_the_machines_drift_pass():
    committed = {"a": claim("a", [0.80, 0.82, 0.81]), "t": claim("t", [2.0, 2.1, 2.2], timing=True), "z": claim("z", [0.5, 0.5, 0.5])}
    drift = {"a": 0.01, "z": 0.0}
    same = [claim("a", [0.80, 0.82, 0.81]), claim("t", [9.0, 9.0, 9.0], timing=True), claim("z", [0.5, 0.5, 0.5])]
    assert drifted(committed, same, drift) == []  # timings may change
    machine = [claim("a", [0.82, 0.83, 0.84]), claim("t", [2.0, 2.0, 2.0], timing=True), claim("z", [0.51, 0.5, 0.5])]
    assert drifted(committed, machine, drift) == []  # a moved 0.02 (within 2 x 0.01), z 0.0033 (under the floor)
    broken = [claim("a", [0.80, 0.82, 0.95]), claim("t", [2.0, 2.0, 2.0], timing=True), claim("z", [0.55, 0.5, 0.5])]
    assert [p.split(":")[0] for p in drifted(committed, broken, drift)] == ["a", "z"]
    assert [p.split(":")[0] for p in drifted(committed, same[:2], drift)] == ["z"]  # a claim that vanished
    assert [p.split(":")[0] for p in drifted(committed, [*same, claim("new", [1.0])], drift)] == ["new"]
    assert "2 values now" in drifted(committed, [claim("a", [0.8, 0.8]), *same[1:]], drift)[0]
    assert "never measured" in drifted(committed, broken, {"a": 0.01})[1]


def test_the_guard_compares_accuracy_points_on_the_scale_of_the_measured_drift():
    """Drifts are measured as fractions of 1; a claim shown in accuracy points is compared on that scale."""
    committed = {"d": {**claim("d", [-0.9, -0.9]), "unit": "points"}}
    drift = {"d": 0.005}  # half a point: allowed ±1 point
    assert drifted(committed, [{**claim("d", [-1.6, -1.6]), "unit": "points"}], drift) == []
    assert [p.split(":")[0] for p in drifted(committed, [{**claim("d", [-2.1, -2.1]), "unit": "points"}], drift)] == ["d"]
    assert "re-execute" in drifted(committed, [claim("d", [-0.009, -0.009])], drift)[0]  # the unit changed: not compared


def test_the_tolerance_is_the_machines_drift_with_a_margin_and_a_floor():
    assert tolerance([0.3, 0.5], drift=0.02) == pytest.approx(MARGIN * 0.02)
    assert tolerance([0.3, 0.5], drift=0.0) == pytest.approx(FLOOR)
    assert tolerance([12.0, 8.0], drift=0.0) == pytest.approx(FLOOR * 10)  # relative for values beyond 1
    assert protected([0.3, 0.3], drift=0.025) and not protected([0.3, 0.3], drift=0.026)


def test_every_claim_is_measured_and_either_protected_or_listed_as_not():
    claims = guarded_claims()
    unmeasured = sorted(id for id, (_, drift) in claims.items() if drift is None)
    assert not unmeasured, f"no drift measured for {unmeasured}: python benchmarks/guard_drift.py, then commit {DRIFT_FILE.name}"
    unguarded = {id for id, (values, drift) in claims.items() if not protected(values, drift)}
    assert unguarded == set(UNPROTECTED), (f"claims the guard cannot protect: {sorted(unguarded)}; listed: {sorted(UNPROTECTED)}. "
                                           "List each with its reason in UNPROTECTED, or make its quick run less chaotic")


# ---------------------------------------------------------------- the guard has teeth

ROOT = Path(__file__).resolve().parents[1]
TEETH_CHAPTER = "04_vae_cluster_labelling"
# A plausible bug: Eq. (3)'s classification term dropped, so the propagated labels never train the classifier.
PLANTED = ("lib/cluster_labelling.py",
           "loss = parts.total + config.gamma * ce if labelling is not None else parts.total  # Eq. (3)",
           "loss = parts.total  # Eq. (3), its classification term dropped")
EMULATION = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}  # an AVX2 CPU, as `make test` is checked under


def quick_claims(root: Path, results: Path, env: dict | None = None) -> list[dict]:
    """The quick run of TEETH_CHAPTER from the tree at ``root``: its claims (saved even when a
    code-health check then stopped it)."""
    import os
    import subprocess
    import sys

    run_env = {k: v for k, v in os.environ.items() if k not in ("BOOK_THREADS", *EMULATION, "MKL_ENABLE_INSTRUCTIONS")}
    run_env.update(env or {}, BOOK_RESULTS_ROOT=str(results), PYTHONPATH=str(root))
    done = subprocess.run([sys.executable, "-m", "lib.run", str(root / "chapters" / f"{TEETH_CHAPTER}.py")], cwd=root, env=run_env,
                          capture_output=True, text=True, timeout=600)
    saved = load_results(results, "quick", TEETH_CHAPTER)
    assert saved is not None, f"the run left no results:\n{(done.stdout + done.stderr)[-3000:]}"
    return saved["claims"]


@pytest.fixture(scope="module")
def teeth_data():
    from lib.data import DataError, load_mnist

    try:
        load_mnist()
    except DataError as err:
        pytest.skip(f"MNIST is not here ({err})")


def test_the_guard_fails_on_a_planted_bug(tmp_path, teeth_data):
    import shutil

    copy = tmp_path / "tree"
    for part in ("lib", "chapters"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__", "*.ipynb"))
    (copy / "data").mkdir()
    shutil.copy(ROOT / "data" / "manifest.tsv", copy / "data" / "manifest.tsv")
    path, old, new = PLANTED
    source = (copy / path).read_text()
    assert source.count(old) == 1, f"the planted bug no longer applies: {path} changed; plant another"
    (copy / path).write_text(source.replace(old, new))
    committed, _ = committed_claims(ROOT / "chapters" / f"{TEETH_CHAPTER}.ipynb")
    problems = drifted(committed, quick_claims(copy, tmp_path / "results"), measured_drift())
    assert any(p.startswith("c4-accuracy:") for p in problems), f"the guard missed the planted bug: {problems}"


def test_the_guard_passes_the_same_code_on_an_emulated_avx2_cpu(tmp_path, teeth_data):
    committed, _ = committed_claims(ROOT / "chapters" / f"{TEETH_CHAPTER}.ipynb")
    problems = drifted(committed, quick_claims(ROOT, tmp_path / "results", EMULATION), measured_drift())
    assert problems == [], "under ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2:\n" + "\n".join(problems)
