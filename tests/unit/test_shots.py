"""KTS shots, exact knapsack selection and the summary F-score protocol."""

import itertools
import json

import numpy as np
import pytest

from seqnrl.errors import SeqNRLError
from seqnrl.metrics.summary import (
    align_length,
    evaluate_summary,
    load_reference_summaries,
    summary_fscore,
)
from seqnrl.shots import (
    boundaries_to_shots,
    knapsack,
    kts_shots,
    mask_to_segments,
    select_shots,
    select_shots_coverage,
    shot_scores,
    shots_to_boundaries,
    split_long_shots,
)


def brute_force(values, weights, cap):
    best, best_set = 0.0, ()
    for r in range(len(values) + 1):
        for sub in itertools.combinations(range(len(values)), r):
            w = sum(weights[i] for i in sub)
            v = sum(values[i] for i in sub)
            if w <= cap and v > best + 1e-12:
                best, best_set = v, sub
    return best, best_set


def test_knapsack_hand_case():
    # greedy by value density would take item 0 (6/1) then 1 (10/2): 16; optimum is 1 + 2: 22
    values, weights = [6.0, 10.0, 12.0], [1, 2, 3]
    sel = knapsack(np.array(values), np.array(weights), 5)
    assert sel.tolist() == [1, 2]
    # everything fits / nothing fits
    assert knapsack(np.array(values), np.array(weights), 100).tolist() == [0, 1, 2]
    assert knapsack(np.array(values), np.array(weights), 0).tolist() == []


@pytest.mark.parametrize("seed", range(25))
def test_knapsack_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 9))
    values = rng.uniform(0, 1, n).round(3)
    weights = rng.integers(1, 10, n)
    cap = int(rng.integers(0, 30))
    sel = knapsack(values, weights, cap)
    best, _ = brute_force(values.tolist(), weights.tolist(), cap)
    assert weights[sel].sum() <= cap
    assert values[sel].sum() == pytest.approx(best, abs=1e-9)


def test_knapsack_rejects_bad_weights():
    with pytest.raises(ValueError):
        knapsack(np.array([1.0]), np.array([1.5]), 3)
    with pytest.raises(ValueError):
        knapsack(np.array([1.0]), np.array([-1]), 3)


def piecewise(lengths, dim=16, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(len(lengths), dim))
    x = np.concatenate([np.repeat(m[None], n, 0) for m, n in zip(means, lengths)])
    return x + noise * rng.normal(size=x.shape), np.cumsum(lengths)[:-1]


@pytest.mark.parametrize("kernel", ["cosine", "linear"])
def test_kts_finds_known_change_points(kernel):
    x, cps = piecewise([30, 45, 20, 60, 25])
    shots = kts_shots(x, n_change_points=len(cps), kernel=kernel)
    assert shots_to_boundaries(shots).tolist() == cps.tolist()
    # penalised form finds the same number without being told
    pen = kts_shots(x, penalty=2.0, kernel=kernel)
    assert shots_to_boundaries(pen).tolist() == cps.tolist()


def test_kts_long_sequence_uses_penalty_search_and_tiles_frames():
    lengths = [40] * 30
    x, cps = piecewise(lengths, seed=1)
    shots = kts_shots(x, n_change_points=len(cps), exact_max_frames=100)
    assert shots[0, 0] == 0 and shots[-1, 1] == len(x)
    assert (shots[1:, 0] == shots[:-1, 1]).all()
    assert shots_to_boundaries(shots).tolist() == cps.tolist()


def test_kts_default_count_scales_with_length():
    x, _ = piecewise([50] * 8, seed=2)
    few = kts_shots(x, fps=10, shot_seconds=20.0)  # 400 frames at 10 fps, 20 s shots: 2 shots
    many = kts_shots(x, fps=10, shot_seconds=5.0)  # 8 shots
    assert len(few) == 2 and len(many) == 8


def test_shot_scores_and_selection_under_budget():
    shots = boundaries_to_shots([10, 20, 30], 40)
    imp = np.r_[np.zeros(10), np.ones(10), np.full(10, 0.5), np.zeros(10)]
    assert shot_scores(imp, shots).tolist() == [0.0, 1.0, 0.5, 0.0]
    mask, chosen = select_shots(imp, shots, budget=0.25)
    assert chosen.tolist() == [1]
    assert mask.sum() == 10 and mask[10:20].all()
    mask, chosen = select_shots(imp, shots, budget=0.5)
    assert chosen.tolist() == [1, 2]
    assert mask_to_segments(mask).tolist() == [[10, 30]]


def test_shot_value_sum_prefers_total_importance():
    # a long shot of high importance vs two tiny shots of slightly higher importance
    shots = boundaries_to_shots([2, 4, 14], 20)  # lengths 2, 2, 10, 6
    imp = np.r_[np.full(2, 0.9), np.full(2, 0.9), np.full(10, 0.8), np.zeros(6)]
    mean_mask, mean_chosen = select_shots(imp, shots, budget_frames=10)
    sum_mask, sum_chosen = select_shots(imp, shots, budget_frames=10, value="sum")
    assert mean_chosen.tolist() == [0, 1, 3]  # DSN convention: many short shots (0.9+0.9+0)
    assert sum_chosen.tolist() == [2]  # total importance 8 > 3.6
    with pytest.raises(ValueError):
        select_shots(imp, shots, 0.5, value="max")


def test_split_long_shots_tiles_and_bounds_length():
    shots = boundaries_to_shots([7, 30], 33)  # lengths 7, 23, 3
    out = split_long_shots(shots, 5)
    lengths = out[:, 1] - out[:, 0]
    assert lengths.max() <= 5 and lengths.min() >= 1
    assert out[0, 0] == 0 and out[-1, 1] == 33 and (out[1:, 0] == out[:-1, 1]).all()
    assert len(out) == 2 + 5 + 1  # 7 -> 2 parts, 23 -> 5 parts, 3 stays
    with pytest.raises(ValueError):
        split_long_shots(shots, 0)


def _zones(n_zones=6, per_zone=40, seed=0):
    """Frames of ``n_zones`` distinct looks, each contiguous, plus a little noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_zones, 16)) * 5
    x = np.concatenate([c + 0.3 * rng.normal(size=(per_zone, 16)) for c in centres])
    shots = uniform_shots_for(n_zones * per_zone, 5)
    return x, shots


def uniform_shots_for(t, length):
    return boundaries_to_shots(np.arange(length, t, length), t)


def test_coverage_selection_shows_every_zone_where_knapsack_does_not():
    x, shots = _zones()
    imp = np.zeros(len(x))
    imp[80:120] = 1.0  # zone 3 is the abnormal one
    budget = 0.15  # 36 frames = 7 shots of 5 frames for 6 zones
    mask_k, _ = select_shots(imp, shots, budget)
    mask_c, chosen = select_shots_coverage(x, imp, shots, budget, importance_weight=0.3)
    per_zone_k = mask_k.reshape(6, 40).sum(1)
    per_zone_c = mask_c.reshape(6, 40).sum(1)
    assert (per_zone_k > 0).sum() < 6  # the knapsack spends the budget on the abnormal zone
    assert (per_zone_c > 0).all(), per_zone_c  # coverage shows every zone ...
    assert per_zone_c[2] == per_zone_c.max()  # ... and most of the abnormal one
    assert mask_c.sum() <= int(np.floor(budget * len(x)))
    assert sorted(chosen.tolist()) == chosen.tolist()


def test_coverage_selection_edge_cases():
    x, shots = _zones(n_zones=2, per_zone=10)
    # budget smaller than every shot: no whole shot fits, the budget goes to part of one
    mask, chosen = select_shots_coverage(x, np.ones(20), shots, budget_frames=3)
    assert mask.sum() == 3 and len(chosen) == 0
    # NaN importance counts as 0 and the result is deterministic
    imp = np.full(20, np.nan)
    a = select_shots_coverage(x, imp, shots, budget_frames=10)[0]
    b = select_shots_coverage(x, imp, shots, budget_frames=10)[0]
    assert (a == b).all() and a.sum() == 10
    assert a[:10].any() and a[10:].any()  # pure coverage: both looks
    with pytest.raises(ValueError):
        select_shots_coverage(x, imp, shots, budget=0.0)


def test_fill_budget_spends_the_budget_on_the_most_important_stretch():
    from seqnrl.shots import fill_budget

    t = 100
    shots = np.array([[0, 30], [30, 70], [70, 100]])  # every shot longer than the budget
    imp = np.full(t, 0.1)
    imp[42:54] = 1.0  # the known anomalous stretch, inside the middle shot
    mask = fill_budget(np.zeros(t, dtype=bool), imp, shots, budget_frames=15)
    assert mask.sum() == 15
    assert mask[42:54].all(), np.flatnonzero(mask)
    # already at the budget: unchanged
    full = np.zeros(t, dtype=bool)
    full[:15] = True
    assert (fill_budget(full.copy(), imp, shots, 15) == full).all()
    # a partly used budget is topped up from the best untaken shot, never past the budget
    part = np.zeros(t, dtype=bool)
    part[0:5] = True
    out = fill_budget(part.copy(), imp, np.array([[0, 5], [5, 40], [40, 100]]), 15)
    assert out.sum() == 15 and out[42:52].all()


def test_fscore_hand_cases():
    ref = np.array([0, 1, 1, 1, 0, 0, 0, 0])
    assert summary_fscore(ref, ref) == (1.0, 1.0, 1.0)
    assert summary_fscore(np.zeros(8), ref) == (0.0, 0.0, 0.0)
    pred = np.array([0, 0, 1, 1, 1, 1, 0, 0])  # overlap 2, |pred| 4, |ref| 3
    f, p, r = summary_fscore(pred, ref)
    assert p == pytest.approx(0.5) and r == pytest.approx(2 / 3)
    assert f == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    refs = np.stack([ref, 1 - ref])
    # user 2 selects the complement: overlap 2 of pred 4, of ref 5 -> f = 2*.5*.4/.9
    f2 = 2 * 0.5 * 0.4 / 0.9
    assert evaluate_summary(pred, refs, "max")["f_score"] == pytest.approx(f)
    assert evaluate_summary(pred, refs, "avg")["f_score"] == pytest.approx((f + f2) / 2)
    with pytest.raises(ValueError):
        summary_fscore(np.zeros(3), ref)


def test_align_length_nearest():
    assert align_length(np.array([0, 1]), 4).tolist() == [0, 0, 1, 1]


def test_reference_files(tmp_path):
    csv_long = tmp_path / "long.csv"
    csv_long.write_text("frame,u1,u2\n0,1,0\n1,1,1\n2,0,1\n")
    assert load_reference_summaries(csv_long).tolist() == [[1, 1, 0], [0, 1, 1]]
    csv_wide = tmp_path / "wide.csv"
    csv_wide.write_text("user,f0,f1,f2\na,1,0,0\nb,0,0,1\n")
    assert load_reference_summaries(csv_wide).tolist() == [[1, 0, 0], [0, 0, 1]]
    js = tmp_path / "refs.json"
    js.write_text(json.dumps({"v1": {"user_summary": [[0, 2, 0]]}}))
    assert load_reference_summaries(js, "v1").tolist() == [[0, 1, 0]]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(SeqNRLError, match="bad.json"):
        load_reference_summaries(bad)
