"""Small statistics the findings need, exact and without SciPy.

p = stats.rank_sum_p(lower=[...], higher=[...])   # one-sided Mann-Whitney / Wilcoxon
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rank_sum_p(lower: Sequence[float], higher: Sequence[float]) -> float:
    """One-sided exact p-value of the Wilcoxon rank-sum (Mann-Whitney) test that the values
    in `lower` tend to be smaller than those in `higher`: the probability, under random
    assignment of the pooled values to the two groups, of a rank sum of `lower` at most the
    one observed. The values must be distinct (a tie has no exact rank)."""
    a, b = list(lower), list(higher)
    if not a or not b:
        raise ValueError("both groups need at least one value")
    pooled = sorted(a + b)
    if len(set(pooled)) != len(pooled):
        raise ValueError("the exact test needs distinct values")
    rank = {v: r for r, v in enumerate(pooled, start=1)}
    observed = sum(rank[v] for v in a)
    n, k = len(pooled), len(a)
    top = n * (n + 1) // 2
    # ways[j][s]: subsets of size j of the ranks seen so far whose ranks sum to s
    ways = np.zeros((k + 1, top + 1))
    ways[0, 0] = 1.0
    for r in range(1, n + 1):
        ways[1:, r:] += ways[:-1, : top + 1 - r].copy()
    total = ways[k].sum()
    return float(ways[k, : observed + 1].sum() / total)
