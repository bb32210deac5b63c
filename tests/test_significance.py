"""The board's statistics (harness/board/significance.py) against hand-computed examples and
independent implementations: statsmodels' exact McNemar and Holm, scipy's binomial test, and the
agreement of the corrected interval with the corrected t-test."""
import math

import numpy as np
import pytest
from scipy.stats import binomtest
from statsmodels.stats.contingency_tables import mcnemar as statsmodels_mcnemar
from statsmodels.stats.multitest import multipletests

from harness.board.significance import (ALPHA, Comparison, binomial_two_sided, competition_ranks, corrected_t_test,
                                        decide, decider, holm, judge, mcnemar, mean_interval, rank_intervals)


def test_mcnemar_matches_a_hand_computation():
    # #1 right where the entry is wrong on 1 clip, the reverse on 6: 7 discordant clips;
    # P(X <= 1) for X ~ Binomial(7, 1/2) = (1 + 7) / 128, two-sided 16 / 128 = 0.125
    best = [True] * 3 + [True] + [False] * 6 + [False] * 2
    other = [True] * 3 + [False] + [True] * 6 + [False] * 2
    found = mcnemar([(best, other)])
    assert (found.runs, found.clips, found.best_only, found.other_only) == (1, 12, 1, 6)
    assert found.p == 16 / 128
    # over two runs the discordant clips are summed: 2 + 2 for #1, 1 + 0 for the entry;
    # 5 discordant, P(X <= 1) = (1 + 5) / 32, two-sided 12 / 32 = 0.375
    runs = [([1, 1, 0, 1], [0, 1, 1, 0]), ([1, 1, 1], [0, 0, 1])]
    pooled = mcnemar(runs)
    assert (pooled.runs, pooled.clips, pooled.best_only, pooled.other_only, pooled.p) == (2, 7, 4, 1, 0.375)


@pytest.mark.parametrize("b, c", [(0, 0), (0, 1), (1, 6), (5, 5), (3, 17), (40, 61), (250, 300), (0, 30), (520, 680)])
def test_mcnemar_matches_statsmodels_and_scipy(b, c):
    rng = np.random.default_rng(b * 1000 + c)
    both, neither = int(rng.integers(0, 50)), int(rng.integers(0, 50))
    best = np.array([1] * both + [1] * b + [0] * c + [0] * neither, dtype=bool)
    other = np.array([1] * both + [0] * b + [1] * c + [0] * neither, dtype=bool)
    order = rng.permutation(len(best))  # clip order does not matter, as long as both share it
    ours = mcnemar([(best[order], other[order])])
    table = [[both, b], [c, neither]]
    assert ours.p == pytest.approx(statsmodels_mcnemar(table, exact=True).pvalue, rel=1e-12, abs=1e-300)
    if b + c:
        assert ours.p == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12, abs=1e-300)


def test_the_exact_binomial_is_exact():
    assert binomial_two_sided(0, 0) == 1.0 and binomial_two_sided(0, 10) == 2 / 1024
    assert binomial_two_sided(10, 10) == 2 / 1024 and binomial_two_sided(5, 10) == 1.0
    assert binomial_two_sided(0, 1200) == 0.0 and binomial_two_sided(600, 1200) == 1.0  # 2 ** 1200: no overflow
    with pytest.raises(ValueError):
        binomial_two_sided(11, 10)
    with pytest.raises(ValueError, match="not the same test set"):
        mcnemar([([1, 0], [1, 0, 1])])


def test_holm_matches_a_hand_computation_and_statsmodels():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> 0.06 (never below the one before)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    rng = np.random.default_rng(7)
    for m in (1, 2, 3, 6, 12):
        p = (rng.uniform(0, 0.2, m) ** 2).tolist()
        assert holm(p) == pytest.approx(multipletests(p, method="holm")[1].tolist(), abs=1e-15)
    # an untested comparison is not one of the family: the others are adjusted as m = 2
    adjusted = holm([0.02, math.nan, 0.04])
    assert math.isnan(adjusted[1]) and adjusted[0] == pytest.approx(0.04) and adjusted[2] == pytest.approx(0.04)
    assert holm([]) == [] and holm([0.9, 0.8]) == [1.0, 1.0]


def test_the_interval_matches_a_hand_computation_and_agrees_with_the_t_test():
    # values 2, 2, -1, 5, 3: mean 2.2, var 4.7, 5 folds -> ratio 1/4: se = sqrt(0.45 * 4.7) = 1.454304;
    # t(0.975, 4) = 2.776445: half width 2.776445 x 1.454304 = 4.037795
    low, high = mean_interval([2, 2, -1, 5, 3], 0.25)
    assert low == pytest.approx(2.2 - 4.037795, abs=1e-5) and high == pytest.approx(2.2 + 4.037795, abs=1e-5)
    assert mean_interval([80.0], 0.25) is None
    rng = np.random.default_rng(3)
    for _ in range(200):  # the interval on the differences leaves out 0 exactly when the t-test says "different"
        n = int(rng.integers(2, 11))
        d = rng.normal(rng.uniform(-3, 3), rng.uniform(0.1, 3), n).tolist()
        low, high = mean_interval(d, 1 / 4)
        assert (not low <= 0 <= high) == (corrected_t_test(d, 1 / 4).p < ALPHA)


def test_the_t_test_decides_where_there_are_runs_and_mcnemar_for_one_run_each():
    t_test, single = Comparison(5, 1.0, 2.0, 0.3), Comparison(1, 1.0, math.nan, math.nan)
    clips = mcnemar([([1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0])])  # 6 discordant, all #1's: p = 2 / 64
    assert decider(t_test, clips) == "t-test" and decide(t_test, clips) == 0.3
    assert decider(single, clips) == "McNemar" and decide(single, clips) == 2 / 64
    assert decider(single, None) is None and math.isnan(decide(single, None))
    # Holm over the table: 2/64 and 0.3 of a family of 2 -> 0.0625 and 0.3; the first is tied once adjusted
    verdicts = judge([None, (single, clips), (t_test, clips), (single, None)])
    assert verdicts[0] is None and verdicts[1].adjusted_p == pytest.approx(0.0625) and verdicts[1].tied
    assert verdicts[1].p == 2 / 64 and verdicts[2].adjusted_p == pytest.approx(0.3)
    assert math.isnan(verdicts[3].adjusted_p) and not verdicts[3].tied and not verdicts[3].distinguishable


def test_equal_scores_share_a_rank():
    assert competition_ranks([90.0, 80.0, 80.0 + 1e-12, 70.0]).tolist() == [1, 2, 2, 4]
    assert competition_ranks([25.69, 25.69]).tolist() == [1, 1]
    assert competition_ranks([[3.0, 2.0], [2.0, 3.0]]).tolist() == [[1, 2], [2, 1]]  # along the last axis


def test_rank_intervals_are_paired_fixed_and_none_for_one_run():
    values = [60.0, 95.0, 70.0, 90.0, 80.0]
    wide = {(fold, 1): v for fold, v in enumerate(values, 1)}
    above = {key: v + 1 for key, v in wide.items()}  # 1 point above on every split
    # on the same splits the two are redrawn together: the lead never changes hands
    assert rank_intervals([above, wide]) == [(1, 1), (2, 2)]
    # the same results on other trials are redrawn independently: with this spread either may lead
    elsewhere = {(fold, 2): v for fold, v in enumerate(values, 1)}
    assert rank_intervals([above, elsewhere]) == [(1, 2), (1, 2)]
    steady = {(fold, 1): v for fold, v in enumerate([79.0, 80.0, 81.0, 79.5, 80.5], 1)}  # at their means
    found = rank_intervals([above, wide, steady])
    assert found == [(1, 2), (2, 3), (1, 3)] and found == rank_intervals([above, wide, steady])  # a fixed seed
    assert rank_intervals([{(1, 1): 80.0}, above])[0] is None  # one run: nothing to redraw
    assert rank_intervals([]) == []
