"""Metrics of generated data (pure functions of values and features; no model imports).

- **Condition fidelity**: how well a measured property of generated clips (e.g. EF measured
  on the frames) matches the requested condition: R^2 (requested = truth) and MAE
  (EchoDiffusion reports R^2 of EF measured by a regressor on generated videos), with a
  permutation null (:func:`fidelity_permutation_test`) and per-level summaries
  (:func:`fidelity_by_level`) to show that the condition is followed at all.
- **Frechet distance** between two feature sets (the formula of FID/FVD). FVD proper uses an
  I3D network trained on Kinetics; its weights cannot be downloaded here, so the features
  come from seqnrl's own normative encoder or any extractor the caller gives, and the
  numbers are *not* comparable with published FID/FVD, only with each other.
- **Nearest-neighbour retrieval** (Dombrowski et al. CVPR 2025; EchoNet-Synthetic's privacy
  filter): for each generated item the most similar training item by cosine similarity;
  *coverage* = distinct training items retrieved / training set size (low coverage = the
  generator reproduces a few modes); *near copies* = generated items whose similarity to
  their nearest training item is above a threshold (memorisation / privacy risk).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from scipy import linalg


def _as_2d(x: Any) -> np.ndarray:
    a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {a.shape}")
    return a


# -- condition fidelity -------------------------------------------------------------------
def measure_all(items: Iterable[Any], measure: Callable[[Any], float]) -> np.ndarray:
    """Apply a measuring callable (e.g. a frame-based EF estimator) to every item."""
    return np.asarray([float(measure(x)) for x in items], dtype=np.float64)


def condition_fidelity(requested: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """R^2 (``1 - SS_res / SS_tot`` with the requested values as truth), MAE, Pearson r,
    bias (mean measured - requested) and slope (least-squares slope of measured on requested:
    1 = the measurement moves one for one with the request, 0 = it ignores it) over pairs
    where both are finite.

    R^2, r and slope are NaN when fewer than two pairs remain or the requested values do not
    vary (r also when the measured values do not).
    """
    req = np.asarray(requested, dtype=np.float64).ravel()
    mea = np.asarray(measured, dtype=np.float64).ravel()
    if req.shape != mea.shape:
        raise ValueError(f"requested and measured differ in length: {req.shape} vs {mea.shape}")
    ok = np.isfinite(req) & np.isfinite(mea)
    req, mea = req[ok], mea[ok]
    n = int(req.size)
    out = {
        "n": float(n),
        "r2": float("nan"),
        "mae": float("nan"),
        "pearson_r": float("nan"),
        "bias": float("nan"),
        "slope": float("nan"),
    }
    if n == 0:
        return out
    out["mae"] = float(np.mean(np.abs(mea - req)))
    out["bias"] = float(np.mean(mea - req))
    ss_tot = float(np.sum((req - req.mean()) ** 2))
    if n >= 2 and ss_tot > 0:
        out["r2"] = 1.0 - float(np.sum((req - mea) ** 2)) / ss_tot
        out["slope"] = float(np.sum((req - req.mean()) * (mea - mea.mean())) / ss_tot)
        if np.std(mea) > 0:
            out["pearson_r"] = float(np.corrcoef(req, mea)[0, 1])
    return out


def fidelity_permutation_test(
    requested: Sequence[float],
    measured: Sequence[float],
    n_permutations: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """How far the requested/measured association is above chance: Pearson r and R^2 of the
    measured values against randomly permuted requested values (the pairs a generator that
    ignores its condition would give), over finite pairs.

    Returns the observed r and R^2, the null's mean and standard deviation of both, and the
    one-sided permutation p-value of r, ``(1 + #{r_null >= r_obs}) / (1 + n_permutations)``.
    All NaN when fewer than three pairs remain or either side is constant.
    """
    req = np.asarray(requested, dtype=np.float64).ravel()
    mea = np.asarray(measured, dtype=np.float64).ravel()
    if req.shape != mea.shape:
        raise ValueError(f"requested and measured differ in length: {req.shape} vs {mea.shape}")
    ok = np.isfinite(req) & np.isfinite(mea)
    req, mea = req[ok], mea[ok]
    keys = ("r", "r2", "r_null_mean", "r_null_sd", "r2_null_mean", "r2_null_sd", "p_value")
    out = dict.fromkeys(keys, float("nan"))
    out["n_permutations"] = float(n_permutations)
    if req.size < 3 or np.std(req) == 0 or np.std(mea) == 0:
        return out
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(req) for _ in range(int(n_permutations))])  # (P, N)

    def r_of(x: np.ndarray) -> np.ndarray:  # Pearson r of each row of x with ``mea``
        xc = x - x.mean(axis=-1, keepdims=True)
        mc = mea - mea.mean()
        return (xc @ mc) / (np.linalg.norm(xc, axis=-1) * np.linalg.norm(mc))

    def r2_of(x: np.ndarray) -> np.ndarray:  # 1 - SS_res / SS_tot with x as truth
        ss_tot = np.sum((x - x.mean(axis=-1, keepdims=True)) ** 2, axis=-1)
        return 1.0 - np.sum((x - mea) ** 2, axis=-1) / ss_tot

    r_null, r2_null = r_of(perms), r2_of(perms)
    r_obs = float(r_of(req[None])[0])
    out.update(
        r=r_obs,
        r2=float(r2_of(req[None])[0]),
        r_null_mean=float(r_null.mean()),
        r_null_sd=float(r_null.std()),
        r2_null_mean=float(r2_null.mean()),
        r2_null_sd=float(r2_null.std()),
        p_value=float((1 + np.sum(r_null >= r_obs)) / (1 + len(r_null))),
    )
    return out


def fidelity_by_level(
    requested: Sequence[float], measured: Sequence[float]
) -> list[dict[str, float]]:
    """Per distinct requested value (sorted): count of finite measurements, their mean,
    standard deviation and mean absolute error (NaN where none is finite)."""
    req = np.asarray(requested, dtype=np.float64).ravel()
    mea = np.asarray(measured, dtype=np.float64).ravel()
    if req.shape != mea.shape:
        raise ValueError(f"requested and measured differ in length: {req.shape} vs {mea.shape}")
    rows = []
    for level in np.unique(req[np.isfinite(req)]):
        m = mea[(req == level) & np.isfinite(mea)]
        nan = float("nan")
        rows.append({
            "requested": float(level),
            "n": float(m.size),
            "measured_mean": float(m.mean()) if m.size else nan,
            "measured_sd": float(m.std()) if m.size else nan,
            "mae": float(np.abs(m - level).mean()) if m.size else nan,
        })  # fmt: skip
    return rows


# -- Frechet distance ---------------------------------------------------------------------
def _sqrtm(a: np.ndarray) -> np.ndarray:
    out = linalg.sqrtm(a)
    return out[0] if isinstance(out, tuple) else out  # older SciPy returned (sqrtm, error)


def gaussian_frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``, the squared 2-Wasserstein distance
    between two Gaussians. A tiny ``eps`` is added to the diagonals when the product is
    singular (as in the reference FID code)."""
    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    s1, s2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError("the two Gaussians have different dimensions")
    diff = mu1 - mu2
    covmean = _sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        off = np.eye(s1.shape[0]) * eps
        covmean = _sqrtm((s1 + off) @ (s2 + off))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean), 0.0))


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (unbiased) of ``(N, D)`` features."""
    f = _as_2d(features)
    if f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors, got {f.shape[0]}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(features_a, features_b, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to two ``(N, D)`` feature sets."""
    return gaussian_frechet_distance(
        *feature_statistics(features_a), *feature_statistics(features_b), eps=eps
    )


# -- nearest-neighbour retrieval ----------------------------------------------------------
def _normalise(f: np.ndarray) -> np.ndarray:
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def nearest_neighbours(generated, training) -> tuple[np.ndarray, np.ndarray]:
    """For each generated item, the index of the most cosine-similar training item and that
    similarity: ``(N_gen,)`` int, ``(N_gen,)`` float."""
    g, t = _normalise(_as_2d(generated)), _normalise(_as_2d(training))
    if g.shape[1] != t.shape[1]:
        raise ValueError(f"feature sizes differ: {g.shape[1]} vs {t.shape[1]}")
    sim = g @ t.T
    idx = sim.argmax(axis=1)
    return idx, sim[np.arange(len(g)), idx]


def retrieval_coverage(generated, training) -> float:
    """Distinct training items retrieved as nearest neighbours / training set size."""
    idx, _ = nearest_neighbours(generated, training)
    return float(len(np.unique(idx)) / _as_2d(training).shape[0])


def near_copy_flags(generated, training, threshold: float = 0.95) -> np.ndarray:
    """``(N_gen,)`` bool: generated items whose nearest training item has cosine similarity
    ``>= threshold`` (candidates to drop, as in EchoNet-Synthetic's privacy filter)."""
    _, sim = nearest_neighbours(generated, training)
    return sim >= threshold


def retrieval_report(generated, training, threshold: float = 0.95) -> dict[str, float]:
    """Coverage, near-copy count/fraction and similarity summary in one dict."""
    idx, sim = nearest_neighbours(generated, training)
    n_train = _as_2d(training).shape[0]
    flags = sim >= threshold
    return {
        "coverage": float(len(np.unique(idx)) / n_train),
        "n_generated": float(len(sim)),
        "n_training": float(n_train),
        "near_copies": float(flags.sum()),
        "near_copy_fraction": float(flags.mean()) if len(sim) else float("nan"),
        "nn_similarity_mean": float(sim.mean()) if len(sim) else float("nan"),
        "nn_similarity_max": float(sim.max()) if len(sim) else float("nan"),
        "threshold": float(threshold),
    }
