"""Plots written by seqnrl (matplotlib, Agg backend, atomic writes)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from seqnrl.io.atomic import atomic_path  # noqa: E402


def shade_runs(ax, times: np.ndarray, mask: np.ndarray, color: str, label: str | None, alpha=0.25):
    """Shade contiguous runs where ``mask`` is true."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return
    dt = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(int), 0]))
    for j, (a, b) in enumerate(zip(edges[::2], edges[1::2])):
        ax.axvspan(times[a], times[b - 1] + dt, color=color, alpha=alpha, lw=0, label=label if j == 0 else None)


def plot_score_timeline(
    path: str | os.PathLike,
    times: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray | None = None,
    threshold: float | None = None,
    title: str = "",
    ylabel: str = "anomaly score",
    selected: np.ndarray | None = None,
    shots: np.ndarray | None = None,
) -> None:
    """Score over time; labelled anomalous frames shaded red, selected frames green, dotted
    lines at ``shots`` (frame indices of boundaries; one ``vlines`` call, so thousands of
    shots in a long recording stay cheap)."""
    fig, ax = plt.subplots(figsize=(10, 3), dpi=100)
    if labels is not None:
        shade_runs(ax, times, np.asarray(labels) == 1, "tab:red", "labelled anomalous")
    if selected is not None:
        shade_runs(ax, times, np.asarray(selected, bool), "tab:green", "selected", alpha=0.3)
    if shots is not None and len(shots):
        idx = np.minimum(np.asarray(shots, dtype=np.int64), len(times) - 1)
        ax.vlines(np.asarray(times)[idx], 0, 1, transform=ax.get_xaxis_transform(), colors="0.6", lw=0.5, ls=":")
    ax.plot(times, scores, color="tab:blue", lw=1.2, label="score")
    if threshold is not None and np.isfinite(threshold):
        ax.axhline(threshold, color="k", ls="--", lw=0.8, label="threshold")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.margins(x=0)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_image_grid(
    path: str | os.PathLike,
    images: list[np.ndarray],
    titles: list[str] | None = None,
    *,
    cols: int = 6,
    suptitle: str = "",
    pad: int = 4,
) -> str | os.PathLike:
    """A contact sheet: ``images`` (``(H, W)`` grey or ``(H, W, 3)`` uint8; all shown at the
    size of the largest) on a grid with a caption above each, written atomically as PNG.

    Drawn with PIL rather than matplotlib: a sheet of 24 key frames takes milliseconds
    instead of seconds, which matters when a batch summarises hundreds of recordings."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    imgs = [np.asarray(im) for im in images]
    imgs = [np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im for im in imgs]
    n = max(len(imgs), 1)
    cols = max(1, min(cols, n))
    rows = int(np.ceil(n / cols))
    ch = max((im.shape[0] for im in imgs), default=32)
    cw = max((im.shape[1] for im in imgs), default=32)
    cap = 14 if titles else 0
    top = 18 if suptitle else 0
    sheet = Image.new("RGB", (cols * (cw + pad) + pad, top + rows * (ch + cap + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    if suptitle:
        draw.text((pad, 3), suptitle, fill="black", font=font)
    for i, im in enumerate(imgs):
        r, c = divmod(i, cols)
        x0, y0 = pad + c * (cw + pad), top + pad + r * (ch + cap + pad)
        if titles is not None and i < len(titles):
            draw.text((x0, y0), titles[i], fill="black", font=font)
        tile = Image.fromarray(np.ascontiguousarray(im.astype(np.uint8)))
        if tile.size != (cw, ch):
            tile = tile.resize((cw, ch), Image.BILINEAR)
        sheet.paste(tile, (x0, y0 + cap))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path
