"""Is an entry distinguishable from #1, or is the difference noise? The corrected resampled t-test
over paired (fold, trial) results, as pure functions.

Two entries of one table ran on the same (fold, trial) splits, so their results pair up; the
differences d_1..d_n (n = folds x trials) are what is tested. A plain paired t-test over them
divides the variance of d by n as if the n results were independent, but every two training
sets of k-fold cross-validation share (k-2)/(k-1) of their data, so the results are positively
correlated and the plain test finds differences that are not there (Dietterich 1998; Nadeau &
Bengio 2003 measured type I errors far above the nominal level). Nadeau and Bengio's correction
replaces 1/n with 1/n + n_test/n_train; Bouckaert and Frank (2004) showed it keeps the type I
error near the nominal level for repeated k-fold cross-validation with n = k x r:

    t = mean(d) / sqrt((1/n + n_test/n_train) * var(d)),   df = n - 1   (var with ddof = 1)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA = 0.05


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


def compare(best: dict[tuple[int, int], float], other: dict[tuple[int, int], float],
            test_train_ratio: float) -> Comparison | None:
    """#1 (``best``) against another entry, both as (fold, trial) -> metric; None when they did not
    run on the same (fold, trial) pairs (another protocol: never compared). One pair cannot be
    tested: its p is NaN, neither distinguishable nor tied."""
    if set(best) != set(other):
        return None
    differences = [best[key] - other[key] for key in sorted(best)]
    if len(differences) < 2:
        return Comparison(len(differences), sum(differences), math.nan, math.nan)
    return corrected_t_test(differences, test_train_ratio)
