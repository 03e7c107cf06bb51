"""Re-identification privacy filter for generated clips (EchoNet-Synthetic, MICCAI 2024;
"Uncovering hidden subspaces in video diffusion models using re-identification").

A Siamese network decides whether two clips come from the same *recording* (patient
video). Trained on real training recordings only:

* positives: two different clips of one recording (different time windows), each lightly
  augmented (feature noise and dropout); a recording with a single clip pairs it with an
  augmented copy of itself;
* negatives: clips of two different recordings;
* loss: binary cross-entropy on the pair logit.

A generated clip's score against a recording is the highest pair logit over that
recording's clips, and against the training set the highest over all recordings. The
threshold is set on **held-out real clips** (recordings the generator never saw): the
``1 - target_fpr`` quantile of their best score against the training recordings, so that a
genuinely new clip is flagged with probability ~``target_fpr``. A generated clip above it
re-identifies its best-matching training recording and is filtered out; the audit reports
the fraction of training recordings re-identified by at least one generated clip.

Works on any clip embedding ``(N, D)`` (normative-encoder clip embeddings, a VAE latent
flattened, the fallback features of :mod:`seqnrl.dataset_summary.embed`). This module
holds a small torch MLP but imports no seqnrl model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ReIDAudit", "ReIDFilter", "SiameseNet", "fit_reid", "pair_batch"]


class SiameseNet(nn.Module):
    """Shared MLP projector ``f`` and a symmetric pair head on ``[|f(a) - f(b)|, f(a) * f(b)]``.

    Inputs are standardised with buffers fitted on the training clips, so the module is
    self-contained (``state_dict`` carries the normalisation).
    """

    def __init__(self, in_dim: int, hidden: int = 128, out_dim: int = 64, dropout: float = 0.1):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.proj = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
        )
        self.head = nn.Sequential(nn.Linear(2 * out_dim, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj((x - self.mean) / self.std), dim=-1)

    def pair_logits(self, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        """Logits of "same recording" for embedded pairs ``(P, E)``, ``(P, E)`` -> ``(P,)``."""
        return self.head(torch.cat([(za - zb).abs(), za * zb], dim=-1))[:, 0]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.pair_logits(self.embed(a), self.embed(b))

    @torch.no_grad()
    def score_matrix(self, queries: torch.Tensor, gallery: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Pair logits ``(Q, G)`` of every query clip against every gallery clip (logits, not
        probabilities: a float32 sigmoid saturates at 1 and would tie close matches)."""
        zq, zg = self.embed(queries), self.embed(gallery)
        out = torch.empty(len(zq), len(zg))
        rows = max(1, chunk // max(len(zg), 1))
        for a in range(0, len(zq), rows):
            q = zq[a : a + rows]
            qa = q[:, None, :].expand(-1, len(zg), -1).reshape(-1, q.shape[1])
            ga = zg[None].expand(len(q), -1, -1).reshape(-1, zg.shape[1])
            out[a : a + rows] = self.pair_logits(qa, ga).view(len(q), len(zg))
        return out


def pair_batch(
    rec: np.ndarray, n_pairs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices ``(a, b)`` and labels of ``n_pairs`` pairs, half positive (same recording,
    a different clip when the recording has one) and half negative (different recordings)."""
    rec = np.asarray(rec)
    by_rec: dict = {}
    for i, r in enumerate(rec):
        by_rec.setdefault(r, []).append(i)
    n_pos = n_pairs // 2
    a = rng.integers(0, len(rec), n_pairs)
    b = np.empty(n_pairs, dtype=np.int64)
    for j in range(n_pairs):
        members = by_rec[rec[a[j]]]
        if j < n_pos:
            others = [m for m in members if m != a[j]]
            b[j] = others[rng.integers(len(others))] if others else a[j]
        else:
            while True:
                c = int(rng.integers(0, len(rec)))
                if rec[c] != rec[a[j]]:
                    b[j] = c
                    break
    y = np.r_[np.ones(n_pos), np.zeros(n_pairs - n_pos)].astype(np.float32)
    return a, b, y


@dataclass
class ReIDAudit:
    """Result of :meth:`ReIDFilter.audit`."""

    scores: np.ndarray  # (G,) best pair logit against any training recording
    best_recording: list  # (G,) id of that recording
    flags: np.ndarray  # (G,) bool: re-identifies a training recording
    threshold: float
    reidentified: list  # training recordings matched by at least one flagged clip
    n_training_recordings: int

    @property
    def fraction_reidentified(self) -> float:
        return len(self.reidentified) / max(self.n_training_recordings, 1)

    @property
    def kept(self) -> np.ndarray:
        """Indices of the generated clips that pass the filter."""
        return np.flatnonzero(~self.flags)

    def to_dict(self) -> dict:
        return {
            "threshold_logit": float(self.threshold),
            "threshold_probability": float(1.0 / (1.0 + np.exp(-self.threshold))),
            "n_generated": int(len(self.scores)),
            "n_flagged": int(self.flags.sum()),
            "flagged_fraction": float(self.flags.mean()) if len(self.flags) else float("nan"),
            "n_training_recordings": int(self.n_training_recordings),
            "n_reidentified": len(self.reidentified),
            "fraction_training_reidentified": float(self.fraction_reidentified),
            "reidentified": [str(r) for r in self.reidentified],
        }


@dataclass
class ReIDFilter:
    """A trained Siamese network, its gallery of training clips and its threshold."""

    net: SiameseNet
    gallery: torch.Tensor  # (N, D) training clips
    gallery_recordings: np.ndarray  # (N,) recording id of each clip
    threshold: float = float("nan")
    calibration: dict = field(default_factory=dict)
    history: list = field(default_factory=list)

    @property
    def recordings(self) -> np.ndarray:
        return np.unique(self.gallery_recordings)

    def recording_scores(self, clips, exclude: Sequence | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per query clip: the best recording score and the index (into :attr:`recordings`)
        of that recording. ``exclude[i]`` (a recording id) is left out for query ``i``."""
        q = torch.as_tensor(np.asarray(clips), dtype=torch.float32)
        self.net.eval()
        sm = self.net.score_matrix(q, self.gallery).numpy()  # (Q, N)
        recs = self.recordings
        col = np.searchsorted(recs, self.gallery_recordings)
        per_rec = np.full((len(q), len(recs)), -np.inf)
        for j in range(len(recs)):  # max over each recording's clips
            per_rec[:, j] = sm[:, col == j].max(1)
        if exclude is not None:
            for i, r in enumerate(exclude):
                j = np.searchsorted(recs, r)
                if j < len(recs) and recs[j] == r:
                    per_rec[i, j] = -np.inf
        best = per_rec.argmax(1)
        return per_rec[np.arange(len(q)), best], best

    def calibrate(self, clips, recordings=None, target_fpr: float = 0.05, exclude_own: bool = False,
                  groups=None) -> dict:
        """Threshold from real clips that must *not* be re-identified: the ``1 - target_fpr``
        quantile of their best score against the gallery. With ``exclude_own`` each clip's
        own recording (``recordings[i]``) is left out of its gallery (held-out part of the
        training set). ``groups`` (e.g. the video of each clip) calibrates the decision
        "any clip of the group is flagged": the quantile is taken over the groups' maxima."""
        ex = list(recordings) if exclude_own and recordings is not None else None
        s, _ = self.recording_scores(clips, exclude=ex)
        if groups is not None:
            g = np.asarray(groups)
            s = np.array([s[g == u].max() for u in np.unique(g)])
        self.threshold = float(np.quantile(s, 1.0 - target_fpr, method="higher"))
        self.calibration = {
            "target_fpr": float(target_fpr),
            "unit": "group (max over its clips)" if groups is not None else "clip",
            "n_calibration": int(len(s)),
            "threshold_logit": self.threshold,
            "calibration_score_median": float(np.median(s)),
        }
        return self.calibration

    def pair_accuracy(self, clips, recordings, n_pairs: int = 2000, seed: int = 0) -> dict:
        """AUROC of the pair head on balanced same/different pairs of real clips."""
        from scipy.stats import rankdata

        rec = np.asarray(recordings)
        rng = np.random.default_rng(seed)
        a, b, y = pair_batch(rec, n_pairs, rng)
        x = torch.as_tensor(np.asarray(clips), dtype=torch.float32)
        self.net.eval()
        with torch.no_grad():
            p = torch.sigmoid(self.net(x[a], x[b])).numpy()
        # pairs of a single-clip recording with itself are trivial: drop them
        keep = a != b
        p, y = p[keep], y[keep]
        r = rankdata(p)
        n1, n0 = int(y.sum()), int((1 - y).sum())
        auc = float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)) if n1 and n0 else float("nan")
        return {"pair_auroc": auc, "n_pairs": int(keep.sum())}

    def audit(self, generated) -> ReIDAudit:
        if not np.isfinite(self.threshold):
            raise ValueError("the filter has no threshold: call calibrate() first")
        s, best = self.recording_scores(generated)
        recs = self.recordings
        flags = s > self.threshold
        matched = sorted({recs[j] for j in best[flags]})
        return ReIDAudit(
            scores=s,
            best_recording=[recs[j] for j in best],
            flags=flags,
            threshold=self.threshold,
            reidentified=matched,
            n_training_recordings=len(recs),
        )


def fit_reid(
    clips,
    recordings,
    *,
    hidden: int = 128,
    out_dim: int = 64,
    steps: int = 400,
    batch_pairs: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    aug_noise: float = 0.1,
    aug_drop: float = 0.1,
    seed: int = 0,
) -> ReIDFilter:
    """Train the Siamese network on clips ``(N, D)`` of training recordings
    (``recordings`` ``(N,)``: the recording id of each clip). Augmentation noise is in units
    of each feature's standard deviation (inputs are standardised first).

    Returns an uncalibrated :class:`ReIDFilter` (the training clips are its gallery); call
    :meth:`ReIDFilter.calibrate` with held-out real clips.
    """
    x = torch.as_tensor(np.asarray(clips), dtype=torch.float32)
    rec = np.asarray(recordings)
    if x.ndim != 2 or len(x) != len(rec):
        raise ValueError(f"clips must be (N, D) with one recording id each; got {tuple(x.shape)} and {len(rec)}")
    if len(np.unique(rec)) < 2:
        raise ValueError("need clips of at least two recordings to learn re-identification")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = SiameseNet(x.shape[1], hidden, out_dim)
    net.mean.copy_(x.mean(0))
    net.std.copy_(x.std(0).clamp_min(1e-6) if len(x) > 1 else torch.ones(x.shape[1]))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sd = net.std
    history = []
    net.train()
    for step in range(steps):
        a, b, y = pair_batch(rec, batch_pairs, rng)
        xa = x[a] + aug_noise * sd * torch.randn((len(a), x.shape[1]), generator=gen)
        xb = x[b] + aug_noise * sd * torch.randn((len(b), x.shape[1]), generator=gen)
        if aug_drop > 0:  # drop standardised features to the mean
            xa = torch.where(torch.rand(xa.shape, generator=gen) < aug_drop, net.mean, xa)
            xb = torch.where(torch.rand(xb.shape, generator=gen) < aug_drop, net.mean, xb)
        loss = F.binary_cross_entropy_with_logits(net(xa, xb), torch.as_tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            history.append((step, float(loss.detach())))
    net.eval()
    return ReIDFilter(net=net, gallery=x, gallery_recordings=rec, history=history)
