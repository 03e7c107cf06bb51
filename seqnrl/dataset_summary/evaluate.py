"""Is a summary a good training set? Downstream comparison of subsets.

For every seed the collection is split into folds by *group* (patient: all recordings of
one subject in the same fold; folds stratified by the group's label for classification).
For each fold, the other folds form the **pool**; from the pool every arm takes a training
set:

* ``summary`` -- :func:`seqnrl.dataset_summary.select.select_subset` (communities);
* ``kcenter`` -- k-center greedy, same per-class budget;
* ``random`` -- a seeded random subset with exactly the summary's per-class counts;
* ``all`` -- the whole pool.

A small model is trained on the arm's subset only and predicts the held-out fold; the
predictions of all folds are pooled into one figure per seed: video AUROC (rank-based) for
classification (L2 logistic regression, or a small MLP), MAE and R^2 for regression (ridge,
penalty chosen by leave-one-out on the training subset). Features are standardised with
the pool's statistics (unlabelled, identical for every arm). Reported: mean and standard
deviation over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import minimize

from seqnrl.dataset_summary.select import select_subset
from seqnrl.metrics.ranks import rank_auroc

__all__ = [
    "ARMS",
    "EvalConfig",
    "compare_subsets",
    "fit_logistic",
    "fit_mlp",
    "fit_ridge",
    "format_results",
    "group_folds",
]

ARMS = ("summary", "kcenter", "random", "all")


# ---------------------------------------------------------------------------------------
# small downstream models
# ---------------------------------------------------------------------------------------
def fit_logistic(x: np.ndarray, y: np.ndarray, c: float = 1.0, balanced: bool = True):
    """L2-penalised logistic regression (L-BFGS); returns ``predict(x) -> P(y=1)``.
    ``balanced`` weights the classes inversely to their frequency. One class only: the
    prediction is that class's constant."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if len(np.unique(y)) < 2:
        const = float(y.mean()) if len(y) else 0.5
        return lambda z: np.full(len(z), const)
    w_s = np.ones(len(y))
    if balanced:
        for v in (0.0, 1.0):
            m = y == v
            w_s[m] = len(y) / (2.0 * m.sum())
    lam = 1.0 / c

    def loss(p):
        w, b = p[:-1], p[-1]
        z = x @ w + b
        ll = np.logaddexp(0.0, z) - y * z
        g = (1.0 / (1.0 + np.exp(-z)) - y) * w_s
        return float((w_s * ll).sum() + 0.5 * lam * w @ w), np.r_[x.T @ g + lam * w, g.sum()]

    res = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    w, b = res.x[:-1], res.x[-1]
    return lambda z: 1.0 / (1.0 + np.exp(-(np.asarray(z, np.float64) @ w + b)))


def fit_mlp(x: np.ndarray, y: np.ndarray, hidden: int = 32, steps: int = 300, lr: float = 1e-2,
            weight_decay: float = 1e-2, seed: int = 0, task: str = "classification"):
    """A one-hidden-layer MLP (full-batch Adam); classification returns P(y=1)."""
    g = torch.Generator().manual_seed(seed)
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.float32)
    if task == "classification" and len(torch.unique(yt)) < 2:
        const = float(yt.mean()) if len(yt) else 0.5
        return lambda z: np.full(len(z), const)
    net = torch.nn.Sequential(torch.nn.Linear(xt.shape[1], hidden), torch.nn.GELU(), torch.nn.Linear(hidden, 1))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (1.0 / math.sqrt(max(p.shape[-1], 1))))
    mu = yt.mean() if task != "classification" else torch.tensor(0.0)
    sd = (yt.std() if task != "classification" and len(yt) > 1 else torch.tensor(1.0)).clamp_min(1e-6)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        out = net(xt)[:, 0]
        if task == "classification":
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out, yt)
        else:
            loss = ((out - (yt - mu) / sd) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()

    def predict(z):
        with torch.no_grad():
            o = net(torch.as_tensor(np.asarray(z), dtype=torch.float32))[:, 0]
        return (torch.sigmoid(o) if task == "classification" else o * sd + mu).numpy().astype(np.float64)

    return predict


def fit_ridge(x: np.ndarray, y: np.ndarray, lambdas: Sequence[float] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)):
    """Ridge regression with an unpenalised intercept; the penalty is chosen by exact
    leave-one-out error on the training data (hat-matrix formula)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if len(y) < 2:
        const = float(y.mean()) if len(y) else 0.0
        return lambda z: np.full(len(z), const)
    xm, ym = x.mean(0), y.mean()
    xc, yc = x - xm, y - ym
    best = None
    for lam in lambdas:
        # kernel form: cheap when n << d
        k = xc @ xc.T
        a = np.linalg.solve(k + lam * np.eye(len(y)), np.eye(len(y)))
        h = k @ a + 1.0 / len(y)  # hat matrix incl. the intercept
        fit = k @ a @ yc + ym
        loo = (y - fit) / np.maximum(1.0 - np.diag(h), 1e-9)
        err = float(np.mean(loo**2))
        if best is None or err < best[0]:
            best = (err, lam, xc.T @ (a @ yc))
    w = best[2]
    return lambda z: (np.asarray(z, np.float64) - xm) @ w + ym


# ---------------------------------------------------------------------------------------
# folds and arms
# ---------------------------------------------------------------------------------------
def group_folds(groups: Sequence, n_folds: int, seed: int, strata: Sequence | None = None) -> np.ndarray:
    """Fold id per item: whole groups per fold, groups of each stratum (the group's label:
    its largest value) dealt round-robin after a seeded shuffle, each to the fold holding
    the fewest items of that stratum so far."""
    groups = np.asarray([str(g) for g in groups])
    uniq = sorted(set(groups))
    n_folds = max(2, min(int(n_folds), len(uniq)))
    size = {g: int((groups == g).sum()) for g in uniq}
    if strata is None:
        gstrat = {g: "" for g in uniq}
    else:
        s = np.asarray(strata)
        gstrat = {g: str(max(s[groups == g])) for g in uniq}
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    load = np.zeros(n_folds)
    for st in sorted(set(gstrat.values())):
        gs = [g for g in uniq if gstrat[g] == st]
        rng.shuffle(gs)
        gs.sort(key=lambda g: -size[g])  # stable: big groups first, shuffled within a size
        sload = np.zeros(n_folds)
        for g in gs:
            j = int(np.lexsort((rng.random(n_folds), load, sload))[0])
            fold_of[g] = j
            sload[j] += size[g]
            load[j] += size[g]
    return np.array([fold_of[g] for g in groups])


def _random_like(strata: np.ndarray, counts: dict[str, int], rng: np.random.Generator) -> np.ndarray:
    out = []
    for c, n in sorted(counts.items()):
        rows = np.flatnonzero(strata == c)
        out.extend(rng.choice(rows, min(n, len(rows)), replace=False).tolist())
    return np.array(sorted(out), dtype=np.int64)


@dataclass
class EvalConfig:
    """Settings of :func:`compare_subsets`."""

    budget: int = 5
    per_class: bool = True
    task: str = "classification"  # or "regression"
    model: str = "logreg"  # "logreg" | "mlp" (classification); "ridge" | "mlp" (regression)
    n_folds: int = 4
    seeds: Sequence[int] = (0, 1, 2, 3, 4)
    arms: Sequence[str] = ARMS
    k: int = 10
    community_method: str = "louvain"
    centrality: str = "degree"
    logreg_c: float = 1.0
    extra: dict = field(default_factory=dict)


def _train_predict(cfg: EvalConfig, xtr, ytr, xte, seed):
    if cfg.task == "classification":
        if cfg.model == "mlp":
            return fit_mlp(xtr, ytr, seed=seed)(xte)
        return fit_logistic(xtr, ytr, c=cfg.logreg_c)(xte)
    if cfg.model == "mlp":
        return fit_mlp(xtr, ytr, seed=seed, task="regression")(xte)
    return fit_ridge(xtr, ytr)(xte)


def _metrics(task: str, pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    if task == "classification":
        return {"auroc": rank_auroc(pred, y)}
    err = pred - y
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return {"mae": float(np.abs(err).mean()), "r2": 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else float("nan")}


def compare_subsets(
    x: np.ndarray,
    y: Sequence[float],
    groups: Sequence | None = None,
    strata: Sequence | None = None,
    cfg: EvalConfig | None = None,
) -> dict:
    """Downstream comparison of the arms (see the module doc).

    Args:
        x: ``(N, D)`` embeddings (the selection space and the model input).
        y: targets: 0/1 for classification, real values for regression.
        groups: group (patient) per item; default one group per item.
        strata: class per item for per-class budgets (default: ``y`` for classification,
            one class for regression).
    Returns:
        ``{"config": ..., "arms": {arm: {"per_seed": [...], "mean": {...}, "std": {...},
        "train_size_mean": ...}}}``.
    """
    cfg = cfg or EvalConfig()
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n = len(x)
    groups = np.arange(n).astype(str) if groups is None else np.asarray([str(g) for g in groups])
    if strata is None:
        strata = y.astype(int).astype(str) if cfg.task == "classification" else np.array([""] * n)
    strata = np.asarray([str(s) for s in strata])
    res: dict[str, dict] = {a: {"per_seed": [], "train_sizes": []} for a in cfg.arms}
    for seed in cfg.seeds:
        folds = group_folds(groups, cfg.n_folds, seed, y if cfg.task == "classification" else None)
        preds = {a: np.full(n, np.nan) for a in cfg.arms}
        sizes = {a: [] for a in cfg.arms}
        for f in np.unique(folds):
            pool, test = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
            mu, sd = x[pool].mean(0), x[pool].std(0)
            sd[sd < 1e-9] = 1.0
            z = (x - mu) / sd
            chosen: dict[str, np.ndarray] = {}
            if "summary" in cfg.arms or "random" in cfg.arms:
                picks = select_subset(
                    x[pool], cfg.budget, strata[pool], per_class=cfg.per_class, method="community",
                    k=cfg.k, community_method=cfg.community_method, centrality=cfg.centrality, seed=seed,
                )
                chosen["summary"] = pool[np.array(sorted(p.index for p in picks), dtype=np.int64)]
            if "kcenter" in cfg.arms:
                picks = select_subset(x[pool], cfg.budget, strata[pool], per_class=cfg.per_class, method="kcenter")
                chosen["kcenter"] = pool[np.array(sorted(p.index for p in picks), dtype=np.int64)]
            if "random" in cfg.arms:
                sel = chosen["summary"]
                counts = {c: int((strata[sel] == c).sum()) for c in np.unique(strata[sel])}
                rng = np.random.default_rng([seed, int(f), 7])
                chosen["random"] = pool[_random_like(strata[pool], counts, rng)]
            chosen["all"] = pool
            for a in cfg.arms:
                tr = chosen[a]
                sizes[a].append(len(tr))
                preds[a][test] = _train_predict(cfg, z[tr], y[tr], z[test], seed)
        for a in cfg.arms:
            m = _metrics(cfg.task, preds[a], y)
            res[a]["per_seed"].append({"seed": int(seed), **m})
            res[a]["train_sizes"].append(float(np.mean(sizes[a])))
    out = {}
    for a in cfg.arms:
        keys = [k for k in res[a]["per_seed"][0] if k != "seed"]
        vals = {k: np.array([r[k] for r in res[a]["per_seed"]], dtype=np.float64) for k in keys}
        out[a] = {
            "per_seed": res[a]["per_seed"],
            "mean": {k: float(np.nanmean(v)) for k, v in vals.items()},
            "std": {k: float(np.nanstd(v)) for k, v in vals.items()},
            "train_size_mean": float(np.mean(res[a]["train_sizes"])),
        }
    config = {
        "budget": cfg.budget, "per_class": cfg.per_class, "task": cfg.task, "model": cfg.model,
        "n_folds": cfg.n_folds, "seeds": list(cfg.seeds), "k": cfg.k, "community_method": cfg.community_method,
        "centrality": cfg.centrality, "n_items": n, "n_groups": int(len(np.unique(groups))), **cfg.extra,
    }
    return {"config": config, "arms": out}


def format_results(result: dict) -> str:
    """A Markdown table of mean +- std per arm."""
    arms = result["arms"]
    metrics = list(next(iter(arms.values()))["mean"])
    lines = ["| arm | train size | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for a, r in arms.items():
        cells = [f"{r['mean'][m]:.3f} ± {r['std'][m]:.3f}" for m in metrics]
        lines.append(f"| {a} | {r['train_size_mean']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
