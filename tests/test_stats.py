"""The exact rank-sum test against p-values counted by hand."""

import itertools
import math

import pytest

from superposition.stats import rank_sum_p


def test_p_values_of_small_samples_counted_by_hand():
    # 2 of 4 ranks: 6 equally likely subsets; {1, 2} is the only one with rank sum 3
    assert rank_sum_p([1.0, 2.0], [3.0, 4.0]) == pytest.approx(1 / 6)
    # {1, 3} sums to 4: {1, 2} and {1, 3} are at most that
    assert rank_sum_p([1.0, 3.0], [2.0, 4.0]) == pytest.approx(2 / 6)
    assert rank_sum_p([3.0, 4.0], [1.0, 2.0]) == pytest.approx(1.0)


def test_the_p_value_is_the_share_of_assignments_at_most_as_extreme():
    lower, higher = [0.1, 0.5, 0.35, 0.9], [0.2, 0.7, 0.8, 0.95, 0.6]
    pooled = sorted(lower + higher)
    observed = sum(pooled.index(v) + 1 for v in lower)
    sums = [sum(c) for c in itertools.combinations(range(1, 10), 4)]
    expected = sum(s <= observed for s in sums) / math.comb(9, 4)
    assert rank_sum_p(lower, higher) == pytest.approx(expected, rel=1e-12)


def test_ties_and_empty_groups_are_refused():
    with pytest.raises(ValueError, match="distinct"):
        rank_sum_p([1.0, 2.0], [2.0, 3.0])
    with pytest.raises(ValueError, match="at least one"):
        rank_sum_p([], [1.0])
