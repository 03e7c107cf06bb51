"""Normative-learning evaluation at test time (RQI, AHI, CACI) and the restoration adapters.

:func:`restoration_fn` turns a model that can reconstruct into a restoration
``video (B, C, T, H, W) -> pseudo-healthy video`` (the same shape, in [0, 1], on the CPU):

* a model with ``reconstruct(video, noise_level=..., steps=...)`` (the video diffusion model:
  noise the clip to ``noise_level`` of the schedule and denoise with DDIM);
* a spatiotemporal transformer with the ``masked`` objective: every pixel is the average of
  its reconstructions through the fixed complementary tube masks that hide it (each patch is
  hidden by all but one of them), so the restoration never sees the pixel it predicts;
* a spatiotemporal transformer with the ``future`` objective: next-tubelet prediction, the
  first tubelet (no past) copied from the input.

Clips longer than the model's training clip are restored in overlapping windows (outputs
averaged per frame); a transformer's frames are resized to the size its position tables are
made for and back. :func:`feature_fn` gives the model's per-frame ``embed_frames`` the same way
(the normative encoder's features for RQI's perceptual term and for AHI).

:class:`NormativeEvalCallback` computes the metrics of :mod:`seqnrl.metrics.normative` at the
end of ``trainer.test`` for modules that can restore and logs ``test/normative/<metric>``
scalars through ``pl_module.log`` (every logger), plus per-clip tables and example images
(input / restoration / |difference| / mask) on loggers that take them (``log_table`` /
``log_image``: W&B). See ``docs/normative_metrics.md``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from einops import repeat

from seqnrl import batch as B
from seqnrl.io.atomic import write_json
from seqnrl.metrics import normative as N
from seqnrl.metrics.anomaly import frame_metrics

log = logging.getLogger(__name__)

Restore = Callable[[torch.Tensor], torch.Tensor]

__all__ = [
    "NormativeEvalCallback",
    "blur",
    "clip_length",
    "evaluate_restorations",
    "feature_fn",
    "oracle_restorations",
    "restoration_fn",
]


# ----------------------------------------------------------------------------- adapters
def clip_length(model) -> int | None:
    """The longest clip a model takes: the smaller of its input spec's and its own ``clip_len``."""
    spec = getattr(model, "input_spec", None)
    hp = getattr(model, "hparams", None) or {}
    n = [int(v) for v in (spec.clip_len if spec is not None else None, hp.get("clip_len")) if v]
    return min(n) if n else None


def _windows(t: int, length: int) -> list[int]:
    """Start frames of windows of ``length`` covering ``t`` frames, half overlapping."""
    if t <= length:
        return [0]
    starts = list(range(0, t - length + 1, max(1, length // 2)))
    if starts[-1] != t - length:
        starts.append(t - length)
    return starts


def over_windows(
    fn: Callable[[torch.Tensor], torch.Tensor],
    video: torch.Tensor,
    length: int | None,
    time_dim: int,
) -> torch.Tensor:
    """``fn`` applied to overlapping windows of ``length`` frames of ``video`` ``(B, C, T, H, W)``
    and the outputs (time on ``time_dim``) averaged per frame; one call when the clip fits."""
    t = video.shape[2]
    if not length or t <= length:
        return fn(video)
    total, count = None, torch.zeros(t)
    for s in _windows(t, length):
        y = fn(video[:, :, s : s + length])
        if total is None:
            shape = list(y.shape)
            shape[time_dim] = t
            total = y.new_zeros(shape)
        total.narrow(time_dim, s, length).add_(y)
        count[s : s + length] += 1
    shape = [1] * total.ndim
    shape[time_dim] = t
    return total / count.to(total).view(shape)


def _resize(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Frames of ``(B, C, T, H, W)`` resized to ``size`` (bilinear, antialiased)."""
    b, c, t, h, w = video.shape
    if (h, w) == tuple(size):
        return video
    y = F.interpolate(
        video.transpose(1, 2).reshape(b * t, c, h, w),
        size=size,
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    return y.reshape(b, t, c, *size).transpose(1, 2)


def _st_size(net) -> tuple[int, int]:
    g, p = net.backbone.grid, net.backbone.patch_size
    return int(g[0] * p), int(g[1] * p)


def _device(model) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def restoration_fn(model, noise_level: float = 0.4, steps: int | None = None) -> Restore | None:
    """A restoration ``video (B, C, T, H, W) -> (B, C, T, H, W)`` (CPU, float32, [0, 1]) of a
    model, or ``None`` when the model cannot reconstruct its input (see the module docstring).
    ``noise_level`` and ``steps`` are the diffusion model's (fraction of the schedule; DDIM grid
    over the whole schedule, default the model's ``recon_steps``)."""
    length = clip_length(model)
    if callable(getattr(model, "reconstruct", None)):

        @torch.no_grad()
        def diffusion(v: torch.Tensor) -> torch.Tensor:
            rec = lambda w: model.reconstruct(w, noise_level=noise_level, steps=steps).float().cpu()  # noqa: E731
            return over_windows(rec, v.float(), length, time_dim=2)

        return diffusion
    net = getattr(model, "net", None)
    if net is None or not all(
        hasattr(net, a) for a in ("eval_mask_set", "forward_masked", "pixel_mask", "forward_future")
    ):
        return None

    @torch.no_grad()
    def one(v: torch.Tensor) -> torch.Tensor:
        b, t = v.shape[0], v.shape[2]
        if getattr(net, "objective", "masked") == "future":
            pred, _ = net.forward_future(v)
            k = net.tubelet_size
            return torch.cat((v[:, :, :k], pred[:, :, k:]), dim=2)
        num, den = torch.zeros_like(v), torch.zeros_like(v[:, :1])
        for m in net.eval_mask_set:  # every pixel from the masks that hide it
            mask = repeat(m.to(v.device), "n -> b n", b=b)
            rec, _ = net.forward_masked(v, mask)
            pm = net.pixel_mask(mask, t).to(v)
            num, den = num + rec * pm, den + pm
        return num / den.clamp(min=1)

    @torch.no_grad()
    def transformer(v: torch.Tensor) -> torch.Tensor:
        size = tuple(v.shape[-2:])
        x = _resize(v.float(), _st_size(net)).to(_device(model))
        y = over_windows(one, x, length, time_dim=2).float().cpu()
        return _resize(y, size).clamp(0, 1)

    return transformer


def feature_fn(model) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The model's per-frame features ``video (B, C, T, H, W) -> (B, T, D)`` (``embed_frames``,
    windowed and resized like :func:`restoration_fn`; CPU float32), or ``None``."""
    embed = getattr(model, "embed_frames", None)
    if not callable(embed):
        return None
    length = clip_length(model)
    net = getattr(model, "net", None)
    size = (
        _st_size(net)
        if net is not None and hasattr(net, "backbone") and hasattr(net.backbone, "grid")
        else None
    )

    @torch.no_grad()
    def f(v: torch.Tensor) -> torch.Tensor:
        x = v.float() if size is None else _resize(v.float(), size)
        x = x.to(_device(model))
        return over_windows(lambda w: embed(w).float().cpu(), x, length, time_dim=1)

    return f


# ----------------------------------------------------------------------------- evaluation
def blur(sigma: float) -> Restore:
    """Separable Gaussian blur of every frame of ``(B, C, T, H, W)`` (sigma in pixels): the
    no-learning restoration the normative metrics compare against."""

    def f(v: torch.Tensor) -> torch.Tensor:
        k = max(1, int(np.ceil(3 * sigma)))
        ax = torch.arange(-k, k + 1, dtype=torch.float32)
        w = torch.exp(-(ax**2) / (2 * sigma**2))
        w = w / w.sum()
        b, c, t, h, wd = v.shape
        y = v.reshape(b * c * t, 1, h, wd)
        y = torch.nn.functional.conv2d(
            torch.nn.functional.pad(y, (k, k, 0, 0), mode="replicate"), w.view(1, 1, 1, -1)
        )
        y = torch.nn.functional.conv2d(
            torch.nn.functional.pad(y, (0, 0, k, k), mode="replicate"), w.view(1, 1, -1, 1)
        )
        return y.reshape(b, c, t, h, wd)

    return f


def oracle_restorations(d: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The upper bound: normal clips untouched, anomalous pixels replaced by the truth."""
    m = d["masks"]
    return d["normal"].clone(), d["anomalous"] * (1 - m) + d["healthy"] * m


def evaluate_restorations(
    name: str,
    restored: tuple[torch.Tensor, torch.Tensor],
    d: dict,
    features,
    score_blur: float = 1.0,
) -> tuple[dict, dict]:
    """One table row (and the per-clip tables) from the restorations of the normal and of the
    anomalous clips of data set ``d``. Frame anomaly score: mean ``|input - restoration|`` of
    both blurred with sigma ``score_blur`` (speckle is not an anomaly; 0 = raw pixels)."""
    rest_n, rest_a = restored
    sm = blur(score_blur) if score_blur > 0 else (lambda v: v)
    r = N.rqi(d["normal"], rest_n, features=features, ids=d["normal_ids"])
    kw = {"ids": d["ids"], "healthy": d["normal"]}
    h = N.ahi(rest_a, d["anomalous"], d["train"], features=features or N.pixel_features, **kw)
    hp = (
        h
        if features is None
        else N.ahi(rest_a, d["anomalous"], d["train"], features=N.pixel_features, **kw)
    )
    c = N.caci(
        d["anomalous"], rest_a, d["masks"], reference=d["healthy"], region=d["region"], ids=d["ids"]
    )
    s_n = N.frame_difference_scores(sm(d["normal"]), sm(rest_n), d["region"]).numpy()
    s_a = N.frame_difference_scores(sm(d["anomalous"]), sm(rest_a), d["region"]).numpy()
    labels = [np.zeros(len(s), int) for s in s_n] + list(d["frame_labels"])
    fm = frame_metrics([*s_n, *s_a], labels)
    row = {
        "data": d["name"], "model": name, "rqi": r["rqi"], "ssim": r["ssim"], "mae": r["mae"],
        "perceptual": r["perceptual"], "fd_restored": h["frame_d_restored"],
        "fd_unrestored": h["frame_d_unrestored"], "fd_healthy": h["frame_d_healthy"], "ahi_ratio": h["frame_ratio"],
        "ahi": h["ahi"], "ahi_gap": h["ahi_gap"], "ahi_clip": h["clip_ahi"], "ahi_pixel": hp["ahi"],
        "ahi_gap_pixel": hp["ahi_gap"], "conservation": c["conservation"],
        "correction": c["correction"], "caci": c["caci"], "fidelity": c["fidelity"],
        "caci_fidelity": c["caci_fidelity"], "frame_auroc_micro": fm["frame_auroc_micro"],
        "frame_auroc_macro": fm["frame_auroc_macro"], "frame_ap": fm["frame_ap"],
    }  # fmt: skip
    return row, {
        "rqi": r["table"],
        "ahi": h["table"],
        "caci": c["table"],
        "restored_anomalous": rest_a,
    }


def run_batched(fn: Restore, clips: torch.Tensor, batch: int = 4) -> torch.Tensor:
    """``fn`` over ``clips`` ``(n, C, T, H, W)`` in batches of ``batch``."""
    with torch.no_grad():
        return torch.cat(
            [fn(clips[i : i + batch]).float().cpu() for i in range(0, len(clips), batch)]
        )


def example_image(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> np.ndarray:
    """One ``(H, 4W)`` uint8 strip of a clip's most anomalous frame (the largest mask, else the
    largest change): input | restoration | |difference| (stretched) | mask. ``x``, ``y``
    ``(C, T, H, W)``, ``mask`` ``(1, T, H, W)``."""
    diff = (x - y).abs().mean(0)
    t = int((mask if mask is not None else diff[None]).flatten(2).sum(-1)[0].argmax())
    d = diff[t] / max(float(diff[t].max()), 1e-3)
    m = mask[0, t] if mask is not None else torch.zeros_like(d)
    strip = torch.cat([x.mean(0)[t], y.mean(0)[t], d, m.float()], dim=-1)
    return (strip.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


# ----------------------------------------------------------------------------- callback
class NormativeEvalCallback(pl.Callback):
    """RQI, AHI and CACI of a restoring model at the end of ``trainer.test``.

    During the test loop one window per video is kept (normal videos: the first window;
    abnormal videos: the window with the most abnormal frames) for up to ``max_clips`` videos
    of each kind. At the end of the test epoch:

    * **RQI** on the normal windows;
    * **CACI** on the normal windows with an artefact injected into each
      (:func:`seqnrl.metrics.normative.inject_artefact`, kinds ``artefacts`` in turn, seed =
      clip index): masks and the true healthy content are then known for any data set;
    * **AHI** of the abnormal windows (those injected windows when the test set has no
      abnormal video) against ``n_reference`` normal clips of the data module's training set
      (the normal test windows when it has none), in the model's ``embed_frames`` feature space
      when it has one, else :func:`seqnrl.metrics.normative.pixel_features`; the normal test
      windows give the floor ``fd_healthy`` of ``ahi_gap``.

    Logged with ``pl_module.log`` (every logger, and in ``trainer.test``'s returned metrics):
    ``test/normative/{rqi,ssim,mae,perceptual,ahi,ahi_ratio,ahi_clip,ahi_gap,fd_restored,
    fd_unrestored,fd_healthy,conservation,correction,caci,fidelity,caci_fidelity}`` (NaN values,
    e.g. ``ahi_gap`` when the features do not separate the abnormal windows, are not logged). Loggers with ``log_table`` /
    ``log_image`` (W&B) also get the per-clip tables ``test/normative/{rqi,ahi,caci}_table``
    and ``n_images`` example strips ``test/normative/examples``. With ``output_dir``,
    ``normative_eval.json`` (numbers and tables) is written there. The last result is kept
    in :attr:`results`. Modules that cannot restore are skipped with a log message.

    Only rank 0's windows are used under DDP (the metrics are on a sample anyway).

    Args:
        max_clips: windows kept per kind (normal / abnormal).
        noise_level, recon_steps: diffusion restoration settings (see :func:`restoration_fn`).
        n_reference: normal training clips forming the reference distribution of AHI.
        artefacts: kinds injected for CACI.
        batch_size: clips restored at once.
        n_images: example strips logged to image-capable loggers.
        output_dir: where to write ``normative_eval.json`` (None: nowhere).
    """

    def __init__(
        self,
        max_clips: int = 8,
        noise_level: float = 0.4,
        recon_steps: int | None = None,
        n_reference: int = 8,
        artefacts: Sequence[str] = N.ARTEFACTS,
        batch_size: int = 4,
        n_images: int = 2,
        output_dir: str | None = None,
    ):
        super().__init__()
        if max_clips < 2:
            raise ValueError(f"max_clips must be at least 2, got {max_clips}")
        bad = [a for a in artefacts if a not in N.ARTEFACTS]
        if bad or not artefacts:
            raise ValueError(
                f"artefacts must be a non-empty subset of {N.ARTEFACTS}, got {list(artefacts)}"
            )
        self.max_clips, self.noise_level, self.recon_steps = max_clips, noise_level, recon_steps
        self.n_reference, self.artefacts, self.batch_size = (
            n_reference,
            tuple(artefacts),
            batch_size,
        )
        self.n_images = n_images
        self.output_dir = Path(output_dir) if output_dir else None
        self.results: dict[str, Any] | None = None
        self._normal: dict[str, torch.Tensor] = {}
        self._abnormal: dict[str, tuple[int, torch.Tensor, torch.Tensor | None]] = {}

    # -- collection -----------------------------------------------------------------------
    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._normal, self._abnormal, self.results = {}, {}, None

    def on_test_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        video = batch[B.VIDEO]
        fl, lab = batch[B.FRAME_LABEL], batch[B.LABEL]
        masks = batch.get(B.PIXEL_MASK)
        for i, vid in enumerate(batch[B.VIDEO_ID]):
            n_abn = int((fl[i] == 1).sum())
            if int(lab[i]) == 1 or n_abn > 0:
                if vid not in self._abnormal and len(self._abnormal) >= self.max_clips:
                    continue
                if vid not in self._abnormal or n_abn > self._abnormal[vid][0]:
                    m = masks[i].detach().float().cpu().clone() if masks is not None else None
                    self._abnormal[vid] = (n_abn, video[i].detach().float().cpu().clone(), m)
            elif int(lab[i]) == 0 and bool((fl[i] <= 0).all()):
                if vid not in self._normal and len(self._normal) < self.max_clips:
                    self._normal[vid] = video[i].detach().float().cpu().clone()

    def _reference(self, trainer, normal: torch.Tensor) -> torch.Tensor:
        """Normal training clips of the data module (first ``n_reference``), else ``normal``."""
        dm = getattr(trainer, "datamodule", None)
        try:
            ds = dm.dataset("train")
            n = min(self.n_reference, len(ds))
            clips = [ds[i][B.VIDEO].float() for i in range(n)]
            if len(clips) >= 2 and all(c.shape == normal.shape[1:] for c in clips):
                return torch.stack(clips)
        except Exception as e:  # noqa: BLE001 - any data module without a usable training set
            log.info(
                "normative eval: no training clips for the AHI reference (%s); using normal test clips",
                e,
            )
        return normal

    # -- evaluation -----------------------------------------------------------------------
    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if trainer.global_rank != 0 or getattr(trainer, "sanity_checking", False):
            return
        fn = restoration_fn(pl_module, self.noise_level, self.recon_steps)
        if fn is None:
            log.info("normative eval: %s cannot restore a video; skipped", type(pl_module).__name__)
            return
        if len(self._normal) < 2:
            log.warning("normative eval: fewer than 2 normal test videos; skipped")
            return
        res = self.evaluate(fn, trainer, pl_module)
        self.results = res
        for k, v in res["metrics"].items():
            if math.isfinite(v):
                pl_module.log(f"test/normative/{k}", float(v), rank_zero_only=True)
        self._log_media(trainer, res)
        if self.output_dir is not None:
            write_json(
                self.output_dir / "normative_eval.json",
                {k: v for k, v in res.items() if k != "examples"},
            )

    def evaluate(self, fn: Restore, trainer, pl_module) -> dict[str, Any]:
        """The metrics of the collected windows (called at test end; public for reuse)."""
        ids_n = sorted(self._normal)
        normal = torch.stack([self._normal[k] for k in ids_n])
        feats = feature_fn(pl_module)
        rest_n = run_batched(fn, normal, self.batch_size)
        r = N.rqi(normal, rest_n, features=feats, ids=ids_n)
        # CACI: an artefact injected into every normal window (true healthy content known)
        kinds = [self.artefacts[i % len(self.artefacts)] for i in range(len(normal))]
        inj = [N.inject_artefact(c, k, seed=i) for i, (c, k) in enumerate(zip(normal, kinds))]
        x_inj, m_inj = torch.stack([c for c, _ in inj]), torch.stack([m for _, m in inj])
        ids_inj = [f"{v}+{k}" for v, k in zip(ids_n, kinds)]
        rest_inj = run_batched(fn, x_inj, self.batch_size)
        c = N.caci(x_inj, rest_inj, m_inj, reference=normal, ids=ids_inj)
        # AHI: real abnormal windows when there are any, else the injected ones
        if self._abnormal:
            ids_a = sorted(self._abnormal)
            patho = torch.stack([self._abnormal[k][1] for k in ids_a])
            rest_a = run_batched(fn, patho, self.batch_size)
            masks_a = [self._abnormal[k][2] for k in ids_a]
            source = "abnormal test videos"
        else:
            ids_a, patho, rest_a, masks_a, source = (
                ids_inj,
                x_inj,
                rest_inj,
                list(m_inj),
                "injected artefacts",
            )
        ref = self._reference(trainer, normal)
        h = N.ahi(rest_a, patho, ref, features=feats, ids=ids_a, healthy=normal)
        metrics = {
            "rqi": r["rqi"], "ssim": r["ssim"], "mae": r["mae"], "perceptual": r["perceptual"],
            "ahi": h["ahi"], "ahi_ratio": h["frame_ratio"], "ahi_clip": h["clip_ahi"], "ahi_gap": h["ahi_gap"],
            "fd_restored": h["frame_d_restored"], "fd_unrestored": h["frame_d_unrestored"],
            "fd_healthy": h["frame_d_healthy"],
            "conservation": c["conservation"], "correction": c["correction"], "caci": c["caci"],
            "fidelity": c["fidelity"], "caci_fidelity": c["caci_fidelity"],
        }  # fmt: skip
        examples = [
            (example_image(patho[i], rest_a[i], masks_a[i]), ids_a[i])
            for i in range(min(self.n_images, len(patho)))
        ]
        return {
            "metrics": {k: float(v) for k, v in metrics.items()},
            "features": "embed_frames" if feats is not None else "pixel_features",
            "ahi_pathological": source,
            "ahi_reference_clips": len(ref),
            "tables": {"rqi": r["table"], "ahi": h["table"], "caci": c["table"]},
            "examples": examples,
        }

    def _log_media(self, trainer, res: dict[str, Any]) -> None:
        for lg in trainer.loggers:
            if callable(getattr(lg, "log_table", None)):
                for name, rows in res["tables"].items():
                    if rows:
                        cols = list(rows[0])
                        lg.log_table(
                            key=f"test/normative/{name}_table",
                            columns=cols,
                            data=[[row[k] for k in cols] for row in rows],
                        )
            if callable(getattr(lg, "log_image", None)) and res["examples"]:
                lg.log_image(
                    key="test/normative/examples",
                    images=[img for img, _ in res["examples"]],
                    caption=[
                        f"{cid}: input | restoration | |difference| | mask"
                        for _, cid in res["examples"]
                    ],
                )
