"""Rewards of the summarisation policy and its REINFORCE objective.

Every reward takes the per-frame features ``(T, D)`` of one video and ``N`` episodes of
actions ``(N, T)`` (1 = frame selected) and returns ``(N,)``:

* :func:`diversity_reward` (DSN ``R_div``): mean pairwise dissimilarity ``1 - cos`` of the
  selected frames. As in DSN, pairs more than ``temporal_distance`` frames apart count as
  fully dissimilar (their similarity is ignored: two similar views far apart in time are
  both worth keeping). Fewer than two selected frames give 0.
* :func:`representativeness_reward` (DSN ``R_rep``): ``exp(-mean_t min_{s selected}
  ||x_t - x_s||^2)`` over every frame ``t``, on L2-normalised features (DSN used raw
  GoogLeNet features; normalising keeps the reward off its saturated end whatever the
  feature scale). No selected frame gives 0.
* :func:`signal_reward`: mean of a per-frame signal over the selected frames. With the
  calibrated anomaly score this is the **normative reward** (frames a normal model finds
  unusual are worth showing); with a detector/anatomy relevance signal it is the
  ultrasound variant of Liu et al. (MICCAI 2020).

:func:`reinforce_loss` combines them into DSN's episodic REINFORCE objective with a
moving-average baseline, a length regulariser and an entropy bonus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F


@dataclass
class RewardWeights:
    diversity: float = 1.0
    representativeness: float = 1.0
    normative: float = 0.0
    relevance: float = 0.0


def _check(features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    if features.ndim != 2:
        raise ValueError(f"features must be (T, D), got {tuple(features.shape)}")
    if actions.ndim == 1:
        actions = actions[None]
    if actions.shape[-1] != features.shape[0]:
        raise ValueError(f"actions cover {actions.shape[-1]} frames, features {features.shape[0]}")
    return actions.to(features.dtype)


def diversity_reward(features: torch.Tensor, actions: torch.Tensor, temporal_distance: int | None = 20) -> torch.Tensor:
    """Mean ``1 - cos`` over ordered pairs of distinct selected frames, ``(N,)``."""
    a = _check(features, actions)
    x = F.normalize(features.float(), dim=-1)
    dissim = 1.0 - x @ x.T  # (T, T)
    if temporal_distance is not None and temporal_distance >= 0:
        idx = torch.arange(len(x), device=x.device)
        far = (idx[:, None] - idx[None, :]).abs() > temporal_distance
        dissim = dissim.masked_fill(far, 1.0)
    dissim = dissim.fill_diagonal_(0.0)
    a = a.float()
    n = a.sum(-1)
    total = torch.einsum("ni,ij,nj->n", a, dissim, a)
    pairs = n * (n - 1)
    return torch.where(pairs > 0, total / pairs.clamp(min=1), torch.zeros_like(total))


def representativeness_reward(features: torch.Tensor, actions: torch.Tensor, max_elements: int = 4_000_000) -> torch.Tensor:
    """``exp(-mean over frames of the squared distance to the nearest selected frame)``, ``(N,)``."""
    a = _check(features, actions).bool()
    x = F.normalize(features.float(), dim=-1)
    n, t = a.shape
    out = torch.zeros(n, device=x.device)
    has = a.any(-1)
    if n * t * t <= max_elements:  # all episodes at once
        d = torch.cdist(x, x).pow(2)  # (T, T)
        d = d.unsqueeze(0).masked_fill(~a.unsqueeze(1), float("inf"))  # (N, T, T)
        mins = d.min(-1).values.mean(-1)
        return torch.where(has, torch.exp(-mins), out)
    chunk = max(1, max_elements // max(t, 1))
    for k, sel in enumerate(a):  # long sequences: bounded memory
        if not sel.any():
            continue
        picked = x[sel]
        mins = [torch.cdist(x[i : i + chunk], picked).pow(2).min(dim=1).values for i in range(0, t, chunk)]
        out[k] = torch.exp(-torch.cat(mins).mean())
    return out


def signal_reward(signal: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Mean of a per-frame signal ``(T,)`` over the selected frames (0 when none), ``(N,)``.
    NaN entries count as 0."""
    if actions.ndim == 1:
        actions = actions[None]
    s = torch.nan_to_num(signal.float(), nan=0.0)
    if s.shape[-1] != actions.shape[-1]:
        raise ValueError(f"signal covers {s.shape[-1]} frames, actions {actions.shape[-1]}")
    a = actions.float()
    n = a.sum(-1)
    return torch.where(n > 0, (a * s).sum(-1) / n.clamp(min=1), torch.zeros_like(n))


def summary_rewards(
    features: torch.Tensor,
    actions: torch.Tensor,
    weights: RewardWeights,
    scores: torch.Tensor | None = None,
    relevance: torch.Tensor | None = None,
    temporal_distance: int | None = 20,
) -> dict[str, torch.Tensor]:
    """Every reward term ``(N,)`` and their weighted sum under ``"total"``.

    Terms whose weight is 0 are not computed (and reported as 0); the normative and
    relevance terms need ``scores`` and ``relevance``.
    """
    a = _check(features, actions)
    zero = torch.zeros(a.shape[0], device=features.device)
    out = {"diversity": zero, "representativeness": zero, "normative": zero, "relevance": zero}
    if weights.diversity:
        out["diversity"] = diversity_reward(features, a, temporal_distance)
    if weights.representativeness:
        out["representativeness"] = representativeness_reward(features, a)
    if weights.normative:
        if scores is None:
            raise ValueError("normative reward weight > 0 needs per-frame scores")
        out["normative"] = signal_reward(scores, a)
    if weights.relevance:
        if relevance is None:
            raise ValueError("relevance reward weight > 0 needs a per-frame relevance signal")
        out["relevance"] = signal_reward(relevance, a)
    out["total"] = (
        weights.diversity * out["diversity"]
        + weights.representativeness * out["representativeness"]
        + weights.normative * out["normative"]
        + weights.relevance * out["relevance"]
    )
    return out


def reinforce_loss(
    probs: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    baseline: float,
    *,
    target_rate: float = 0.15,
    length_weight: float = 0.01,
    entropy_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """DSN's objective for one video.

    ``probs`` ``(T,)`` with grad, ``actions`` ``(N, T)``, ``rewards`` ``(N,)``. Returns
    ``loss = -mean_n[(R_n - baseline) * mean_t log pi(a_nt)] + length_weight *
    (mean_t p_t - target_rate)^2 - entropy_weight * mean_t H(p_t)`` and its parts.
    """
    p = probs.clamp(1e-6, 1 - 1e-6)
    logp = actions * torch.log(p) + (1 - actions) * torch.log1p(-p)  # (N, T)
    advantage = (rewards - baseline).detach()
    pg = -(advantage * logp.mean(-1)).mean()
    length = (p.mean() - target_rate) ** 2
    entropy = -(p * torch.log(p) + (1 - p) * torch.log1p(-p)).mean()
    loss = pg + length_weight * length - entropy_weight * entropy
    return {"loss": loss, "policy_gradient": pg.detach(), "length": length.detach(), "entropy": entropy.detach()}


@dataclass
class ReinforceSettings:
    """Everything DSN's per-video objective needs besides the policy.

    ``n_episodes`` Bernoulli episodes per video and step; ``target_rate``/``length_weight``:
    the length regulariser; ``entropy_weight``: entropy bonus; ``temporal_distance``: DSN's
    lambda; ``baseline_momentum``: moving-average reward baseline ``b <- m b + (1 - m) R``.
    """

    weights: RewardWeights = field(default_factory=RewardWeights)
    n_episodes: int = 5
    target_rate: float = 0.15
    length_weight: float = 1.0
    entropy_weight: float = 0.0
    temporal_distance: int | None = 20
    baseline_momentum: float = 0.9

    @classmethod
    def from_hparams(cls, **hp: Any) -> ReinforceSettings:
        """From :class:`~seqnrl.models.summariser.module.SummariserModule`-style names
        (``diversity_weight``, ``normative_weight``, ...); unknown names are ignored."""
        w = RewardWeights(
            hp.get("diversity_weight", 1.0),
            hp.get("representativeness_weight", 1.0),
            hp.get("normative_weight", 0.0),
            hp.get("relevance_weight", 0.0),
        )
        names = ("n_episodes", "target_rate", "length_weight", "entropy_weight", "temporal_distance", "baseline_momentum")
        return cls(weights=w, **{k: hp[k] for k in names if k in hp})


def episode_objective(
    probs: torch.Tensor,
    item: dict[str, Any],
    settings: ReinforceSettings,
    baselines: dict[str, float],
    key: str,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """REINFORCE terms for one video: sample episodes from ``probs`` ``(T,)``, score them
    against ``item`` (``features`` ``(T, D)``, optional ``scores``/``relevance`` ``(T,)``),
    and update the moving-average baseline ``baselines[key]`` (first visit: the mean reward).
    Returns the :func:`reinforce_loss` terms plus mean rewards and the selection rate."""
    feats = item["features"].to(probs.device)
    actions = torch.bernoulli(probs.detach().expand(settings.n_episodes, -1), generator=generator)
    with torch.no_grad():
        rew = summary_rewards(
            feats, actions, settings.weights, item.get("scores"), item.get("relevance"), settings.temporal_distance
        )
    mean_r = float(rew["total"].mean())
    base = baselines.get(key, mean_r)
    terms = reinforce_loss(
        probs, actions, rew["total"], base,
        target_rate=settings.target_rate, length_weight=settings.length_weight, entropy_weight=settings.entropy_weight,
    )
    baselines[key] = settings.baseline_momentum * base + (1 - settings.baseline_momentum) * mean_r
    terms["reward"] = rew["total"].mean()
    for k in ("diversity", "representativeness", "normative", "relevance"):
        terms[f"reward_{k}"] = rew[k].mean()
    terms["selection_rate"] = probs.detach().mean()
    return terms
