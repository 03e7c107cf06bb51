"""Unsupervised pose from shape templates (after Schmidtke et al., CVPR 2021), plain torch.

* :class:`TemplateParts`: the template (:mod:`seqnrl.models.pose.templates`) as tensors: one
  anisotropic Gaussian per part, joint positions and which parts each joint is attached to.
* :class:`PartRegressor`: a small CNN (with coordinate channels) predicting one affine
  transform per part from a frame, as ``global o local_k`` (a shared affine for the whole
  body composed with one per part; both start at the identity, so the untrained model
  returns the canonical template).
* :class:`Translator`: a small UNet reconstructing the target frame from a source frame of
  the same video plus the transformed template of the target (and of the source).
* :class:`ShapeTemplateNet`: the three together, with the keypoints read off the part
  transforms and the losses: structural reconstruction (SSIM / multi-scale SSIM, optionally
  mixed with L1), the anchor loss (connection points of neighbouring parts coincide), the
  boundary loss (parts stay in frame) and a scale prior (each part's stretch stays within
  bounds, so no part can collapse to an invisible blob, a degenerate fixed point in which
  the translator ignores the template and copies the source frame).

Frames are ``(N, C, H, W)`` in [0, 1]; affines ``(N, K, 2, 3)`` act on normalised
coordinates (see :mod:`seqnrl.models.pose.warp`); keypoints come out in the batch contract's
normalised image coordinates ``[0, 1]`` (``x`` right, ``y`` down).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from seqnrl.models.pose import warp
from seqnrl.models.pose.templates import ShapeTemplate

ReconLoss = Literal["ssim", "ms_ssim", "ms_ssim_l1", "ssim_l1", "l1", "mse"]

_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


# -- structural similarity -----------------------------------------------------------------
def _gauss_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, window: int, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean SSIM and contrast-structure term ``(N,)`` (data range 1, valid conv)."""
    c = x.shape[1]
    win = _gauss_window(window, sigma, c, x.device, x.dtype)

    def filt(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, win, groups=c)

    c1, c2 = 0.01**2, 0.03**2
    mx, my = filt(x), filt(y)
    sxx = filt(x * x) - mx * mx
    syy = filt(y * y) - my * my
    sxy = filt(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity ``(N,)`` of images ``(N, C, H, W)`` in [0, 1]."""
    window = min(window, x.shape[-1], x.shape[-2])
    return _ssim_terms(x, y, window, sigma)[0]


def ms_ssim(x: torch.Tensor, y: torch.Tensor, levels: int = 5, window: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Multi-scale SSIM ``(N,)`` (Wang et al. 2003) over as many of ``levels`` dyadic scales as
    the image size allows (the coarsest must still hold one ``window``); the standard scale
    weights are renormalised over the scales used. Negative contrast-structure terms are
    clamped to a small positive value so the product stays differentiable."""
    n = 1
    while n < levels and min(x.shape[-2:]) // 2**n >= window:
        n += 1
    w = torch.tensor(_MS_SSIM_WEIGHTS[:n], device=x.device, dtype=x.dtype)
    w = w / w.sum()
    out = torch.ones(x.shape[0], device=x.device, dtype=x.dtype)
    for i in range(n):
        s, cs = _ssim_terms(x, y, window, sigma)
        val = s if i == n - 1 else cs
        out = out * val.clamp_min(1e-4) ** w[i]
        if i < n - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return out


def reconstruction_loss(rec: torch.Tensor, target: torch.Tensor, kind: ReconLoss = "ms_ssim_l1", alpha: float = 0.84) -> torch.Tensor:
    """Scalar reconstruction loss. ``*_l1`` mixes ``alpha * (1 - (MS-)SSIM) + (1 - alpha) * L1``
    (Zhao et al., "Loss functions for image restoration with neural networks", 2017)."""
    if kind == "l1":
        return (rec - target).abs().mean()
    if kind == "mse":
        return F.mse_loss(rec, target)
    s = ssim(rec, target) if kind.startswith("ssim") else ms_ssim(rec, target)
    struct = (1 - s).mean()
    if kind.endswith("_l1"):
        return alpha * struct + (1 - alpha) * (rec - target).abs().mean()
    return struct


# -- template ------------------------------------------------------------------------------
class TemplateParts(nn.Module):
    """The template as buffers (normalised ``[-1, 1]`` coordinates).

    ``part_mean`` ``(K, 2)`` / ``part_cov`` ``(K, 2, 2)``: the Gaussian of each part (centred
    between its two axis joints, std ``part_sigma_along * length`` along the axis and
    ``width`` across); ``joint_pos`` ``(J, 2)``; ``incidence`` ``(J, K)``: weight of part
    ``k`` in joint ``j`` (``1 / number of attached parts``); ``connections`` ``(M, 3)``:
    ``(joint, part_a, part_b)`` rows of the anchor loss.
    """

    def __init__(self, template: ShapeTemplate):
        super().__init__()
        self.template = template
        jidx = {n: i for i, n in enumerate(template.joint_names)}
        pidx = {n: i for i, n in enumerate(template.part_names)}
        pos = torch.tensor([j.position for j in template.joints], dtype=torch.float32) * 2 - 1
        means, covs = [], []
        for p in template.parts:
            a, b = pos[jidx[p.joint_a]], pos[jidx[p.joint_b]]
            d = b - a
            length = float(d.norm().clamp_min(1e-6))
            ang = math.atan2(float(d[1]), float(d[0]))
            rot = torch.tensor([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
            s_along = template.part_sigma_along * length
            s_across = 2.0 * p.width  # widths are given in [0, 1] units
            means.append(0.5 * (a + b))
            covs.append(rot @ torch.diag(torch.tensor([s_along**2, s_across**2])) @ rot.T)
        inc = torch.zeros(template.n_joints, template.n_parts)
        for j, joint in enumerate(template.joints):
            for pn in joint.parts:
                inc[j, pidx[pn]] = 1.0 / len(joint.parts)
        conn = template.connections()
        self.register_buffer("part_mean", torch.stack(means))
        self.register_buffer("part_cov", torch.stack(covs))
        self.register_buffer("joint_pos", pos)
        self.register_buffer("incidence", inc)
        self.register_buffer(
            "connections", torch.tensor(conn, dtype=torch.long).reshape(-1, 3)
        )

    @property
    def n_parts(self) -> int:
        return int(self.part_mean.shape[0])

    @property
    def n_joints(self) -> int:
        return int(self.joint_pos.shape[0])

    def heatmaps(self, affines: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Transformed template ``(N, K, H, W)`` for affines ``(N, K, 2, 3)``."""
        mean, cov = warp.warp_gaussians(affines, self.part_mean, self.part_cov)
        return warp.render_gaussians(mean, cov, size)

    def joint_points(self, affines: torch.Tensor) -> torch.Tensor:
        """Every joint under every part's transform ``(N, K, J, 2)`` (normalised coords)."""
        return warp.apply_points(affines, self.joint_pos)

    def keypoints(self, affines: torch.Tensor) -> torch.Tensor:
        """Joints ``(N, J, 2)`` in ``[-1, 1]``: the mean of each joint's attached parts' transforms."""
        pts = self.joint_points(affines)
        return torch.einsum("jk,nkjd->njd", self.incidence, pts)

    def anchor_loss(self, affines: torch.Tensor) -> torch.Tensor:
        """Mean squared distance between a connection point under its two parts' transforms."""
        if self.connections.numel() == 0:
            return affines.sum() * 0.0
        pts = self.joint_points(affines)
        j, a, b = self.connections.unbind(-1)
        return ((pts[:, a, j] - pts[:, b, j]) ** 2).sum(-1).mean()

    @staticmethod
    def scale_loss(affines: torch.Tensor, lo: float = 0.5, hi: float = 2.0) -> torch.Tensor:
        """Squared log-excess of each part's singular values (its stretch along its two
        principal axes) outside ``[lo, hi]``: parts may rotate, move and deform within
        bounds, but cannot collapse to a vanishing (or explode to a frame-filling) blob."""
        sv = torch.linalg.svdvals(affines[..., :2]).clamp_min(1e-4).log()
        return (F.relu(math.log(lo) - sv) ** 2 + F.relu(sv - math.log(hi)) ** 2).sum(-1).mean()

    def boundary_loss(self, affines: torch.Tensor, margin: float = 0.05) -> torch.Tensor:
        """Squared excess of part centres and attached joints beyond ``1 - margin``."""
        mean, _ = warp.warp_gaussians(affines, self.part_mean, self.part_cov)
        pts = self.joint_points(affines)[:, self.incidence.T > 0]  # (N, n_attach, 2)
        allp = torch.cat([mean, pts], dim=1)
        return (F.relu(allp.abs() - (1 - margin)) ** 2).sum(-1).mean()


# -- networks ------------------------------------------------------------------------------
def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(min(8, cout), cout), nn.SiLU()
    )


def _coords(x: torch.Tensor) -> torch.Tensor:
    g = warp.pixel_grid(x.shape[-2], x.shape[-1], device=x.device, dtype=x.dtype)
    g = rearrange(g, "h w two -> two h w").expand(x.shape[0], 2, *x.shape[-2:])
    return torch.cat([x, g], dim=1)


class PartRegressor(nn.Module):
    """CNN ``(N, C, H, W)`` -> affines ``(N, K, 2, 3)`` = ``global o local_k``.

    The last layer is zero-initialised, so an untrained regressor returns identities (the
    canonical template) whatever the frame.
    """

    def __init__(
        self,
        in_channels: int,
        n_parts: int,
        width: int = 32,
        depth: int = 3,
        hidden: int = 128,
        global_affine: bool = True,
    ):
        super().__init__()
        layers = [_conv(in_channels + 2, width)]
        ch = width
        for i in range(depth):
            nxt = width * 2 ** min(i + 1, 2)
            layers += [_conv(ch, nxt, stride=2), _conv(nxt, nxt)]
            ch = nxt
        self.features = nn.Sequential(*layers)
        self.n_parts = n_parts
        self.global_affine = global_affine
        n_out = 6 * (n_parts + int(global_affine))
        self.head = nn.Sequential(
            nn.Linear(ch * 4 * 4, hidden), nn.SiLU(), nn.Linear(hidden, n_out)
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = F.adaptive_avg_pool2d(self.features(_coords(x * 2 - 1)), 4)
        d = rearrange(self.head(f.flatten(1)), "n (k r c) -> n k r c", r=2, c=3)
        eye = warp.identity(device=x.device, dtype=x.dtype)
        if self.global_affine:
            g, local = eye + d[:, :1], eye + d[:, 1:]
            return warp.compose(g, local)
        return eye + d


class Translator(nn.Module):
    """UNet: ``(source frame, template heatmaps)`` -> reconstructed target frame in [0, 1]."""

    def __init__(self, in_channels: int, cond_channels: int, width: int = 32, depth: int = 3):
        super().__init__()
        chs = [width * 2 ** min(i, 2) for i in range(depth + 1)]
        self.stem = nn.Sequential(_conv(in_channels + cond_channels, chs[0]), _conv(chs[0], chs[0]))
        self.down = nn.ModuleList(
            nn.Sequential(_conv(chs[i], chs[i + 1], stride=2), _conv(chs[i + 1], chs[i + 1]))
            for i in range(depth)
        )
        self.up = nn.ModuleList(
            nn.Sequential(_conv(chs[i + 1] + chs[i], chs[i]), _conv(chs[i], chs[i]))
            for i in reversed(range(depth))
        )
        self.out = nn.Conv2d(chs[0], in_channels, 1)
        self.depth = depth

    def forward(self, source: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = self.stem(torch.cat([source * 2 - 1, cond], dim=1))
        skips = [x]
        for d in self.down:
            x = d(x)
            skips.append(x)
        skips.pop()
        for u in self.up:
            s = skips.pop()
            x = F.interpolate(x, size=s.shape[-2:], mode="bilinear", align_corners=False)
            x = u(torch.cat([x, s], dim=1))
        return torch.sigmoid(self.out(x))


class ShapeTemplateNet(nn.Module):
    """Regressor + template + translator.

    Args:
        template: the part layout.
        in_channels: frame channels.
        regressor_width, regressor_depth, regressor_hidden: the part regressor CNN.
        global_affine: compose a shared body affine with the per-part ones.
        translator_width, translator_depth: the UNet.
        source_heatmaps: also give the translator the source frame's transformed template
            (it then only has to learn how parts move between the two).
    """

    def __init__(
        self,
        template: ShapeTemplate,
        in_channels: int = 1,
        regressor_width: int = 32,
        regressor_depth: int = 3,
        regressor_hidden: int = 128,
        global_affine: bool = True,
        translator_width: int = 32,
        translator_depth: int = 3,
        source_heatmaps: bool = True,
    ):
        super().__init__()
        self.parts = TemplateParts(template)
        k = self.parts.n_parts
        self.regressor = PartRegressor(
            in_channels, k, regressor_width, regressor_depth, regressor_hidden, global_affine
        )
        self.source_heatmaps = source_heatmaps
        self.translator = Translator(
            in_channels, k * (2 if source_heatmaps else 1), translator_width, translator_depth
        )

    def affines(self, frames: torch.Tensor) -> torch.Tensor:
        return self.regressor(frames)

    def forward(self, target: torch.Tensor, source: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reconstruct ``target`` ``(N, C, H, W)`` from ``source`` and the target's pose."""
        size = tuple(target.shape[-2:])
        n = target.shape[0]
        aff = self.affines(torch.cat([target, source], dim=0))
        aff_t, aff_s = aff[:n], aff[n:]
        heat_t = self.parts.heatmaps(aff_t, size)
        cond = heat_t
        if self.source_heatmaps:
            cond = torch.cat([heat_t, self.parts.heatmaps(aff_s, size)], dim=1)
        rec = self.translator(source, cond)
        return {"affine": aff_t, "affine_source": aff_s, "heatmaps": heat_t, "recon": rec}

    def keypoints(self, frames: torch.Tensor) -> torch.Tensor:
        """Discovered joints ``(N, J, 2)`` in ``[0, 1]`` image coordinates."""
        return warp.to_unit(self.parts.keypoints(self.affines(frames)))
