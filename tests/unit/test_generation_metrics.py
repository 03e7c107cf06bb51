"""Metrics of generated data: condition fidelity, Frechet distance, retrieval coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from seqnrl.metrics.generation import (
    condition_fidelity,
    feature_statistics,
    frechet_distance,
    gaussian_frechet_distance,
    measure_all,
    near_copy_flags,
    nearest_neighbours,
    retrieval_coverage,
    retrieval_report,
)


def test_condition_fidelity_perfect_and_offset():
    req = np.array([20.0, 35.0, 50.0, 65.0, 80.0])
    perfect = condition_fidelity(req, req)
    assert perfect["r2"] == pytest.approx(1.0) and perfect["mae"] == 0.0
    off = condition_fidelity(req, req + 5.0)
    assert off["mae"] == pytest.approx(5.0) and off["bias"] == pytest.approx(5.0)
    # R^2 against the requested values: 1 - n * 25 / SS_tot
    ss_tot = np.sum((req - req.mean()) ** 2)
    assert off["r2"] == pytest.approx(1 - 5 * 25 / ss_tot)
    # a constant measurement explains nothing: R^2 <= 0
    assert condition_fidelity(req, np.full(5, 50.0))["r2"] <= 0.0


def test_condition_fidelity_ignores_nan_and_measure_all():
    req = [30.0, 40.0, float("nan"), 60.0]
    mea = measure_all([31.0, 39.0, 50.0, float("nan")], lambda x: x)
    out = condition_fidelity(req, mea)
    assert out["n"] == 2 and out["mae"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        condition_fidelity([1.0, 2.0], [1.0])


def test_frechet_identical_sets_is_zero():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(200, 8))
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)


def test_frechet_shifted_gaussians_match_closed_form():
    rng = np.random.default_rng(1)
    d, n = 4, 200_000
    a_mat = rng.normal(size=(d, d)) * 0.5
    cov1 = a_mat @ a_mat.T + np.eye(d)
    cov2 = np.diag([0.5, 1.0, 2.0, 3.0])
    mu1, mu2 = np.zeros(d), np.array([1.0, -2.0, 0.5, 0.0])
    # closed form of the statistics themselves
    expected = float(
        np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2 * linalg.sqrtm(cov1 @ cov2).real)
    )
    assert gaussian_frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-9)
    # pure shift, same covariance: the distance is the squared shift
    assert gaussian_frechet_distance(mu1, cov1, mu2, cov1) == pytest.approx(
        np.sum(mu2**2), rel=1e-6
    )
    # sampled features converge to the closed form
    x1 = rng.multivariate_normal(mu1, cov1, size=n)
    x2 = rng.multivariate_normal(mu2, cov2, size=n)
    assert frechet_distance(x1, x2) == pytest.approx(expected, rel=0.02)
    # 1-D: (mu1 - mu2)^2 + (s1 - s2)^2
    assert gaussian_frechet_distance(0.0, 4.0, 3.0, 1.0) == pytest.approx(9.0 + 1.0)
    mu, cov = feature_statistics(x1[:1000])
    assert mu.shape == (d,) and cov.shape == (d, d)


def test_retrieval_coverage_and_near_copies():
    train = np.eye(4)  # four orthogonal training items
    # generated: two near copies of item 0, one of item 2, one in between 1 and 3
    gen = np.array([[1.0, 0.01, 0, 0], [0.99, 0, 0.02, 0], [0, 0, 1.0, 0.0], [0, 1.0, 0, 1.0]])
    idx, sim = nearest_neighbours(gen, train)
    assert idx[:3].tolist() == [0, 0, 2] and idx[3] in (1, 3)
    assert retrieval_coverage(gen, train) == pytest.approx(3 / 4)
    flags = near_copy_flags(gen, train, threshold=0.95)
    assert flags.tolist() == [True, True, True, False]
    rep = retrieval_report(gen, train, threshold=0.95)
    assert rep["near_copies"] == 3 and rep["coverage"] == pytest.approx(0.75)
    assert rep["nn_similarity_max"] == pytest.approx(1.0)
    # a generator collapsed onto one mode covers one training item
    collapsed = np.tile([[0.0, 0.0, 0.0, 1.0]], (10, 1)) + 1e-3
    assert retrieval_coverage(collapsed, train) == pytest.approx(1 / 4)
    with pytest.raises(ValueError):
        nearest_neighbours(np.ones((2, 3)), train)
