"""Shots and shot selection: kernel temporal segmentation (KTS) and the 0/1 knapsack.

The DSN/TVSum/SumMe pipeline turns per-frame importance into a summary in three steps:

1. :func:`kts_shots` cuts the recording into shots where the features change (kernel
   change-point detection, Potapov et al. ECCV 2014, here through ``ruptures.KernelCPD``);
2. :func:`shot_scores` gives every shot the mean importance of its frames;
3. :func:`knapsack` picks the shots of maximum total score whose total length fits the
   budget (15 % of the duration by default), exactly, by dynamic programming over integer
   frame counts.

A knapsack on per-shot scores ignores what the chosen shots look like: when one part of a
recording scores high it fills the whole budget. :func:`select_shots_coverage` solves the
same budgeted problem for a *coverage* objective instead: facility-location
representativeness of all frames by the chosen ones plus the importance of the chosen
frames (a monotone submodular function), maximised by cost-scaled greedy under the length
budget (Lin & Bilmes, NAACL 2010; the submodular summarisation of Gygli et al., CVPR 2015).

Shots are ``(S, 2)`` int64 arrays of half-open ``[start, end)`` frame ranges that tile
``0..T``.
"""

from __future__ import annotations

import math

import numpy as np
import ruptures as rpt

KERNELS = ("linear", "cosine", "rbf")


def boundaries_to_shots(boundaries: np.ndarray | list[int], n_frames: int) -> np.ndarray:
    """Change points (first frame of each new shot) -> ``(S, 2)`` ``[start, end)`` shots."""
    b = sorted({int(x) for x in boundaries if 0 < int(x) < n_frames})
    edges = [0, *b, n_frames]
    return np.array([[a, c] for a, c in zip(edges[:-1], edges[1:])], dtype=np.int64).reshape(-1, 2)


def shots_to_boundaries(shots: np.ndarray) -> np.ndarray:
    """First frame of every shot but the first."""
    return np.asarray(shots, dtype=np.int64)[1:, 0]


def uniform_shots(n_frames: int, shot_len: int) -> np.ndarray:
    """Fixed-length shots (the last one may be shorter)."""
    if shot_len < 1:
        raise ValueError(f"shot_len must be >= 1, got {shot_len}")
    return boundaries_to_shots(np.arange(shot_len, n_frames, shot_len), n_frames)


def _prepare(features: np.ndarray, kernel: str) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"features must be (T, D), got shape {x.shape}")
    if not np.isfinite(x).all():
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    if kernel == "linear":
        # standardise so that no single large dimension dominates the kernel
        x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    elif kernel == "cosine":
        x = x - x.mean(0)
        x = x + 1e-9  # a zero row has no direction
    return x


def kts_shots(
    features: np.ndarray,
    *,
    n_change_points: int | None = None,
    penalty: float | None = None,
    fps: float | None = None,
    shot_seconds: float = 2.0,
    min_shot_frames: int = 2,
    kernel: str = "cosine",
    exact_max_frames: int = 1000,
) -> np.ndarray:
    """Kernel temporal segmentation of ``features`` ``(T, D)`` into shots.

    How many shots:

    * ``penalty``: penalised KernelCPD (``cost + penalty * n_change_points``), as given;
    * ``n_change_points``: that many change points (fewer if ``min_shot_frames`` does not
      allow them);
    * neither: the number scales with the length, one shot per ``shot_seconds`` on average
      (``T / (fps * shot_seconds)`` shots; ``fps`` defaults to 1 frame per second).

    With a target number, sequences up to ``exact_max_frames`` use ruptures' exact dynamic
    programme (cost ``O(K T^2)``); longer ones search the penalty (log-bisection) that gives
    the nearest number of change points, which costs milliseconds instead of minutes.
    Returns ``(S, 2)`` ``[start, end)`` shots covering every frame.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    x = _prepare(features, kernel)
    t = len(x)
    min_size = max(1, int(min_shot_frames))
    if t < 2 * min_size:
        return boundaries_to_shots([], t)
    algo = rpt.KernelCPD(kernel=kernel, min_size=min_size).fit(x)
    if penalty is not None:
        if penalty < 0:
            raise ValueError(f"penalty must be >= 0, got {penalty}")
        return boundaries_to_shots(algo.predict(pen=float(penalty))[:-1], t)
    if n_change_points is None:
        rate = fps if fps and fps > 0 else 1.0
        n_change_points = round(t / (rate * shot_seconds)) - 1
    k = int(min(max(n_change_points, 0), t // min_size - 1))
    if k <= 0:
        return boundaries_to_shots([], t)
    if t <= exact_max_frames:
        return boundaries_to_shots(algo.predict(n_bkps=k)[:-1], t)
    return boundaries_to_shots(_penalty_search(algo, k)[:-1], t)


def _penalty_search(algo: rpt.KernelCPD, k: int, iters: int = 40) -> list[int]:
    """Breakpoints of the penalised fit whose count is nearest ``k`` (count falls with pen)."""
    lo, hi = 1e-6, 1.0
    while len(algo.predict(pen=hi)) - 1 > k and hi < 1e12:
        hi *= 10.0
    best = algo.predict(pen=hi)
    for _ in range(iters):
        mid = math.sqrt(lo * hi)
        bk = algo.predict(pen=mid)
        n = len(bk) - 1
        if abs(n - k) < abs(len(best) - 1 - k) or (abs(n - k) == abs(len(best) - 1 - k) and n <= k):
            best = bk
        if n == k:
            break
        if n > k:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1.0 + 1e-6:
            break
    return best


def shot_scores(frame_scores: np.ndarray, shots: np.ndarray) -> np.ndarray:
    """Mean frame score of every shot (NaN frames ignored; an all-NaN shot scores 0)."""
    s = np.asarray(frame_scores, dtype=np.float64)
    out = np.zeros(len(shots))
    for i, (a, b) in enumerate(np.asarray(shots)):
        seg = s[a:b]
        seg = seg[np.isfinite(seg)]
        out[i] = float(seg.mean()) if seg.size else 0.0
    return out


def knapsack(values: np.ndarray, weights: np.ndarray, capacity: int) -> np.ndarray:
    """Exact 0/1 knapsack: indices of the items of maximum total value with total weight
    ``<= capacity`` (integer weights; DP over capacities, ``O(n * capacity)``).

    Items with weight 0 are free and taken when their value is positive; negative values are
    never taken. Ties are broken towards the earlier items. Returns sorted indices.
    """
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights)
    if v.shape != w.shape or v.ndim != 1:
        raise ValueError(f"values and weights must be 1-D of one length, got {v.shape} and {w.shape}")
    if np.any(w < 0) or np.any(w != np.round(w)):
        raise ValueError("weights must be non-negative integers")
    w = w.astype(np.int64)
    cap = int(capacity)
    if cap < 0:
        raise ValueError(f"capacity must be >= 0, got {capacity}")
    n = len(v)
    best = np.zeros(cap + 1)
    take = np.zeros((n, cap + 1), dtype=bool)
    for i in range(n):
        wi, vi = int(w[i]), v[i]
        if vi <= 0 or wi > cap:
            continue
        cand = np.full(cap + 1, -np.inf)
        cand[wi:] = best[: cap + 1 - wi] + vi
        better = cand > best + 1e-12
        take[i] = better
        best = np.where(better, cand, best)
    chosen = []
    c = cap
    for i in range(n - 1, -1, -1):
        if take[i, c]:
            chosen.append(i)
            c -= int(w[i])
    return np.array(sorted(chosen), dtype=np.int64)


def select_shots(
    frame_importance: np.ndarray,
    shots: np.ndarray,
    budget: float = 0.15,
    *,
    budget_frames: int | None = None,
    value: str = "mean",
) -> tuple[np.ndarray, np.ndarray]:
    """Pick shots by knapsack on shot scores under ``budget`` (fraction of frames).

    ``value="mean"``: a shot is worth its mean frame importance (DSN / vsumm convention).
    Maximising a sum of means under a length budget favours many short shots (Otani et
    al., CVPR 2019). ``value="sum"``: a shot is worth its total importance (mean x length),
    i.e. the summary holds the most important frames the shot structure allows.
    Returns ``(frame_mask (T,) bool, chosen shot indices)``.
    """
    t = int(np.asarray(shots)[-1, 1]) if len(shots) else 0
    if budget_frames is None:
        if not 0 < budget <= 1:
            raise ValueError(f"budget must be in (0, 1], got {budget}")
        budget_frames = int(math.floor(budget * t))
    values = np.maximum(shot_scores(frame_importance, shots), 0.0)
    lengths = (shots[:, 1] - shots[:, 0]).astype(np.int64)
    if value == "sum":
        values = values * lengths
    elif value != "mean":
        raise ValueError(f"value must be 'mean' or 'sum', got {value!r}")
    # a tiny positive floor so a shot of importance 0 can still fill an empty budget
    chosen = knapsack(values + 1e-9, lengths, budget_frames)
    mask = np.zeros(t, dtype=bool)
    for i in chosen:
        mask[shots[i, 0] : shots[i, 1]] = True
    return mask, chosen


def split_long_shots(shots: np.ndarray, max_len: int) -> np.ndarray:
    """Cut every shot longer than ``max_len`` frames into equal parts of at most ``max_len``."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    out = []
    for a, b in np.asarray(shots, dtype=np.int64).reshape(-1, 2):
        parts = max(1, math.ceil((b - a) / max_len))
        edges = np.linspace(a, b, parts + 1).round().astype(np.int64)
        out.extend([e0, e1] for e0, e1 in zip(edges[:-1], edges[1:]))
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def select_shots_coverage(
    features: np.ndarray,
    frame_importance: np.ndarray,
    shots: np.ndarray,
    budget: float = 0.15,
    *,
    budget_frames: int | None = None,
    importance_weight: float = 1.0,
    bandwidth: float = 1.0,
    max_points: int = 1500,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick shots maximising coverage + importance under a length budget.

    Objective of a set ``S`` of shots (``B`` = budget in frames, ``N`` sampled frames)::

        F(S) = 1/N sum_i max_{j in S} k(x_i, x_j)  +  importance_weight / B * sum_{j in S} imp_j

    with ``k`` a Gaussian kernel on the features, ``exp(-d^2 / (bandwidth * median d^2))``.
    The first term is 1 when every frame has an identical frame in the summary, so a part
    of the recording that looks different from everything chosen so far (a new zone, a new
    view) earns a large gain; the second is the mean importance the summary holds. ``F`` is
    monotone submodular; shots are added greedily by gain per frame while they fit, and the
    result is compared with the best single shot (Lin & Bilmes 2010), which bounds the
    greedy solution within a constant factor of the optimum.

    ``features``: ``(T, D)``; ``frame_importance``: ``(T,)`` (negative and NaN count as 0;
    divided by its maximum, so both terms lie in [0, 1]);
    frames are subsampled to ``max_points`` for the kernel. Returns ``(frame_mask (T,) bool,
    chosen shot indices)``.
    """
    shots = np.asarray(shots, dtype=np.int64).reshape(-1, 2)
    t = int(shots[-1, 1]) if len(shots) else 0
    x = np.asarray(features, dtype=np.float64).reshape(t, -1) if t else np.zeros((0, 1))
    if budget_frames is None:
        if not 0 < budget <= 1:
            raise ValueError(f"budget must be in (0, 1], got {budget}")
        budget_frames = int(math.floor(budget * t))
    mask = np.zeros(t, dtype=bool)
    if t == 0 or budget_frames <= 0:
        return mask, np.zeros(0, dtype=np.int64)
    imp = np.nan_to_num(np.asarray(frame_importance, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    imp = np.maximum(imp, 0.0)
    if imp.max() > 0:
        imp = imp / imp.max()  # both terms on one scale: at most 1
    x = np.nan_to_num(x)
    x = x - x.mean(0)  # no per-dimension scaling: it would inflate noise dimensions
    idx = np.arange(0, t, max(1, math.ceil(t / max_points)))
    p = x[idx]
    sq = (p * p).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * p @ p.T, 0.0)
    pos = d2[d2 > 1e-12]
    sigma2 = float(np.median(pos)) if pos.size else 1.0
    k = np.exp(-d2 / (bandwidth * sigma2))  # (N, N)
    lengths = shots[:, 1] - shots[:, 0]
    owner = np.searchsorted(shots[:, 1], idx, side="right")  # shot of every sampled frame
    shot_k = np.zeros((len(shots), len(idx)))
    for s in range(len(shots)):
        rows = np.flatnonzero(owner == s)
        if rows.size == 0:  # a shot shorter than the sampling step: its nearest sampled frame
            rows = np.array([min(int(np.searchsorted(idx, shots[s, 0])), len(idx) - 1)])
        shot_k[s] = k[rows].max(0)
    imp_gain = importance_weight / budget_frames * np.array([imp[a:b].sum() for a, b in shots])

    def gains(cover: np.ndarray) -> np.ndarray:
        return np.maximum(shot_k - cover[None, :], 0.0).mean(1) + imp_gain

    cover = np.zeros(len(idx))
    taken = np.zeros(len(shots), dtype=bool)
    used, value = 0, 0.0
    while True:
        feasible = ~taken & (lengths <= budget_frames - used) & (lengths > 0)
        if not feasible.any():
            break
        g = gains(cover)
        ratio = np.where(feasible, g / np.maximum(lengths, 1), -np.inf)
        i = int(np.argmax(ratio))
        taken[i] = True
        used += int(lengths[i])
        value += float(g[i])
        cover = np.maximum(cover, shot_k[i])
    single = gains(np.zeros(len(idx)))
    single = np.where((lengths <= budget_frames) & (lengths > 0), single, -np.inf)
    if single.size and single.max() > value:
        taken[:] = False
        taken[int(np.argmax(single))] = True
    chosen = np.flatnonzero(taken).astype(np.int64)
    for i in chosen:
        mask[shots[i, 0] : shots[i, 1]] = True
    fill_budget(mask, imp, shots, budget_frames)
    return mask, chosen


def fill_budget(mask: np.ndarray, importance: np.ndarray, shots: np.ndarray, budget_frames: int) -> np.ndarray:
    """Spend what whole shots left of the budget on parts of shots (in place).

    Shot selection under a length budget leaves frames unused whenever no remaining shot
    fits (a 6-s clip with 1-s shots and a 0.9-s budget gets nothing, a summary of 8 % instead
    of 15 %), and a shot longer than the budget can never be chosen whatever its importance.
    While frames remain, the untaken shot with the highest mean importance contributes its
    most important contiguous window of the remaining length. Invariant: afterwards
    ``mask.sum() == min(budget_frames, len(mask))`` whenever the mask held at most
    ``budget_frames`` frames before.
    """
    imp = np.nan_to_num(np.asarray(importance, dtype=np.float64), nan=0.0)
    left = int(budget_frames) - int(mask.sum())
    open_shots = [(int(a), int(b)) for a, b in np.asarray(shots).reshape(-1, 2) if b > a and not mask[a:b].any()]
    while left > 0 and open_shots:
        a, b = max(open_shots, key=lambda ab: (imp[ab[0] : ab[1]].mean(), -ab[0]))
        open_shots.remove((a, b))
        n = min(left, b - a)
        sums = np.convolve(imp[a:b], np.ones(n), mode="valid")  # window sums, length (b - a) - n + 1
        s0 = a + int(np.argmax(sums))
        mask[s0 : s0 + n] = True
        left -= n
    return mask


def mask_to_segments(mask: np.ndarray) -> np.ndarray:
    """Maximal runs of true frames as ``(S, 2)`` ``[start, end)``."""
    m = np.asarray(mask, dtype=bool).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.r_[0, m, 0]))
    return edges.reshape(-1, 2).astype(np.int64)
