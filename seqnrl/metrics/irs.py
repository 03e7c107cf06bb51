"""Image/Video Retrieval Score (IRS; Dombrowski et al., CVPR 2025, "Image generation
diversity issues and how to tame them").

Diversity as retrieval: every generated item retrieves its nearest training item in a
feature space; the more distinct training items are retrieved, the more of the training
set the generator covers.

* ``IRS_alpha = k / n_train``: ``k`` distinct training items retrieved by ``s`` generated
  items (``alpha = s / n_train``). It depends on ``s``: few samples cannot retrieve many
  items even from a perfect generator.
* ``IRS_inf = n_hat / n_train``: the generator is modelled as drawing uniformly from ``n``
  "learned" training items (balls-in-bins / occupancy model). The number of distinct bins
  hit by ``s`` balls in ``n`` bins has the law

      P(K = k | s, n) = C(n, k) * k! * S(s, k) / n^s

  with ``S`` the Stirling numbers of the second kind (computed here in log space). ``n_hat``
  is the maximum-likelihood ``n`` in ``[k, n_train]`` given the observed ``k``; the
  confidence interval inverts the exact one-sided tests (Clopper-Pearson style): every
  ``n`` with ``P(K >= k | n) >= (1 - c) / 2`` and ``P(K <= k | n) >= (1 - c) / 2`` is kept.
* ``IRS_adjusted = n_hat(generated) / n_hat(held-out real)`` with the same number of
  queries: a held-out real set should cover everything, so its shortfall is the
  *measurement gap* of the feature extractor (feature collapse, near-duplicates in the
  training set), which the ratio removes.

The paper retrieves by Euclidean distance; cosine similarity (the convention of
:mod:`seqnrl.metrics.generation`) is the default here and either can be chosen.
Pure functions of features: no model is imported.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import gammaln, lambertw, logsumexp

from seqnrl.metrics.generation import _as_2d, nearest_neighbours

__all__ = [
    "IRSResult",
    "coverage_estimate",
    "irs_adjusted",
    "log_stirling2_row",
    "occupancy_logpmf",
    "retrieval_indices",
    "retrieval_score",
]

# exact log-space recurrence up to this many (s * k_max) cells, Temme's asymptotic beyond
_EXACT_CELLS = 40_000_000


# -- Stirling numbers and the occupancy law -----------------------------------------------
def _log_stirling2_exact(s: int, k_max: int) -> np.ndarray:
    """``log S(s, k)`` for ``k = 0..k_max`` by the recurrence
    ``S(m, k) = k S(m-1, k) + S(m-1, k-1)`` in log-sum-exp form (``-inf`` where zero)."""
    row = np.full(k_max + 1, -np.inf)
    row[0] = 0.0  # S(0, 0) = 1
    logk = np.log(np.maximum(np.arange(k_max + 1, dtype=np.float64), 1.0))  # [0] unused
    for m in range(1, s + 1):
        hi = min(m, k_max)
        new = np.full(k_max + 1, -np.inf)
        with np.errstate(divide="ignore"):
            new[1 : hi + 1] = np.logaddexp(logk[1 : hi + 1] + row[1 : hi + 1], row[0:hi])
        row = new
    return row


def _log_stirling2_temme(s: int, k: np.ndarray) -> np.ndarray:
    """Temme's uniform asymptotic expansion of ``log S(s, k)`` (relative error O(1/s))."""
    k = np.asarray(k, dtype=np.float64)
    out = np.full(k.shape, -np.inf)
    out[k == s] = 0.0
    if s >= 1:
        out[k == 1] = 0.0
    mid = (k > 1) & (k < s)
    if mid.any():
        kk = k[mid]
        v = s / kk
        g = -np.real(lambertw(-v * np.exp(-v), 0))  # G = v exp(G - v), 0 < G < 1
        log_binom = gammaln(s + 1) - gammaln(kk + 1) - gammaln(s - kk + 1)
        out[mid] = (
            0.5 * np.log((v - 1) / (v * (1 - g)))
            + (s - kk) * np.log((v - 1) / (v - g))
            + s * np.log(kk)
            - kk * np.log(s)
            + kk * (1 - g)
            + log_binom
        )
    return out


def log_stirling2_row(s: int, k_max: int | None = None, exact: bool | None = None) -> np.ndarray:
    """``log S(s, k)`` for ``k = 0..k_max`` (default ``s``), Stirling numbers of the second
    kind. Exact (log-space recurrence) when ``s * k_max`` is moderate or ``exact=True``,
    otherwise Temme's asymptotic formula."""
    s = int(s)
    if s < 0:
        raise ValueError(f"s must be >= 0, got {s}")
    k_max = s if k_max is None else min(int(k_max), s)
    if exact is None:
        exact = s * max(k_max, 1) <= _EXACT_CELLS
    if exact or s == 0:
        return _log_stirling2_exact(s, k_max)
    return _log_stirling2_temme(s, np.arange(k_max + 1))


def occupancy_logpmf(k, s: int, n, log_stirling: np.ndarray | None = None) -> np.ndarray:
    """``log P(K = k | s draws, n equally likely bins) = log[C(n,k) k! S(s,k) / n^s]``.

    ``k`` and ``n`` broadcast; ``log_stirling`` (from :func:`log_stirling2_row`) may be
    passed to avoid recomputing it. ``-inf`` where impossible (``k > min(s, n)``).
    """
    k = np.asarray(k, dtype=np.int64)
    n = np.asarray(n, dtype=np.float64)
    if log_stirling is None:
        log_stirling = log_stirling2_row(s, int(np.max(k)) if k.size else 0)
    ls = np.asarray(log_stirling)
    k_ok = (k >= 0) & (k <= min(s, len(ls) - 1))
    lsk = np.where(k_ok, ls[np.clip(k, 0, len(ls) - 1)], -np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        n_minus_k = np.maximum(n - k, 0.0)
        out = gammaln(n + 1) - gammaln(n_minus_k + 1) + lsk - s * np.log(n)
    return np.where(k_ok & (k <= n), out, -np.inf)


def _log_tails(s: int, n: int, k: int, ls: np.ndarray) -> tuple[float, float]:
    """``log P(K <= k | n)`` and ``log P(K >= k | n)``."""
    kk = np.arange(len(ls))
    lp = occupancy_logpmf(kk, s, n, ls)
    return float(logsumexp(lp[: k + 1])), float(logsumexp(lp[k:]))


def coverage_estimate(k: int, s: int, n_max: int, confidence: float = 0.95) -> dict[str, float]:
    """Maximum-likelihood number of covered ("learned") items ``n`` given ``k`` distinct
    items seen in ``s`` uniform draws, with ``k <= n <= n_max``, and its confidence interval.

    Returns ``n_hat``, ``n_low``, ``n_high`` (integers as floats), ``saturated`` (1.0 when
    every draw was distinct, ``k == s``: the likelihood then grows with ``n`` and ``n_hat``
    is the upper limit ``n_max``, i.e. the data say only "at least ``n_low``"), and the
    inputs. The interval holds every ``n`` that neither one-sided exact test at level
    ``(1 - confidence) / 2`` rejects; ``P(K <= k | n)`` falls and ``P(K >= k | n)`` rises
    with ``n``, so the set is an interval found by bisection.
    """
    k, s, n_max = int(k), int(s), int(n_max)
    if s < 1 or not 1 <= k <= min(s, n_max):
        raise ValueError(f"need 1 <= k <= min(s, n_max); got k={k}, s={s}, n_max={n_max}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    # ML estimate: l(n) = lgamma(n+1) - lgamma(n-k+1) - s log n (the Stirling term is constant)
    n = np.arange(k, n_max + 1, dtype=np.float64)
    ll = gammaln(n + 1) - gammaln(n - k + 1) - s * np.log(n)
    n_hat = int(n[int(np.argmax(ll))])
    saturated = k == s

    ls = log_stirling2_row(s, min(s, n_max))
    log_a = math.log((1.0 - confidence) / 2.0)

    def lower_ok(m: int) -> bool:  # P(K >= k | m) not too small
        return _log_tails(s, m, k, ls)[1] >= log_a

    def upper_ok(m: int) -> bool:  # P(K <= k | m) not too small
        return _log_tails(s, m, k, ls)[0] >= log_a

    # smallest n in [k, n_hat] with lower_ok (monotone: false ... false true ... true)
    lo, hi = k, n_hat
    while lo < hi:
        mid = (lo + hi) // 2
        if lower_ok(mid):
            hi = mid
        else:
            lo = mid + 1
    n_low = lo
    # largest n in [n_hat, n_max] with upper_ok (monotone: true ... true false ... false)
    if saturated or upper_ok(n_max):
        n_high = n_max
    else:
        lo, hi = n_hat, n_max
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if upper_ok(mid):
                lo = mid
            else:
                hi = mid - 1
        n_high = lo
    return {
        "n_hat": float(n_hat),
        "n_low": float(min(n_low, n_hat)),
        "n_high": float(max(n_high, n_hat)),
        "saturated": float(saturated),
        "k": float(k),
        "s": float(s),
        "n_max": float(n_max),
        "confidence": float(confidence),
    }


# -- retrieval ------------------------------------------------------------------------------
def retrieval_indices(generated, training, metric: str = "cosine", chunk: int = 1024) -> np.ndarray:
    """Index of the nearest training item for every generated item (``"cosine"`` similarity,
    as :func:`seqnrl.metrics.generation.nearest_neighbours`, or ``"euclidean"`` distance)."""
    if metric == "cosine":
        return nearest_neighbours(generated, training)[0]
    if metric != "euclidean":
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    g, t = _as_2d(generated), _as_2d(training)
    if g.shape[1] != t.shape[1]:
        raise ValueError(f"feature sizes differ: {g.shape[1]} vs {t.shape[1]}")
    t2 = (t * t).sum(1)
    out = np.empty(len(g), dtype=np.int64)
    for a in range(0, len(g), chunk):
        q = g[a : a + chunk]
        d = t2[None, :] - 2.0 * q @ t.T  # |q|^2 is constant per row
        out[a : a + chunk] = d.argmin(1)
    return out


@dataclass
class IRSResult:
    n_train: int
    n_queries: int  # s
    k_distinct: int  # k
    alpha: float  # s / n_train
    irs_alpha: float  # k / n_train
    n_hat: int
    n_low: int
    n_high: int
    irs_inf: float  # n_hat / n_train
    irs_inf_low: float
    irs_inf_high: float
    saturated: bool
    confidence: float
    metric: str

    def to_dict(self) -> dict:
        return asdict(self)


def _result_from_indices(idx: np.ndarray, n_train: int, confidence: float, metric: str) -> IRSResult:
    s = int(len(idx))
    k = int(len(np.unique(idx)))
    est = coverage_estimate(k, s, n_train, confidence)
    return IRSResult(
        n_train=n_train,
        n_queries=s,
        k_distinct=k,
        alpha=s / n_train,
        irs_alpha=k / n_train,
        n_hat=int(est["n_hat"]),
        n_low=int(est["n_low"]),
        n_high=int(est["n_high"]),
        irs_inf=est["n_hat"] / n_train,
        irs_inf_low=est["n_low"] / n_train,
        irs_inf_high=est["n_high"] / n_train,
        saturated=bool(est["saturated"]),
        confidence=confidence,
        metric=metric,
    )


def retrieval_score(generated, training, metric: str = "cosine", confidence: float = 0.95) -> IRSResult:
    """IRS_alpha and IRS_inf (with its confidence interval) of ``generated`` ``(s, D)``
    against ``training`` ``(n_train, D)`` features."""
    idx = retrieval_indices(generated, training, metric)
    return _result_from_indices(idx, _as_2d(training).shape[0], confidence, metric)


def irs_adjusted(
    generated,
    training,
    heldout,
    metric: str = "cosine",
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """IRS of generated and of held-out real items with the same number of queries
    (the larger set is randomly subsampled to the smaller), and the adjusted score
    ``n_hat(generated) / n_hat(held-out)``.

    ``adjusted_low/high`` combine the two intervals conservatively
    (``n_low(gen) / n_high(ref)``, ``n_high(gen) / n_low(ref)``); ``adjusted_alpha`` is the
    plain ratio of distinct retrieved items. Values above 1 are possible (noise, or a
    generator covering more than an equally sized real sample retrieves).
    """
    g, h = _as_2d(generated), _as_2d(heldout)
    n_q = min(len(g), len(h))
    if n_q < 1:
        raise ValueError("need at least one generated and one held-out item")
    rng = np.random.default_rng(seed)
    if len(g) > n_q:
        g = g[np.sort(rng.choice(len(g), n_q, replace=False))]
    if len(h) > n_q:
        h = h[np.sort(rng.choice(len(h), n_q, replace=False))]
    gen = retrieval_score(g, training, metric, confidence)
    ref = retrieval_score(h, training, metric, confidence)
    return {
        "generated": gen.to_dict(),
        "heldout": ref.to_dict(),
        "n_queries": n_q,
        "adjusted": gen.n_hat / ref.n_hat,
        "adjusted_low": gen.n_low / ref.n_high,
        "adjusted_high": gen.n_high / ref.n_low,
        "adjusted_alpha": gen.k_distinct / ref.k_distinct,
    }
