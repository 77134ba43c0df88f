"""Earlier readings kept beside new ones, and the reproducibility summary, on toy results."""

import json
import time

import pytest
import torch

from lib.readings import changed_readings_markdown, earlier, keep, reproducibility_summary
from lib.verdicts import AtLeast, Above, Scale
from tests.test_reporting import results_of


def saved_cpu_run(root, values, rule, seeds=(0, 1, 2)):
    cpu = results_of(root, profile="cpu", seeds=seeds, chapter="04_x")
    cpu.converged(True, "a criterion")
    cpu.claim("gain", "a gain", "> 0", values, rule, needs=Scale.CONVERGED, unit="points")
    cpu.claim("same", "unchanged", 0.5, [0.6, 0.61, 0.62], AtLeast(0.5), needs=Scale.CONVERGED)
    cpu.save(device=torch.device("cpu"), data=[], initialisation="random")
    return json.loads((root / "cpu" / "04_x" / "results.json").read_text())


def test_a_kept_reading_stays_beside_the_new_one_until_and_after_the_re_run(tmp_path):
    root = tmp_path / "results"
    folder = root / "cpu" / "04_x"
    with pytest.raises(FileNotFoundError, match="no run"):
        keep(folder)
    first = saved_cpu_run(root, [0.019, 0.02, 0.021], Above(0.0))
    keep(folder), keep(folder)  # once per run
    assert len(earlier(folder)) == 1 and earlier(folder)[0]["run"]["commit"] == first["run_card"]["versions"]["git"]
    quick = results_of(root, chapter="04_x")  # this run's claims carry the new rule
    quick.claim("gain", "a gain of more than 2 points", "> 2", [0.0, 0.01], Above(0.02), needs=Scale.CONVERGED, unit="points")
    why = {"gain": "the paper says 'a clear gain': a rule of > 0 accepted any noise above zero"}
    table = changed_readings_markdown(folder, quick.claims, first, why)
    row = next(line for line in table.splitlines() if "`gain`" in line)
    assert "CI > 0" in row and "**reproduced**" in row and "CI > 2" in row and "not re-run yet" in row and "any noise" in row
    assert "`same`" not in table  # an unchanged reading is not listed
    time.sleep(1.01)  # a run is known by when it started, to the second
    again = saved_cpu_run(root, [0.01, 0.011, 0.012], Above(0.02))  # the re-run under the new rule
    row = next(line for line in changed_readings_markdown(folder, quick.claims, again, why).splitlines() if "`gain`" in line)
    assert "**reproduced**" in row.split("|")[3] and "**not reproduced**" in row.split("|")[5]
    assert changed_readings_markdown(tmp_path / "none", quick.claims, again, why) == ""


def test_the_summary_reads_scope_results_and_compute_from_the_runs(tmp_path):
    root = tmp_path / "results"
    cpu = saved_cpu_run(root, [0.019, 0.02, 0.021], Above(0.0))
    quick = results_of(root, chapter="04_x")
    quick.claim("gain", "a gain", "> 0", [0.0, 0.01], Above(0.0), needs=Scale.CONVERGED, unit="points")
    quick.claim("only-quick", "a claim only the quick run has", 1, [1.0, 3.0], AtLeast(1.5), needs=Scale.TOY)
    quick.save(device=torch.device("cpu"), data=[], initialisation="random")
    text = reproducibility_summary({"cpu": cpu, "quick": {"claims": quick.claims, "run_card": quick.card}},
                                   method="M.", easy="E.", difficult="D.", left_open="L.")
    assert "3 claims" in text and "2 at the cpu profile's scale, 1 at the quick profile's scale" in text
    assert "2 reproduced" in text and "1 inconclusive" in text  # each claim counted once, at its strongest profile
    assert text.index("cpu:") < text.index("quick:") and "3 seeds" in text and "**What was difficult.** D." in text
    dropped = reproducibility_summary({"cpu": cpu, "quick": {"claims": quick.claims, "run_card": quick.card}}, method="M.", easy="E.",
                                      difficult="D.", left_open="L.", ids=["gain", "only-quick"])  # "same" was dropped since the cpu run
    assert "2 claims" in dropped and "1 at the cpu profile's scale, 1 at the quick profile's scale" in dropped
    assert "†" not in text  # both runs were made by the code as it is
    cpu["run_card"]["versions"]["lib"] = "an earlier digest"
    stale = reproducibility_summary({"cpu": cpu, "quick": {"claims": quick.claims, "run_card": quick.card}},
                                    method="M.", easy="E.", difficult="D.", left_open="L.")
    assert "2 at the cpu profile's scale †, 1 at the quick profile's scale" in stale
    assert "† The cpu run was made by an earlier version of this chapter's code" in stale
    cpu["run_card"]["units_made_by"] = [{"git": "0123abc", "machine": "cpu: a trainer, 1 threads"}]  # rendered from its records
    merged = reproducibility_summary({"cpu": cpu}, method="M.", easy="E.", difficult="D.", left_open="L.")
    assert "h of training on cpu: a trainer, 1 threads (3 seeds" in merged and cpu["run_card"]["device"] not in merged


def test_an_unconverged_cpu_run_is_said_to_count_at_toy_scale_in_the_summary(tmp_path):
    root = tmp_path / "results"
    cpu = results_of(root, profile="cpu", seeds=(0, 1, 2), chapter="04_x")
    cpu.converged(False, "a criterion its models missed")
    cpu.claim("gain", "a gain", "> 0", [0.019, 0.02, 0.021], Above(0.0), needs=Scale.CONVERGED, unit="points")
    cpu.save(device=torch.device("cpu"), data=[], initialisation="random")
    text = reproducibility_summary({"cpu": {"claims": cpu.claims, "run_card": cpu.card}}, method="M.", easy="E.", difficult="D.",
                                   left_open="L.")
    assert "1 from the cpu profile's run, counted at toy scale (its models missed the convergence criterion)" in text
    assert "at the cpu profile's scale" not in text and "1 needs a larger run" in text


def test_a_page_shows_its_own_profiles_earlier_readings_beside_its_verdicts(tmp_path):
    from unittest import mock

    root = tmp_path / "results"
    saved_cpu_run(root, [0.019, 0.02, 0.021], Above(0.0))
    keep(root / "cpu" / "04_x")
    time.sleep(1.01)  # a run is known by when it started, to the second
    again = results_of(root, profile="cpu", seeds=(0, 1, 2), chapter="04_x")  # the re-run, under a new rule
    again.converged(True, "a criterion")
    again.claim("gain", "a gain of more than 2 points", "> 2", [0.01, 0.011, 0.012], Above(0.02), needs=Scale.CONVERGED, unit="points")
    shown = []
    with mock.patch("IPython.display.display", side_effect=lambda md: shown.append(md.data)):
        again.show_changed_readings(root, {"gain": "a clearer rule"}, {})
    assert len(shown) == 1  # the cpu page's own table; no stronger profile kept any
    row = next(line for line in shown[0].splitlines() if "`gain`" in line)
    assert "**reproduced**" in row.split("|")[3] and "**not reproduced**" in row.split("|")[5] and "a clearer rule" in row
