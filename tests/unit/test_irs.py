"""Image/Video Retrieval Score: Stirling numbers, the occupancy law, the coverage estimator
and the retrieval scores on features."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest

from seqnrl.metrics.irs import (
    _log_stirling2_temme,
    coverage_estimate,
    irs_adjusted,
    log_stirling2_row,
    occupancy_logpmf,
    retrieval_indices,
    retrieval_score,
)


@lru_cache(None)
def stirling2(n: int, k: int) -> int:
    if n == k:
        return 1
    if k == 0 or k > n:
        return 0
    return k * stirling2(n - 1, k) + stirling2(n - 1, k - 1)


def test_log_stirling_exact_against_integers():
    for s in (1, 5, 40, 120):
        row = log_stirling2_row(s)
        for k in range(1, s + 1):
            assert row[k] == pytest.approx(math.log(stirling2(s, k)), rel=1e-12, abs=1e-10)
        assert row[0] == -np.inf


def test_temme_asymptotic_close_to_exact():
    s = 400
    exact = log_stirling2_row(s, exact=True)
    k = np.arange(2, s)
    approx = _log_stirling2_temme(s, k)
    assert np.max(np.abs(approx - exact[2:s]) / np.abs(exact[2:s])) < 1e-4


def test_occupancy_pmf_sums_to_one_and_matches_simulation():
    s, n = 30, 25
    ls = log_stirling2_row(s)
    p = np.exp(occupancy_logpmf(np.arange(s + 1), s, n, ls))
    assert p.sum() == pytest.approx(1.0, abs=1e-10)
    rng = np.random.default_rng(0)
    ks = np.array([len(np.unique(rng.integers(0, n, s))) for _ in range(4000)])
    mean_sim, mean_exact = ks.mean(), (np.arange(s + 1) * p).sum()
    assert mean_exact == pytest.approx(n * (1 - (1 - 1 / n) ** s), rel=1e-9)
    assert abs(mean_sim - mean_exact) < 0.1


def test_estimator_recovers_true_coverage_within_bound():
    """Simulated generators drawing uniformly from a known number of items: the true number
    lies inside the 95 % interval in most seeds and the MLE is nearly unbiased."""
    rng = np.random.default_rng(1)
    n_train = 1000
    for true_n, s in ((150, 200), (400, 300)):
        inside, est = 0, []
        for _ in range(40):
            k = len(np.unique(rng.integers(0, true_n, s)))
            e = coverage_estimate(k, s, n_train, 0.95)
            assert e["n_low"] <= e["n_hat"] <= e["n_high"]
            inside += e["n_low"] <= true_n <= e["n_high"]
            est.append(e["n_hat"])
        assert inside >= 35, (true_n, inside)
        assert abs(np.mean(est) - true_n) < 0.1 * true_n
        # the interval is informative, not the whole range
        assert e["n_high"] - e["n_low"] < 0.8 * true_n


def test_estimator_edge_cases():
    sat = coverage_estimate(10, 10, 500)  # every draw distinct: only a lower bound
    assert sat["saturated"] == 1.0 and sat["n_hat"] == 500 and sat["n_high"] == 500
    assert sat["n_low"] > 10
    one = coverage_estimate(1, 50, 500)  # always the same item
    assert one["n_hat"] == 1 and one["n_high"] <= 2
    with pytest.raises(ValueError):
        coverage_estimate(0, 10, 100)
    with pytest.raises(ValueError):
        coverage_estimate(11, 10, 100)


def test_retrieval_score_on_features():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(300, 16))
    learned = rng.choice(300, 60, replace=False)
    # a generator that only reproduces 60 training items (slightly perturbed)
    gen = train[rng.choice(learned, 250)] + 0.01 * rng.normal(size=(250, 16))
    r = retrieval_score(gen, train)
    assert set(retrieval_indices(gen, train)) <= set(learned)
    assert r.k_distinct <= 60 and r.irs_alpha == pytest.approx(r.k_distinct / 300)
    assert r.irs_inf_low <= 60 / 300 <= r.irs_inf_high
    assert r.irs_inf < 0.3
    # the euclidean metric finds the same neighbours for such near copies
    assert (retrieval_indices(gen, train, "euclidean") == retrieval_indices(gen, train)).all()
    # a held-out real set drawn like the training data covers far more
    held = train[rng.integers(0, 300, 250)] + 0.01 * rng.normal(size=(250, 16))
    adj = irs_adjusted(gen, train, held)
    assert adj["heldout"]["irs_inf"] > 0.6
    assert adj["adjusted"] == pytest.approx(adj["generated"]["n_hat"] / adj["heldout"]["n_hat"])
    assert adj["adjusted_low"] <= adj["adjusted"] <= adj["adjusted_high"] and adj["adjusted"] < 0.4
