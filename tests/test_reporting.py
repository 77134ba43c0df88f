"""Intervals, the results file with its run card, and the scorecard's headline."""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from lib import scorecard, vae_experiment
from lib.evaluation import accuracy, mean_ci, short_ci
from lib.provenance import ONEDNN_ISAS, cpu_description, git_commit, native_bf16, numeric_path, onednn_isa
from lib.reporting import ChapterResults, claims_markdown, format_ours, load_results, run_card_markdown, run_scale, show_stronger_profiles
from lib.settings import RunSettings
from lib.verdicts import INCONCLUSIVE, NEEDS_LARGER, NOT_REPRODUCED, NOT_RUN, REPRODUCED, UNTESTABLE, Above, AtLeast, Between, Scale


@dataclass(frozen=True)
class ToySettings:
    run: RunSettings
    a: int = 1


def results_of(root, profile="quick", seeds=(0, 1), chapter="99_test") -> ChapterResults:
    return ChapterResults(chapter, ToySettings(RunSettings(profile, tuple(seeds), "cpu", str(root), False)), vae_experiment)


def test_mean_ci_by_hand():
    ci = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n)
    assert ci.n == 3 and math.isclose(ci.mean, 2.0)
    assert math.isclose(ci.low, 2.0 - half, rel_tol=1e-9) and math.isclose(ci.high, 2.0 + half, rel_tol=1e-9)
    with pytest.raises(ValueError):
        mean_ci([])


def test_accuracy():
    assert accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]), torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)


def test_short_ci_is_the_mean_and_the_half_width():
    half = 4.302652729911275 * 1.0 / math.sqrt(3)
    assert short_ci([1.0, 2.0, 3.0]) == f"2.000 ± {half:.3f}"
    assert short_ci([0.5]) == "0.500" and short_ci([1.0, 1.0], digits=1) == "1.0 ± 0.0"


def test_a_claim_is_judged_only_at_the_scale_it_needs(tmp_path):
    quick, cpu = results_of(tmp_path), results_of(tmp_path, profile="cpu")
    for results in (quick, cpu):
        results.claim("abs", "an absolute accuracy", 0.9, [0.5, 0.51, 0.52], AtLeast(0.9), needs=Scale.PAPER)
        results.claim("diff", "a difference", "> 0", [0.05, 0.06, 0.07], Between(0.0, 1.0), needs=Scale.CONVERGED)
    assert [c["verdict"] for c in quick.claims] == [NEEDS_LARGER, NEEDS_LARGER]
    assert [c["verdict"] for c in cpu.claims] == [NEEDS_LARGER, REPRODUCED]
    assert quick.claims[0]["mean"] == pytest.approx(0.51) and "needs the paper's models and settings" in quick.claims[0]["why"]
    cpu.converged(False, "test accuracy moved by 2 points over the last 3 epochs")
    assert cpu.claim("diff", "a difference", "> 0", [0.05, 0.06, 0.07], Between(0.0, 1.0), needs=Scale.CONVERGED)["verdict"] == NEEDS_LARGER


def test_a_smaller_model_that_can_test_a_claim_judges_it_and_is_named(tmp_path):
    quick, cpu = results_of(tmp_path), results_of(tmp_path, profile="cpu")
    for results in (quick, cpu):
        results.claim("gap", "B beats A by 5 points", "+5", [-0.08, -0.09, -0.12], Above(0.05), needs=Scale.PAPER, unit="points",
                      stand_in="mini backbones")
        results.claim("priv", "an accuracy on private data", 0.9, [0.5, 0.6], AtLeast(0.9), needs=Scale.PAPER,
                      untestable="the paper's data is private; a run on it would test it")
    gap, priv = cpu.claims
    assert gap["verdict"] == NOT_REPRODUCED and gap["stand_in"] == "mini backbones"  # decided: never hidden behind the scale
    assert gap["ours"] == pytest.approx([-8, -9, -12]) and gap["rule"] == "CI > 5"  # differences of accuracies, in points
    assert "(stand-in: mini backbones)" in claims_markdown(cpu.claims) and " pts" in claims_markdown(cpu.claims)
    assert priv["verdict"] == UNTESTABLE and "would test it" in claims_markdown(cpu.claims)
    assert quick.claims[0]["verdict"] == NEEDS_LARGER and quick.claims[0]["stand_in"] is None  # the toy run tests nothing


def test_an_earlier_records_untested_verdict_reads_in_todays_words(tmp_path):
    cpu = results_of(tmp_path, profile="cpu")
    cpu.claim("a", "private", 0.9, [0.5, 0.6], AtLeast(0.9), needs=Scale.PAPER, untestable="private data")
    cpu.claim("b", "scale", 0.9, [0.5, 0.6], AtLeast(0.9), needs=Scale.PAPER)
    path = cpu.save(device=torch.device("cpu"), data=[], initialisation="random")
    saved = json.loads(path.read_text())
    for c in saved["claims"]:
        c["verdict"] = "untested at this scale"
    saved["claims"][1]["why"] = "needs the paper's scale; this run is at converged on the paper's data"
    path.write_text(json.dumps(saved))
    assert [c["verdict"] for c in load_results(tmp_path, "cpu", "99_test")["claims"]] == [UNTESTABLE, NEEDS_LARGER]


def test_results_file_carries_claims_and_run_card(tmp_path):
    results = results_of(tmp_path, profile="full")
    results.converged(True, "a criterion")
    results.claim("x", "a claim", 0.5, [0.4, 0.6], AtLeast(0.5), needs=Scale.PAPER)
    results.claim("y", "a narrow one", 0.5, [0.61, 0.6], AtLeast(0.5), needs=Scale.PAPER)
    results.not_run("z", "another claim", 1.0, "dataset unavailable", needs=Scale.PAPER)
    results.not_run("u", "a claim on data no machine here reaches", 1.0, "untestable here: no copy", needs=Scale.PAPER, untestable=True)
    with pytest.raises(ValueError, match="no valid values"):
        results.claim("w", "bad", 1.0, [float("nan")], AtLeast(1), needs=Scale.TOY)
    path = results.save(device=torch.device("cpu"), data=[{"dataset": "d", "files": {"f": "sha256:00"}}], initialisation="random")
    saved = json.loads(path.read_text())
    card = saved["run_card"]
    assert card["settings"] == {"run": {"profile": "full", "seeds": [0, 1], "device": "cpu", "results_root": str(tmp_path), "smoke": False}, "a": 1}
    for key in ("profile", "scale", "settings", "seeds", "device", "threads", "numerics", "versions", "data", "initialisation", "convergence",
                "wall_time_s"):
        assert key in card
    assert f"ATen {torch.backends.cpu.get_cpu_capability()}" in card["device"] and "oneDNN" in card["device"]
    assert {"python", "torch", "torchvision", "lib", "git"} <= set(card["versions"])
    assert [c["verdict"] for c in saved["claims"]] == [INCONCLUSIVE, REPRODUCED, NOT_RUN, UNTESTABLE]  # two seeds: [0.4, 0.6] decides nothing
    assert format_ours(saved["claims"][3]) == "—"
    assert load_results(tmp_path, "full", "99_test") == saved
    assert load_results(tmp_path, "cpu", "99_test") is None
    assert "cpu" in run_card_markdown(card) and "wall time" in run_card_markdown(card) and "converged: **yes**" in run_card_markdown(card)


def test_the_git_commit_comes_from_the_environment_outside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_GIT_COMMIT", "abc123")
    assert git_commit(tmp_path) == "abc123 (from BOOK_GIT_COMMIT)"
    monkeypatch.delenv("BOOK_GIT_COMMIT")
    assert "not a git checkout" in git_commit(tmp_path)


def make_book(tmp_path):
    (tmp_path / "chapters").mkdir()
    (tmp_path / "chapters" / "04_x.py").write_text("# # Chapter 4 — X\n")
    (tmp_path / "chapters" / "05_y.py").write_text("# # Chapter 5 — Y\n")
    root = tmp_path / "results"
    quick = results_of(root, seeds=(0, 1, 2), chapter="04_x")
    quick.claim("a", "seventy-five percent", 0.75, [0.6, 0.62, 0.64], AtLeast(0.75), needs=Scale.PAPER)
    quick.claim("b", "a gain", "> 0", [0.1, 0.11, 0.12], Between(0, 1), needs=Scale.CONVERGED)
    quick.claim("c", "a claim only this run has", 1, [1.0, 1.0], Between(0, 2), needs=Scale.TOY)
    quick.save(device=torch.device("cpu"), data=[], initialisation="random")
    cpu = results_of(root, profile="cpu", seeds=(0, 1, 2), chapter="04_x")
    cpu.claim("a", "seventy-five percent", 0.75, [0.5, 0.51, 0.52], AtLeast(0.75), needs=Scale.PAPER)
    cpu.claim("b", "a gain", "> 0", [-0.1, -0.11, -0.12], Between(0, 1), needs=Scale.CONVERGED)
    cpu.not_run("c", "a claim only this run has", 1, "no data", needs=Scale.TOY)
    cpu.save(device=torch.device("cpu"), data=[], initialisation="random")


def test_the_headline_takes_each_claim_from_the_strongest_profile_that_ran_it(tmp_path):
    make_book(tmp_path)
    text = scorecard.render(tmp_path)
    ch4 = [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| {doc}`Ch. 4")]
    counts = next(cells for cells in ch4 if len(cells) == 7)  # chapter, then one column per verdict
    rows = {cells[1]: " | ".join(cells) for cells in ch4 if len(cells) == 8}
    assert " cpu | 3 | " in rows["seventy-five percent"] and f"**{NEEDS_LARGER}**" in rows["seventy-five percent"] and "0.51" in rows["seventy-five percent"]
    assert " cpu | 3 | " in rows["a gain"] and f"**{NOT_REPRODUCED}**" in rows["a gain"]
    assert " quick | 2 | " in rows["a claim only this run has"]  # the cpu run could not run it: the quick one is the evidence
    assert counts[1:] == ["1", "1", "", "", "1", ""]  # reproduced, not reproduced, inconclusive, untestable, needs larger, not run
    assert "Chapter 5 — Y" in text and "**not run**" in text  # no results: says how to run it


def test_the_per_profile_page_lists_every_profile(tmp_path):
    make_book(tmp_path)
    text = scorecard.render_by_profile(tmp_path)
    assert text.index("## The full profile") < text.index("## The cpu profile") < text.index("## The quick profile")
    assert text.count("Not run. Run `python -m lib.run chapters/05_y.py") == 3 and "--profile full" in text


def test_a_result_made_by_other_code_is_marked(tmp_path):
    make_book(tmp_path)
    path = tmp_path / "results" / "cpu" / "04_x" / "results.json"
    saved = json.loads(path.read_text())
    saved["run_card"]["versions"]["lib"] = "0000000000000000"
    path.write_text(json.dumps(saved))
    assert "| cpu † |" in scorecard.render(tmp_path).replace(" † ", " † ") and "earlier version" in scorecard.render(tmp_path)


def test_a_run_that_did_not_converge_is_marked_and_tests_nothing(tmp_path):
    make_book(tmp_path)
    assert "‡" not in scorecard.render(tmp_path)  # the cards record no convergence: nothing to mark
    root = tmp_path / "results"
    cpu = results_of(root, profile="cpu", seeds=(0, 1, 2), chapter="04_x")
    cpu.converged(False, "the curve moved")
    cpu.claim("b", "a gain", "> 0", [0.1, 0.11, 0.12], Between(0, 1), needs=Scale.CONVERGED)
    cpu.save(device=torch.device("cpu"), data=[], initialisation="random")
    text = scorecard.render(tmp_path)
    row = next(line for line in text.splitlines() if "| a gain |" in line)
    assert "| cpu ‡ | 3 |" in row and f"**{NEEDS_LARGER}**" in row  # inside the rule's region, yet untested: not converged
    assert "did not meet the chapter's convergence criterion" in text


def test_a_chapter_labels_a_stronger_run_by_the_scale_it_reached_not_by_its_profile(tmp_path):
    root = tmp_path / "results"
    for converged in (True, False):
        cpu = results_of(root, profile="cpu", chapter=f"04_{converged}")
        cpu.converged(converged, "the curve moved")
        cpu.save(device=torch.device("cpu"), data=[], initialisation="random")
        card = load_results(root, "cpu", f"04_{converged}")["run_card"]
        label = run_scale(card, "cpu")
        assert label.startswith(Scale.CONVERGED.label if converged else Scale.TOY.label)
        assert ("did not converge" in label) is not converged
    old = root / "full" / "04_old" / "results.json"  # a card of an older format: refused where it is read, with how to renew it
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"claims": [], "run_card": {"profile": "full"}}))
    with pytest.raises(ValueError, match=r"04_old/results.json: a run card of an older format.*04_old.py --profile full"):
        load_results(root, "full", "04_old")


def test_show_stronger_profiles_says_how_to_run_them_or_shows_the_saved_results(tmp_path):
    make_book(tmp_path)
    shown = show_stronger_profiles(tmp_path / "results", "04_x", "quick", ["missing-figure"])
    assert list(shown) == ["cpu"] and shown["cpu"]["claims"][0]["id"] == "a"
    assert show_stronger_profiles(tmp_path / "results", "04_x", "full", []) == {}


def test_a_test_run_writes_beside_the_books_results_never_into_them(tmp_path, monkeypatch):
    from lib.reporting import RESULTS_ENV, results_dir

    assert results_dir("../results", "quick", "99_test") == Path("../results/quick/99_test")
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path))
    assert results_dir("../results", "quick", "99_test") == tmp_path / "quick" / "99_test"
    results = results_of(tmp_path / "elsewhere")
    assert results.dir == tmp_path / "quick" / "99_test" and results.dir.is_dir()
    monkeypatch.setenv(RESULTS_ENV, "relative/path")
    with pytest.raises(ValueError, match="absolute path"):
        results_dir("../results", "quick", "99_test")


def test_threads_are_pinned_for_the_quick_profile_and_named_by_the_environment(monkeypatch):
    from lib.provenance import QUICK_THREADS, THREADS_ENV, pin_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv(THREADS_ENV, raising=False)
        torch.set_num_threads(1)
        assert pin_threads("quick") == QUICK_THREADS == torch.get_num_threads() == 2
        assert pin_threads("cpu") == 2  # other profiles keep what torch uses
        monkeypatch.setenv(THREADS_ENV, "1")
        assert pin_threads("quick") == 1 == torch.get_num_threads()
        for bad in ("0", "two", "-1"):
            monkeypatch.setenv(THREADS_ENV, bad)
            with pytest.raises(ValueError, match=THREADS_ENV):
                pin_threads("quick")
    finally:
        torch.set_num_threads(before)


def test_a_profile_the_chapter_does_not_have_is_not_offered(tmp_path):
    shown = show_stronger_profiles(tmp_path / "results", "99_no_such_chapter", "quick", [])
    assert shown == {}  # no results and no profile file: nothing to show and no command that would fail


def test_the_run_card_names_the_instruction_set_a_cap_leaves(monkeypatch):
    best = onednn_isa(cap="")
    assert best in ONEDNN_ISAS
    assert onednn_isa(cap=ONEDNN_ISAS[-1].upper()) == best  # a cap above the CPU's best changes nothing
    if best != "sse41":
        assert onednn_isa(cap="SSE41") == f"sse41 (capped by ONEDNN_MAX_CPU_ISA; the CPU has {best})"
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    assert cpu_description(threads=3).endswith("MKL capped at AVX2, 3 threads")


def test_the_numeric_path_follows_the_device_its_bf16_and_the_recipes():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    recipes = {"run": {"seeds": [0]}, "recipe": {"amp": True, "channels_last": True}}
    assert numeric_path(cpu, recipes, bf16=True) == "bf16 autocast, channels-last"  # a CPU with AVX-512 BF16 or AMX
    assert numeric_path(cpu, recipes, bf16=False) == "fp32 (bf16 autocast asked, but this CPU has no native bf16), channels-last"
    assert numeric_path(cuda, recipes, bf16=True) == "bf16 autocast, channels-last"
    mixed = {"a": {"amp": False, "channels_last": True}, "b": {"amp": False, "channels_last": False}}
    assert numeric_path(cuda, mixed, bf16=True) == "fp32, channels-last and contiguous"
    assert numeric_path(cpu, {"a": {"amp": True}, "b": {"amp": False}}, bf16=True) == "bf16 autocast and fp32"
    assert numeric_path(cpu, {"epochs": 3}) == "fp32"


def test_native_bf16_follows_the_instruction_set_a_cap_leaves():
    cpu = torch.device("cpu")
    assert not native_bf16(cpu, cap="AVX2")  # oneDNN capped below AVX-512 BF16 emulates it: fp32 is faster
    assert native_bf16(cpu, cap="") == (ONEDNN_ISAS.index(onednn_isa(cap="")) >= ONEDNN_ISAS.index("avx512_core_bf16"))


def test_the_front_page_figure_has_a_panel_per_claim_with_a_number(tmp_path):
    make_book(tmp_path)
    fig = scorecard.figure(tmp_path)
    panels = [ax for ax in fig.axes if ax.axison]
    titles = [ax.get_title(loc="left") for ax in panels]
    assert len(panels) == 3  # chapter 4's claims, each at its strongest profile (c: the quick run, as the cpu run could not run it)
    assert titles[0].endswith("cpu, n=3: needs a larger run") and titles[1].endswith("cpu, n=3: not reproduced")
    assert titles[2].endswith("quick, n=2: reproduced")
    saved = next((tmp_path / "results" / "cpu").glob("*/results.json"))
    results = json.loads(saved.read_text())
    results["run_card"]["versions"]["lib"] = "an earlier digest"
    saved.write_text(json.dumps(results))  # the cpu run was made by earlier code: its panels carry the table's †
    titles = [ax.get_title(loc="left") for ax in scorecard.figure(tmp_path).axes if ax.axison]
    assert titles[0].endswith("cpu †, n=3: needs a larger run") and titles[2].endswith("quick, n=2: reproduced")
    results["run_card"]["convergence"] = {"converged": False, "criterion": "the curve moved"}
    saved.write_text(json.dumps(results))  # ... and its models missed the convergence criterion: the table's ‡ too
    titles = [ax.get_title(loc="left") for ax in scorecard.figure(tmp_path).axes if ax.axison]
    assert titles[0].endswith("cpu † ‡, n=3: needs a larger run") and titles[2].endswith("quick, n=2: reproduced")
    (tmp_path / "empty" / "chapters").mkdir(parents=True)
    assert scorecard.figure(tmp_path / "empty") is None


def test_the_status_table_has_a_row_per_run_from_its_card(tmp_path):
    make_book(tmp_path)
    (tmp_path / "chapters" / "profiles").mkdir()
    (tmp_path / "chapters" / "profiles" / "04_x.cpu.yaml").write_text("profile: cpu\n")
    text = scorecard.render_status(tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| {doc}`Ch. 4")]
    assert [r.split("|")[2].strip() for r in rows] == ["cpu", "quick"]  # no full profile file: no full row
    assert "3 (0, 1, 2)" in rows[0] and "fp32" in rows[0] and "stale †" not in rows[0]
    assert sum("not run" in line for line in text.splitlines() if "Ch. 5" in line) == 1
    saved = next((tmp_path / "results" / "cpu").glob("*/results.json"))
    results = json.loads(saved.read_text())
    results["run_card"]["units_made_by"] = [{"git": "0123abc", "machine": "cuda: a trainer's GPU"}]
    saved.write_text(json.dumps(results))  # rendered here from records that another machine trained
    row = next(line for line in scorecard.render_status(tmp_path).splitlines() if "| cpu |" in line)
    assert "cuda: a trainer's GPU; fp32" in row and results["run_card"]["device"] not in row
    page = results["run_card"]["versions"]["git"]
    assert f"trainings `0123abc`; page `{page}`" in row  # the code the trainings ran, then the later render's
    results["run_card"]["units_made_by"] = [{"git": page, "machine": "cuda: a trainer's GPU"}]
    saved.write_text(json.dumps(results))
    row = next(line for line in scorecard.render_status(tmp_path).splitlines() if "| cpu |" in line)
    assert f"| `{page}` |" in row and "trainings" not in row  # trained and rendered at one commit: named once


@pytest.mark.parametrize("render", [scorecard.render, scorecard.render_status])
def test_a_wide_table_gives_the_pdf_a_width_for_each_of_its_columns_within_the_line(tmp_path, render):
    import re

    make_book(tmp_path)
    (tmp_path / "chapters" / "profiles").mkdir(exist_ok=True)
    lines = render(tmp_path).splitlines()
    spec = next(i for i, line in enumerate(lines) if line.startswith("```{tabularcolumns}"))
    header = next(line for line in lines[spec:] if line.startswith("| chapter"))  # the table the spec applies to
    widths = [int(a) / int(b) for a, b in re.findall(r"\\X\{(\d+)\}\{(\d+)\}", lines[spec])]
    assert len(widths) == header.count("|") - 1 and sum(widths) < 1
