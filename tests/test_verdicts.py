"""Every verdict rule at its boundaries: equality, n = 1, n = 2, an infinite bound, NaN; and monotone in the interval's width."""

import math
import random

import pytest

from lib.evaluation import Interval, mean_ci
from lib.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    NEEDS_LARGER,
    UNTESTABLE,
    Above,
    AtLeast,
    Between,
    Region,
    Scale,
    judge,
)

INF = math.inf


def ci(low, high, mean=None, n=3):
    return Interval((low + high) / 2 if mean is None else mean, low, high, n)


@pytest.mark.parametrize(
    "rule, interval, verdict",
    [
        # AtLeast(0.75): the region [0.75, inf)
        (AtLeast(0.75), ci(0.75, 0.80), REPRODUCED),  # the low end exactly on the boundary counts
        (AtLeast(0.75), ci(0.76, 0.80), REPRODUCED),
        (AtLeast(0.75), ci(0.70, 0.80), INCONCLUSIVE),  # straddles: a noisy run decides nothing
        (AtLeast(0.75), ci(0.60, 0.7499), NOT_REPRODUCED),
        (AtLeast(0.75), ci(0.60, 0.75), INCONCLUSIVE),  # touches the region at its closed end
        (AtLeast(0.998), ci(0.969, 1.001), INCONCLUSIVE),  # 0.985 ± 0.016 is no reproduction of 0.998
        (AtLeast(0.75, tolerance=0.01), ci(0.74, 0.76), REPRODUCED),
        # the region (-inf, 1]
        (Region(high=1.0), ci(0.8, 1.0), REPRODUCED),
        (Region(high=1.0), ci(0.8, 1.2), INCONCLUSIVE),
        (Region(high=1.0), ci(1.0001, 1.2), NOT_REPRODUCED),
        # Between(10, 16)
        (Between(10, 16), ci(10, 16), REPRODUCED),
        (Between(10, 16), ci(9.9, 12), INCONCLUSIVE),
        (Between(10, 16), ci(16.1, 20), NOT_REPRODUCED),
        (Between(10, 16), ci(2, 9.9), NOT_REPRODUCED),
        (Between(10, 16), ci(9, 17), INCONCLUSIVE),
        # Above(0): the region (0, inf), the boundary excluded
        (Above(0), ci(0.0, 0.1), INCONCLUSIVE),
        (Above(0), ci(1e-9, 0.1), REPRODUCED),
        (Above(0), ci(-0.1, 0.0), NOT_REPRODUCED),  # at most 0: wholly outside an open region
        (Above(0), ci(0.0, 0.0), NOT_REPRODUCED),
        # the region (-inf, 1), the boundary excluded
        (Region(high=1, high_open=True), ci(0.5, 0.99), REPRODUCED),
        (Region(high=1, high_open=True), ci(0.5, 1.0), INCONCLUSIVE),
        (Region(high=1, high_open=True), ci(1.0, 1.5), NOT_REPRODUCED),
    ],
)
def test_rules_at_their_boundaries(rule, interval, verdict):
    assert rule.verdict(interval) == verdict


@pytest.mark.parametrize("rule", [AtLeast(0.5), Region(high=0.5), Between(0.4, 0.6), Above(0.5), Region(high=0.5, high_open=True)])
def test_one_seed_is_always_inconclusive(rule):
    one = mean_ci([0.5])
    assert one.n == 1 and one.low == -INF and one.high == INF
    assert rule.verdict(one) == INCONCLUSIVE
    assert rule.verdict(mean_ci([100.0])) == INCONCLUSIVE  # however far from the region


def test_two_seeds_give_a_wide_interval_that_decides_only_clear_cases():
    two = mean_ci([0.80, 0.90])  # t(0.975, 1) = 12.7: half-width 0.64
    assert two.n == 2 and two.high - two.mean == pytest.approx(12.706 * 0.0707 / math.sqrt(2), rel=1e-3)
    assert AtLeast(0.75).verdict(two) == INCONCLUSIVE
    assert AtLeast(0.75).verdict(mean_ci([0.90, 0.90])) == REPRODUCED  # no spread at all
    assert AtLeast(0.75).verdict(mean_ci([0.10, 0.11])) == NOT_REPRODUCED  # far below, even with n = 2


def test_infinite_bounds_in_a_rule_and_in_an_interval():
    assert Region().verdict(ci(-INF, INF, mean=0.0)) == REPRODUCED  # the whole line accepts anything
    assert AtLeast(0).verdict(ci(1.0, INF)) == REPRODUCED
    assert Region(high=0).verdict(ci(1.0, INF)) == NOT_REPRODUCED
    assert Between(0, 1).verdict(ci(-INF, 0.5)) == INCONCLUSIVE


def test_nan_is_refused_not_judged():
    with pytest.raises(ValueError, match="NaN"):
        AtLeast(0.5).verdict(Interval(float("nan"), 0.4, 0.6, 3))
    with pytest.raises(ValueError, match="finite"):
        mean_ci([0.5, float("nan")])
    with pytest.raises(ValueError, match="finite"):
        mean_ci([0.5, math.inf])
    with pytest.raises(ValueError, match="low <= high"):
        Between(2, 1)
    with pytest.raises(ValueError, match="low <= high"):
        Region(low=float("nan"))


@pytest.mark.parametrize("rule", [AtLeast(0.5), Region(high=0.5), Between(0.4, 0.6), Above(0.5), Region(high=0.5, high_open=True), AtLeast(0.5, 0.05)])
def test_a_wider_interval_never_moves_a_verdict_towards_reproduced(rule):
    rng = random.Random(0)
    for _ in range(3000):
        a, b = sorted(rng.uniform(0.2, 0.8) for _ in range(2))
        grow_low, grow_high = rng.choice([0, rng.uniform(0, 0.3)]), rng.choice([0, rng.uniform(0, 0.3)])
        narrow, wide = ci(a, b), ci(a - grow_low, b + grow_high)
        v_narrow, v_wide = rule.verdict(narrow), rule.verdict(wide)
        assert v_wide in (v_narrow, INCONCLUSIVE), (rule, narrow, wide, v_narrow, v_wide)
        if v_wide == REPRODUCED:
            assert v_narrow == REPRODUCED


def test_a_run_below_the_claims_scale_is_shown_not_judged():
    far_below = ci(0.1, 0.2)
    verdict, why = judge(AtLeast(0.9), far_below, needs=Scale.PAPER, scale=Scale.TOY)
    assert verdict == NEEDS_LARGER and "needs the paper's models and settings" in why
    assert judge(AtLeast(0.9), far_below, needs=Scale.CONVERGED, scale=Scale.CONVERGED)[0] == NOT_REPRODUCED
    assert judge(AtLeast(0.9), far_below, needs=Scale.CONVERGED, scale=Scale.PAPER)[0] == NOT_REPRODUCED
    verdict, why = judge(AtLeast(0.9), far_below, needs=Scale.CONVERGED, scale=Scale.PAPER, untestable="the paper's data is private")
    assert verdict == UNTESTABLE and why == "the paper's data is private"
    # a stand-in tests what it can: judged from the converged scale up, never at toy scale
    assert judge(AtLeast(0.9), far_below, needs=Scale.PAPER, scale=Scale.CONVERGED, stand_in="mini backbones")[0] == NOT_REPRODUCED
    assert judge(AtLeast(0.9), far_below, needs=Scale.PAPER, scale=Scale.TOY, stand_in="mini backbones")[0] == NEEDS_LARGER
    assert judge(AtLeast(0.9), far_below, needs=Scale.PAPER, scale=Scale.CONVERGED, stand_in="x", untestable="private")[0] == UNTESTABLE


def test_a_rule_read_in_another_unit():
    assert AtLeast(-0.05).scaled(100) == Region(low=-5.0) and Above(0.01).scaled(100).short() == "CI > 1"
    with pytest.raises(ValueError, match="positive"):
        AtLeast(0).scaled(-1)


def test_rules_say_what_they_accept():
    assert AtLeast(0.75).short() == "CI ≥ 0.75" and Above(0).short() == "CI > 0" and Region(high=1, high_open=True).short() == "CI < 1"
    assert Between(10, 16).short() == "CI within [10, 16]" and Region(high=1).short() == "CI ≤ 1"
    assert "[0.75, ∞)" in AtLeast(0.75).describe() and "inconclusive otherwise" in AtLeast(0.75).describe()


@pytest.mark.parametrize("rule", [AtLeast(0.75), Above(0), Between(10, 16), Region(high=1), Region(high=1, high_open=True), AtLeast(-5)])
def test_a_rule_survives_its_results_file_and_its_short_text(rule):
    assert Region.from_list(rule.as_list()) == rule and Region.from_short(rule.short()) == rule
    with pytest.raises(ValueError, match="short text"):
        Region.from_short("within 3 points")
