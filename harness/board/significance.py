"""Is an entry distinguishable from #1, or is the difference noise? How sure is a mean, and a rank?
Pure functions of the stored results.

**The corrected resampled t-test.** Two entries of one table ran on the same (fold, trial) splits,
so their results pair up; the differences d_1..d_n (n = folds x trials) are what is tested. A plain
paired t-test over them divides the variance of d by n as if the n results were independent, but
every two training sets of k-fold cross-validation share (k-2)/(k-1) of their data, so the results
are positively correlated and the plain test finds differences that are not there (Dietterich 1998;
Nadeau & Bengio 2003 measured type I errors far above the nominal level). Nadeau and Bengio's
correction replaces 1/n with 1/n + n_test/n_train; Bouckaert and Frank (2004) showed it keeps the
type I error near the nominal level for repeated k-fold cross-validation with n = k x r:

    t = mean(d) / sqrt((1/n + n_test/n_train) * var(d)),   df = n - 1   (var with ddof = 1)

The 95% interval on one entry's mean uses the same corrected variance, so it and the test agree:
mean ± t_{0.975, n-1} * sqrt((1/n + n_test/n_train) * var).

**McNemar's exact test** on the same clips: where two entries' runs scored identical test sets,
each clip is a matched pair of right/wrong; only the discordant clips (one right, the other wrong)
say anything, and under "no difference" each is equally likely to go either way: the two-sided p is
2 x P(X <= min(b, c)) for X ~ Binomial(b + c, 1/2), at most 1. Over several runs the discordant
counts are summed and tested the same way: the exact conditional (Mantel-Haenszel) test with every
matched clip its own stratum, which is what McNemar's test is; stratifying by run on top changes
nothing. It conditions on the trained models, so it measures test-set variance only: the t-test,
where there are two or more paired runs, decides (``decide``).

**Holm's step-down** adjusts a table's p values against #1 for making several comparisons.

**Rank intervals**: a bootstrap over each entry's (fold, trial) results with a fixed seed.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
LEVEL = 0.95  # of every interval
EQUAL = 1e-9  # scores (in points) closer than this are equal: they share a rank
REPLICATES = 2000  # of the rank bootstrap
SEED = 0  # of the rank bootstrap: the board is the same every time it is rendered

Pairs = Mapping[tuple[int, int], float]  # (fold, trial) -> a run's metric


@dataclass(frozen=True)
class Comparison:
    """An entry against #1 over their shared (fold, trial) pairs; ``p`` is two-sided."""

    pairs: int
    mean_difference: float  # #1 minus the entry, in the metric's unit
    t: float
    p: float

    @property
    def distinguishable(self) -> bool:
        return self.p < ALPHA

    @property
    def tied(self) -> bool:
        return self.p >= ALPHA  # False for an untested comparison (NaN)


@dataclass(frozen=True)
class McNemar:
    """#1 against an entry on the same clips: ``best_only`` clips #1 got right and the entry got
    wrong, ``other_only`` the reverse, summed over ``runs`` pairs of runs of ``clips`` clips in all."""

    runs: int
    clips: int
    best_only: int
    other_only: int
    p: float


@dataclass(frozen=True)
class Verdict:
    """An entry against #1: the t-test over their (fold, trial) results, McNemar's test on their
    clips where it could be computed, and the deciding test's p Holm-adjusted over the table (NaN
    where neither test could run)."""

    t_test: Comparison
    mcnemar: McNemar | None
    adjusted_p: float

    @property
    def decided_by(self) -> str | None:
        return decider(self.t_test, self.mcnemar)

    @property
    def p(self) -> float:
        """The deciding test's own p, before the adjustment."""
        return decide(self.t_test, self.mcnemar)

    @property
    def distinguishable(self) -> bool:
        return self.adjusted_p < ALPHA

    @property
    def tied(self) -> bool:
        return self.adjusted_p >= ALPHA  # False for an untested comparison (NaN)


def corrected_t_test(differences: list[float], test_train_ratio: float) -> Comparison:
    """The corrected resampled t-test of paired differences (see the module's docstring).

    Args:
        differences: #1's metric minus the entry's, one per (fold, trial), at least two.
        test_train_ratio: n_test / n_train of the runs (1/(k-1) for k equal folds).
    """
    from scipy.stats import t as student_t

    n = len(differences)
    if n < 2:
        raise ValueError("a t-test needs at least two paired results")
    mean = sum(differences) / n
    variance = sum((d - mean) ** 2 for d in differences) / (n - 1)
    if variance == 0:  # every pair differs by the same amount: none (identical entries) or always
        return Comparison(n, mean, 0.0 if mean == 0 else math.copysign(math.inf, mean), 1.0 if mean == 0 else 0.0)
    t = mean / math.sqrt((1 / n + test_train_ratio) * variance)
    return Comparison(n, mean, t, float(2 * student_t.sf(abs(t), n - 1)))


def compare(best: Pairs, other: Pairs, test_train_ratio: float) -> Comparison | None:
    """#1 (``best``) against another entry, both as (fold, trial) -> metric; None when they did not
    run on the same (fold, trial) pairs (another protocol: never compared). One pair cannot be
    tested: its p is NaN, neither distinguishable nor tied."""
    if set(best) != set(other):
        return None
    differences = [best[key] - other[key] for key in sorted(best)]
    if len(differences) < 2:
        return Comparison(len(differences), sum(differences), math.nan, math.nan)
    return corrected_t_test(differences, test_train_ratio)


def mean_interval(values: Sequence[float], test_train_ratio: float, level: float = LEVEL) -> tuple[float, float] | None:
    """The interval on the mean of an entry's (fold, trial) results from the corrected variance:
    mean ± t_{(1+level)/2, n-1} * sqrt((1/n + n_test/n_train) * var) (var with ddof = 1); None for
    a single result, which has no variance to go on."""
    from scipy.stats import t as student_t

    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = float(student_t.ppf((1 + level) / 2, n - 1)) * math.sqrt((1 / n + test_train_ratio) * variance)
    return mean - half, mean + half


def binomial_two_sided(k: int, n: int) -> float:
    """Two-sided p of k successes in n fair coin flips: 2 x P(X <= min(k, n - k)), at most 1 (exact,
    in integers; 1 for n = 0)."""
    if not 0 <= k <= n:
        raise ValueError(f"{k} successes of {n} flips")
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1))
    return min(1.0, 2 * tail / 2 ** n)


def mcnemar(runs: Sequence[tuple[Sequence[bool], Sequence[bool]]]) -> McNemar:
    """McNemar's exact test of #1 against an entry over pairs of runs on identical test sets: each
    pair is (#1 right per clip, the entry right per clip), in the same clip order. The discordant
    clips of all pairs are summed (see the module's docstring)."""
    best_only = other_only = clips = 0
    for best, other in runs:
        if len(best) != len(other):
            raise ValueError(f"paired runs scored {len(best)} and {len(other)} clips: not the same test set")
        a, b = np.asarray(best, dtype=bool), np.asarray(other, dtype=bool)
        best_only += int(np.sum(a & ~b))
        other_only += int(np.sum(~a & b))
        clips += len(a)
    return McNemar(len(runs), clips, best_only, other_only, binomial_two_sided(best_only, best_only + other_only))


def decider(t_test: Comparison, mcnemar_test: McNemar | None) -> str | None:
    """Which test decides *tied*: the t-test wherever there are two or more paired runs (it accounts
    for training variance, which McNemar's, conditioned on the trained models, does not); McNemar's
    for one run each, where the t-test cannot run; None where neither can."""
    if t_test.pairs >= 2:
        return "t-test"
    return "McNemar" if mcnemar_test is not None else None


def decide(t_test: Comparison, mcnemar_test: McNemar | None) -> float:
    """The deciding test's p (``decider``); NaN where neither test can run."""
    by = decider(t_test, mcnemar_test)
    return t_test.p if by == "t-test" else mcnemar_test.p if by == "McNemar" else math.nan


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p values, in the given order. A NaN (a comparison that was not
    tested) is not one of the family and stays NaN. Sorted ascending, the i-th smallest of m becomes
    max over j <= i of min(1, (m - j + 1) p_(j))."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for step, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - step) * p))
        adjusted[i] = running
    return adjusted


def judge(tests: Sequence[tuple[Comparison, McNemar | None] | None]) -> list[Verdict | None]:
    """Each comparison with #1 (None: not compared) as a verdict, its deciding p Holm-adjusted over
    all of them that were tested."""
    adjusted = holm([decide(*test) if test else math.nan for test in tests])
    return [Verdict(test[0], test[1], p) if test else None for test, p in zip(tests, adjusted)]


def competition_ranks(scores: np.ndarray | Sequence[float]) -> np.ndarray:
    """Rank along the last axis, best (highest) first: 1 + how many score higher, so equal scores
    (within ``EQUAL``) share a rank and the next is skipped (1, 1, 3)."""
    s = np.asarray(scores, dtype=float)
    return 1 + (s[..., None, :] > s[..., :, None] + EQUAL).sum(axis=-1)


def rank_intervals(results: Sequence[Pairs], replicates: int = REPLICATES, seed: int = SEED,
                   level: float = LEVEL) -> list[tuple[int, int] | None]:
    """Each entry's rank interval (best = 1) by a bootstrap over its (fold, trial) results: each
    replicate redraws, with replacement, as many (fold, trial) results as the entry has; entries on
    the same (fold, trial) pairs draw the same ones (paired), others independently. The interval is
    the central ``level`` of the replicates' ranks (``competition_ranks`` of the replicate means);
    None for an entry with a single result, which gives the bootstrap nothing to redraw."""
    rng = np.random.default_rng(seed)
    groups: dict[tuple[tuple[int, int], ...], list[int]] = {}
    for i, pairs in enumerate(results):
        groups.setdefault(tuple(sorted(pairs)), []).append(i)
    means = np.empty((replicates, len(results)))
    for keys, members in groups.items():
        drawn = rng.integers(0, len(keys), size=(replicates, len(keys)))
        for i in members:
            means[:, i] = np.array([results[i][key] for key in keys])[drawn].mean(axis=1)
    ranks = competition_ranks(means)
    tail = (1 - level) / 2
    low = np.quantile(ranks, tail, axis=0, method="lower")
    high = np.quantile(ranks, 1 - tail, axis=0, method="higher")
    return [(int(lo), int(hi)) if len(pairs) > 1 else None for lo, hi, pairs in zip(low, high, results)]
