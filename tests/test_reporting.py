"""Intervals, verdict rules, the results file and the scorecard."""

import json
import math
from dataclasses import dataclass

import pytest
import torch

from lib import scorecard, vae_experiment
from lib.evaluation import accuracy, mean_ci
from lib.settings import RunSettings
from lib.reporting import (
    NOT_REPRODUCED,
    REPRODUCED,
    Above,
    AtLeast,
    AtMost,
    Between,
    ChapterResults,
    load_results,
    run_card_markdown,
)


@dataclass(frozen=True)
class ToySettings:
    run: RunSettings
    a: int = 1


def results_of(root, profile="quick", seeds=(0, 1), chapter="99_test") -> ChapterResults:
    return ChapterResults(chapter, ToySettings(RunSettings(profile, tuple(seeds), "cpu", str(root))), vae_experiment)


def test_mean_ci_by_hand():
    ci = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n)
    assert ci.n == 3 and math.isclose(ci.mean, 2.0)
    assert math.isclose(ci.low, 2.0 - half, rel_tol=1e-9) and math.isclose(ci.high, 2.0 + half, rel_tol=1e-9)
    one = mean_ci([0.7])
    assert one.n == 1 and one.low == one.high == 0.7
    with pytest.raises(ValueError):
        mean_ci([])


def test_accuracy():
    assert accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]), torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)


def test_rules():
    assert AtLeast(0.75).verdict(mean_ci([0.70, 0.74, 0.78])) == REPRODUCED  # interval reaches 0.75
    assert AtLeast(0.75).verdict(mean_ci([0.30, 0.31, 0.32])) == NOT_REPRODUCED
    assert Between(10, 16).verdict(mean_ci([12, 13, 14])) == REPRODUCED
    assert Between(10, 16).verdict(mean_ci([20, 21, 22])) == NOT_REPRODUCED
    assert Above(0).verdict(mean_ci([0.05, 0.06, 0.07])) == REPRODUCED
    assert Above(0).verdict(mean_ci([-0.1, 0.05, 0.2])) == NOT_REPRODUCED  # interval straddles 0
    assert Above(0).verdict(mean_ci([0.05])) == NOT_REPRODUCED  # one seed is no evidence
    assert AtMost(1.0).verdict(mean_ci([0.9, 1.05, 1.2])) == REPRODUCED  # interval reaches 1
    assert AtMost(1.0).verdict(mean_ci([3.0, 3.1, 3.2])) == NOT_REPRODUCED
    assert "95% interval" in AtLeast(1).describe() and "or less" in AtMost(1).describe()


def test_results_file_carries_claims_and_run_card(tmp_path):
    results = results_of(tmp_path)
    results.claim("x", "a claim", 0.5, [0.4, 0.6], AtLeast(0.5))
    results.not_run("y", "another claim", 1.0, "dataset unavailable")
    with pytest.raises(ValueError, match="no valid values"):
        results.claim("z", "bad", 1.0, [float("nan")], AtLeast(1))
    path = results.save(device=torch.device("cpu"), data=[{"dataset": "d", "files": {"f": "sha256:00"}}], initialisation="random")
    saved = json.loads(path.read_text())
    card = saved["run_card"]
    assert card["settings"] == {"run": {"profile": "quick", "seeds": [0, 1], "device": "cpu", "results_root": str(tmp_path)}, "a": 1}
    for key in ("profile", "settings", "seeds", "device", "versions", "data", "initialisation", "wall_time_s"):
        assert key in card
    assert {"python", "torch", "torchvision", "lib", "git"} <= set(card["versions"])
    assert [c["verdict"] for c in saved["claims"]] == [REPRODUCED, "not run"]
    assert load_results(tmp_path, "quick", "99_test") == saved
    assert load_results(tmp_path, "full", "99_test") is None
    assert "cpu" in run_card_markdown(card) and "wall time" in run_card_markdown(card)


def test_scorecard_lists_results_and_chapters_not_run(tmp_path):
    (tmp_path / "chapters").mkdir()
    (tmp_path / "chapters" / "04_x.py").write_text("# # Chapter 4 — X\n")
    (tmp_path / "chapters" / "05_y.py").write_text("# # Chapter 5 — Y\n")
    results = results_of(tmp_path / "results", seeds=(0, 1, 2), chapter="04_x")
    results.claim("c", "seventy-five percent", 0.75, [0.6, 0.62, 0.64], AtLeast(0.75))
    results.save(device=torch.device("cpu"), data=[], initialisation="random")
    text = scorecard.render(tmp_path)
    assert "seventy-five percent" in text and "0.62 ± " in text and "**not reproduced**" in text
    assert "Chapter 5 — Y" in text and "--profile quick" in text  # no results: says how to run it
    assert text.count("**not run**") == 3  # 05 quick, 04 full, 05 full


def test_show_full_profile_says_how_to_run_it_or_shows_the_saved_results(tmp_path, capsys):
    from lib.reporting import show_full_profile

    assert show_full_profile(tmp_path, "99_test", ["fig"]) is None
    assert "python -m lib.run chapters/99_test.py --profile full" in capsys.readouterr().out
    results = results_of(tmp_path, profile="full")
    results.claim("x", "a claim", 0.5, [0.4, 0.6], AtLeast(0.5))
    results.save(device=torch.device("cpu"), data=[], initialisation="random")
    shown = show_full_profile(tmp_path, "99_test", ["missing-figure"])
    assert shown is not None and shown["claims"][0]["id"] == "x"


def test_short_ci_is_the_mean_and_the_half_width():
    from lib.evaluation import short_ci

    half = 4.302652729911275 * 1.0 / math.sqrt(3)
    assert short_ci([1.0, 2.0, 3.0]) == f"2.000 ± {half:.3f}"
    assert short_ci([0.5]) == "0.500" and short_ci([1.0, 1.0], digits=1) == "1.0 ± 0.0"
