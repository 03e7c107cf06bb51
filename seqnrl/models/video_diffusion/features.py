"""Per-clip features for diversity-aware generation (DiADM-style feature conditioning).

The diffusion model can be conditioned on one feature vector per clip (see
:class:`~seqnrl.models.video_diffusion.net.FeatureConditionEmbedding`). Features come from
the batch (key ``feature``, e.g. normative-encoder embeddings computed by the data
pipeline) or, as a self-contained fallback, from :class:`PixelPCAFeatures`: a linear,
label-free descriptor fitted on the training clips whose state is kept in buffers, so it
travels in the checkpoint and the same features can be computed again at sampling time
and for evaluation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn


class PixelPCAFeatures(nn.Module):
    """Downsampled-frame PCA features of a clip ``(B, C, T, H, W)`` in [0, 1] -> ``(B, dim)``.

    Every frame is area-averaged to ``pool x pool``; per channel and pooled pixel the mean
    and the standard deviation over time are taken (appearance and motion amplitude,
    independent of the clip length and of the phase at which a periodic clip starts), and
    the ``2 * C * pool^2`` raw values are projected on the top ``dim`` principal components
    of the training clips, whitened (unit variance per component on the training set).
    Call :meth:`fit` on training clips before use.
    """

    def __init__(self, channels: int, dim: int, pool: int = 8):
        super().__init__()
        self.channels, self.dim, self.pool = int(channels), int(dim), int(pool)
        p = self.raw_dim
        if not 0 < dim <= p:
            raise ValueError(f"feature dim must be in [1, {p}] for pool={pool}, got {dim}")
        self.register_buffer("mean", torch.zeros(p))
        self.register_buffer("components", torch.zeros(dim, p))
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def raw_dim(self) -> int:
        return 2 * self.channels * self.pool * self.pool

    def raw(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B, 2 * C * pool^2)`` (pooled temporal mean and std)."""
        b, t = video.shape[0], video.shape[2]
        x = F.adaptive_avg_pool2d(rearrange(video.float(), "b c t h w -> (b t) c h w"), self.pool)
        x = rearrange(x, "(b t) c h w -> b c t (h w)", b=b, t=t)
        mu = reduce(x, "b c t p -> b c p", "mean")
        sd = x.std(dim=2, unbiased=False)
        return torch.cat([mu.flatten(1), sd.flatten(1)], dim=1)

    @torch.no_grad()
    def fit(self, videos: torch.Tensor | list[torch.Tensor]) -> PixelPCAFeatures:
        """Fit mean, components and whitening on training clips (a tensor ``(N, C, T, H, W)``
        or a list of such batches). Needs at least 2 clips."""
        batches = [videos] if isinstance(videos, torch.Tensor) else list(videos)
        raw = torch.cat([self.raw(v.to(self.mean.device)) for v in batches]).double()
        if raw.shape[0] < 2:
            raise ValueError(f"need at least 2 clips to fit the PCA features, got {raw.shape[0]}")
        mu = raw.mean(0)
        _, s, vt = torch.linalg.svd(raw - mu, full_matrices=False)
        k = min(self.dim, vt.shape[0])
        comp = torch.zeros(self.dim, self.raw_dim, dtype=torch.float64)
        comp[:k] = vt[:k]
        std = torch.ones(self.dim, dtype=torch.float64)
        std[:k] = (s[:k] / max(raw.shape[0] - 1, 1) ** 0.5).clamp_min(1e-6)
        self.mean.copy_(mu.float())
        self.components.copy_(comp.float())
        self.scale.copy_(std.float())
        self.fitted.fill_(True)
        return self

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if not bool(self.fitted):
            raise RuntimeError("PixelPCAFeatures is not fitted: call fit() on training clips first")
        raw = self.raw(video.to(self.mean.device))
        return ((raw - self.mean) @ self.components.T) / self.scale
