"""Metrics of generated data (pure functions of values and features; no model imports).

- **Condition fidelity**: how well a measured property of generated clips (e.g. EF measured
  on the frames) matches the requested condition: R^2 (requested = truth) and MAE
  (EchoDiffusion reports R^2 of EF measured by a regressor on generated videos).
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
    """R^2 (``1 - SS_res / SS_tot`` with the requested values as truth), MAE, Pearson r and
    bias (mean measured - requested) over pairs where both are finite.

    R^2 is NaN when fewer than two pairs remain or the requested values do not vary.
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
    }
    if n == 0:
        return out
    out["mae"] = float(np.mean(np.abs(mea - req)))
    out["bias"] = float(np.mean(mea - req))
    ss_tot = float(np.sum((req - req.mean()) ** 2))
    if n >= 2 and ss_tot > 0:
        out["r2"] = 1.0 - float(np.sum((req - mea) ** 2)) / ss_tot
        if np.std(mea) > 0:
            out["pearson_r"] = float(np.corrcoef(req, mea)[0, 1])
    return out


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
