"""The depth prior for lung ultrasound: its view, what it learns and how it scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqnrl import batch as B
from seqnrl.models.depth_prior.view import band_box, lung_view

S = 64


def fan(h: int = 96, w: int = 96) -> np.ndarray:
    """A convex-probe fan: a bool mask widening with depth (its top half as wide as its bottom)."""
    y, x = np.mgrid[0:h, 0:w]
    return (y > 8) & (np.abs(x - w / 2) < 22 + 0.25 * (y - 8)) & (y < h - 6)


def lung(
    n: int, seed: int, b_line: bool = False, shadow: bool = False, masked: bool = True
) -> torch.Tensor:
    """``(1, n, 96, 96)`` in [0, 1]: a normal lung view (bright pleura at a random depth, A-lines
    at its multiples fading with depth, speckle, a random gain), optionally with a B-line (a
    bright vertical streak from the pleura to the bottom) or a shadow (a dark lower part)."""
    g = np.random.default_rng(seed)
    h = w = 96
    d, gain = int(g.integers(16, 24)), float(g.uniform(0.5, 1.0))
    y = np.arange(h)[:, None]
    out = []
    for _ in range(n):
        img = 0.05 + 0.04 * g.random((h, w))
        for k in (1, 2, 3, 4):
            img = img + (0.8 / k) * np.exp(-0.5 * ((y - k * d) / 1.5) ** 2)
        if b_line:
            x0 = int(g.integers(40, 52))
            img[d:, x0 : x0 + 4] += 0.6
        if shadow:
            img[int(0.6 * h) :, :] *= 0.5
        img = np.clip(gain * img, 0, 1)
        out.append(img * fan(h, w) if masked else img)
    return torch.tensor(np.stack(out), dtype=torch.float32)[None]


def test_band_box_stays_inside_the_fan_and_falls_back_to_the_frame():
    m = fan()
    y0, y1, x0, x1 = band_box(m, 96, 96)
    assert 0 < y0 < y1 < 96 and 0 < x0 < x1 < 96
    assert m[y0:y1, x0:x1].all(), "the band must hold only imaging pixels (no black fan corners)"
    assert band_box(None, 40, 50) == (0, 40, 0, 50)
    assert band_box(np.zeros((40, 50), bool), 40, 50) == (0, 40, 0, 50)


def test_lung_view_cuts_the_band_from_moving_frames():
    v = lung(6, seed=0)[None]  # (1, 1, 6, 96, 96)
    view = lung_view(v, S)
    assert view.shape == (1, 6, 1, S, S)
    # inside the fan's central band: no black surround in the view's corners
    assert (
        float(view[0, :, 0, -4:, :4].mean()) > 0.01 and float(view[0, :, 0, -4:, -4:].mean()) > 0.01
    )
    # a still window has no detectable sector: the whole frame is the view
    still = v[:, :, :1].expand(1, 1, 4, 96, 96)
    torch.testing.assert_close(lung_view(still, 48)[0, 0, 0], torch.nn.functional.interpolate(
        still[0, :, :1], size=(48, 48), mode="area")[0, 0])  # fmt: skip


def test_settings_are_checked():
    from seqnrl.models.depth_prior.module import DepthPriorModel

    with pytest.raises(ValueError, match="pooling"):
        DepthPriorModel(pooling="max")
    with pytest.raises(ValueError, match="visible"):
        DepthPriorModel(visible=1.0)
    with pytest.raises(ValueError, match="divisible by 8"):
        DepthPriorModel(view_size=60)


@pytest.fixture(scope="module")
def trained():
    from seqnrl.models.depth_prior.module import DepthPriorModel

    torch.manual_seed(0)
    model = DepthPriorModel(view_size=32, width=8, lr=3e-3)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    clips = [lung(4, seed=s)[None] for s in range(24)]
    model.train()
    for step in range(120):
        v = torch.cat([clips[(2 * step + i) % len(clips)] for i in range(2)])
        loss = model.losses(
            {B.VIDEO: v, B.VIDEO_ID: ["a", "b"], B.START_FRAME: torch.tensor([step, step])}
        )["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _scores(model, clips) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate(
            [model.score_frames({B.VIDEO: c[None]})["score"].numpy().ravel() for c in clips]
        )


def test_trained_depth_prior_flags_b_lines_not_shadows(trained):
    from seqnrl.metrics.anomaly import auroc

    normal = _scores(trained, [lung(4, seed=100 + s) for s in range(6)])
    b_lines = _scores(trained, [lung(4, seed=100 + s, b_line=True) for s in range(6)])
    shadow = _scores(trained, [lung(4, seed=100 + s, shadow=True) for s in range(6)])
    labels = np.r_[np.zeros(len(normal)), np.ones(len(b_lines))]
    assert auroc(np.r_[normal, b_lines], labels) > 0.9
    # darker than expected is not disease: a shadow scores no higher than normal lung
    assert shadow.mean() <= normal.mean() + 0.1 * normal.std()


def test_training_lowers_the_loss_and_column_pooling_sees_narrow_streaks(trained):
    from seqnrl.models.depth_prior.module import DepthPriorModel

    fresh = DepthPriorModel(view_size=32, width=8)
    v = lung(4, seed=300)[None]
    with torch.no_grad():
        assert trained.losses({B.VIDEO: v})["loss"] < fresh.losses({B.VIDEO: v})["loss"]
    normal, streak = lung(4, seed=301), lung(4, seed=301, b_line=True)
    trained.hparams.pooling = "columns"
    try:
        cols = _scores(trained, [streak]) - _scores(trained, [normal])
    finally:
        trained.hparams.pooling = "mean"
    mean = _scores(trained, [streak]) - _scores(trained, [normal])
    assert (cols > mean).all(), (
        "top-column pooling must respond more to a narrow streak than the mean"
    )
