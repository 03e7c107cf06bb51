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
    cell_inches: float = 2.4,
) -> str | os.PathLike:
    """A contact sheet: ``images`` (``(H, W)`` grey or ``(H, W, 3)`` uint8) on a grid with a
    title under each, written atomically as PNG."""
    n = max(len(images), 1)
    cols = max(1, min(cols, n))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cell_inches * cols, (cell_inches + 0.3) * rows + 0.4 * bool(suptitle)),
                             squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    for i, (ax, img) in enumerate(zip(axes.ravel(), images)):
        img = np.asarray(img)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
        if titles is not None and i < len(titles):
            ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
