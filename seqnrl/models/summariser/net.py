"""The DSN summarisation policy (Zhou, Qiao & Xiang, AAAI 2018) as a plain ``nn.Module``.

A bidirectional LSTM reads per-frame features and a linear layer + sigmoid gives every
frame the probability of being selected. Episodes are Bernoulli samples of those
probabilities; the policy is trained by REINFORCE (see :mod:`.rewards`).
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from torch import nn

from seqnrl.models.summariser.rewards import ReinforceSettings, episode_objective


class DSNPolicy(nn.Module):
    """``(B, T, D)`` features -> ``(B, T)`` selection probabilities.

    Args:
        in_dim: feature dimension ``D``.
        hidden: LSTM hidden size per direction (DSN: 256).
        num_layers: LSTM layers.
        dropout: dropout between LSTM layers (only with ``num_layers > 1``).
        in_norm: LayerNorm over the input features (features from different sources come
            on different scales; DSN's GoogLeNet features did not need it).
    """

    def __init__(self, in_dim: int, hidden: int = 128, num_layers: int = 1, dropout: float = 0.0, in_norm: bool = True):
        super().__init__()
        self.in_dim = in_dim
        self.norm = nn.LayerNorm(in_dim) if in_norm else nn.Identity()
        self.rnn = nn.LSTM(
            in_dim,
            hidden,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.head = nn.Linear(2 * hidden, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 2:
            features = features[None]
        if features.shape[-1] != self.in_dim:
            raise ValueError(f"policy expects {self.in_dim}-d features, got {features.shape[-1]}")
        h, _ = self.rnn(self.norm(features))
        return torch.sigmoid(rearrange(self.head(h), "b t 1 -> b t"))


def sample_episodes(probs: torch.Tensor, n_episodes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n_episodes`` Bernoulli action masks ``(N, T)`` (float 0/1) from probabilities ``(T,)``."""
    p = probs.detach().expand(n_episodes, -1)
    return torch.bernoulli(p, generator=generator)


class _Adam:
    """Adam (L2 weight decay, as ``torch.optim.Adam``) in a few tensor ops.

    ``torch.optim`` imports ``torch._dynamo`` on first use (seconds and ~100 MB on a small
    CPU machine), which would dominate a per-recording fit of a few dozen steps.
    """

    def __init__(self, params: list[torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        self.params, self.lr, self.betas, self.eps, self.wd = params, lr, betas, eps, weight_decay
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad.add(p, alpha=self.wd) if self.wd else p.grad
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.addcdiv_(m, (v / c2).sqrt_().add_(self.eps), value=-self.lr / c1)


def fit_policy(
    features: torch.Tensor,
    scores: torch.Tensor | None = None,
    relevance: torch.Tensor | None = None,
    *,
    steps: int = 60,
    seed: int = 0,
    max_len: int = 256,
    chunks: int = 4,
    hidden: int = 128,
    num_layers: int = 1,
    lr: float = 1e-2,
    weight_decay: float = 1e-5,
    policy: DSNPolicy | None = None,
    **hparams: Any,
) -> tuple[DSNPolicy, list[dict[str, float]]]:
    """Fit a policy to one video's features with DSN's REINFORCE objective (plain loop, no
    Lightning: used per recording, where the rewards need no labels).

    Sequences longer than ``max_len`` are trained on ``chunks`` random windows of
    ``max_len`` frames per step (one batched LSTM pass; rewards within each window, a
    moving-average baseline per window position), so a fit costs the same whatever the
    recording's length; the fitted policy then reads the whole sequence. ``hparams`` are
    reward/objective settings by their :class:`SummariserModule` names
    (``normative_weight``, ``target_rate``, ...). Returns the policy (eval mode) and the
    per-step history of mean rewards.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    feats = features.float()
    t = int(feats.shape[0])
    settings = ReinforceSettings.from_hparams(**hparams)
    if policy is None:
        policy = DSNPolicy(int(feats.shape[-1]), hidden, num_layers)
    opt = _Adam(list(policy.parameters()), lr=lr, weight_decay=weight_decay)
    baselines: dict[str, float] = {}

    def item(a: int, b: int) -> dict[str, Any]:
        it: dict[str, Any] = {"features": feats[a:b]}
        if scores is not None:
            it["scores"] = scores[a:b].float()
        if relevance is not None:
            it["relevance"] = relevance[a:b].float()
        return it

    history = []
    policy.train()
    for _ in range(steps):
        if t <= max_len:
            starts, length = [0], t
        else:
            starts = torch.randint(0, t - max_len + 1, (chunks,), generator=gen).tolist()
            length = max_len
        probs = policy(torch.stack([feats[s : s + length] for s in starts]))
        per = [
            episode_objective(probs[j], item(s, s + length), settings, baselines, f"w{(2 * s) // max(length, 1)}", gen)
            for j, s in enumerate(starts)
        ]
        loss = torch.stack([p["loss"] for p in per]).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 5.0)
        opt.step()
        history.append({k: float(torch.stack([p[k].detach() for p in per]).mean()) for k in per[0]})
    policy.eval()
    return policy, history
