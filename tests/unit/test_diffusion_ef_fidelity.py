"""EF condition fidelity: the metric pieces and the frame-based EF measuring stick at the
settings of ``scripts/bench/diffusion_ef_fidelity.py`` (16 frames of 32x32 at 10 fps)."""

from __future__ import annotations

import numpy as np
import pytest

from seqnrl.data.synthetic_echo import estimate_ef, make_echo
from seqnrl.metrics.generation import (
    condition_fidelity,
    fidelity_by_level,
    fidelity_permutation_test,
    measure_all,
)


def test_slope_of_measured_on_requested():
    req = np.array([20.0, 35.0, 50.0, 65.0, 80.0])
    assert condition_fidelity(req, 10 + 0.5 * req)["slope"] == pytest.approx(0.5)
    assert condition_fidelity(req, np.full(5, 50.0))["slope"] == pytest.approx(0.0)
    assert np.isnan(condition_fidelity([50.0, 50.0], [40.0, 60.0])["slope"])


def test_permutation_test_separates_following_from_ignoring():
    rng = np.random.default_rng(0)
    req = np.repeat(np.arange(20.0, 81.0, 10.0), 6)
    follows = req + rng.normal(0, 5, req.size)
    ignores = rng.permutation(follows)  # same measurements, no longer tied to the requests
    good = fidelity_permutation_test(req, follows, n_permutations=500, seed=1)
    bad = fidelity_permutation_test(req, ignores, n_permutations=500, seed=1)
    assert good["r"] == pytest.approx(condition_fidelity(req, follows)["pearson_r"])
    assert good["r2"] == pytest.approx(condition_fidelity(req, follows)["r2"])
    assert good["p_value"] == pytest.approx(1 / 501)  # no permutation reaches r ~ 0.97
    assert bad["p_value"] > 0.01
    # the null is centred on r = 0 with sd ~ 1 / sqrt(n - 1), and its R^2 is ~ -1
    assert abs(good["r_null_mean"]) < 0.05
    assert good["r_null_sd"] == pytest.approx(1 / np.sqrt(req.size - 1), rel=0.25)
    assert good["r2_null_mean"] < -0.5
    # deterministic in the seed; NaN when undefined
    assert fidelity_permutation_test(req, follows, 200, seed=3) == fidelity_permutation_test(
        req, follows, 200, seed=3
    )
    assert np.isnan(fidelity_permutation_test([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])["p_value"])
    with pytest.raises(ValueError):
        fidelity_permutation_test([1.0, 2.0], [1.0])


def test_fidelity_by_level():
    rows = fidelity_by_level([30, 30, 60, 60, 60], [28, 34, 60, float("nan"), 66])
    assert [r["requested"] for r in rows] == [30.0, 60.0]
    assert rows[0] == {"requested": 30.0, "n": 2.0, "measured_mean": 31.0,
                       "measured_sd": 3.0, "mae": 3.0}  # fmt: skip
    assert rows[1]["n"] == 2.0 and rows[1]["measured_mean"] == pytest.approx(63.0)
    assert rows[1]["mae"] == pytest.approx(3.0)


def test_estimate_ef_recovers_requested_ef_of_short_clips():
    """The benchmark's measuring stick on generator clips (16 frames, 32x32, 10 fps: 1.6 s,
    at least one ED and one ES at 55-95 bpm) with a requested EF across 25-75 %."""
    requested = [25.0, 50.0, 75.0] * 6
    clips = [
        make_echo(seed, n_frames=16, size=32, fps=10.0, ef=ef)
        for seed, ef in zip(np.repeat(np.arange(6), 3), requested)
    ]
    true = [e.ef for e in clips]  # the clip's own EF: the volume curve at its frames
    assert np.abs(np.array(true) - requested).max() < 1.0
    measured = measure_all([e.video for e in clips], estimate_ef)
    assert np.abs(measured - np.array(true)).max() < 10.0
    f = condition_fidelity(requested, measured)
    assert f["r2"] > 0.85 and f["mae"] < 5.0 and f["slope"] > 0.8
