"""Optical flow, the per-location flow-statistics floor and the motion prior model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqnrl import batch as B
from seqnrl.scoring.optical_flow import cell_mean, farneback_flow, flow_magnitude

H, W = 48, 72


def _texture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.random((H // 4 + 2, W // 4 + 2))
    return np.kron(t, np.ones((4, 4)))[:H, :W]


def moving_blob(n: int, speed: float, seed: int = 0, row: int = 20) -> torch.Tensor:
    """``(1, n, H, W)`` in [0, 1]: a static textured background and a bright square moving
    right at ``speed`` px/frame (starting at column 2)."""
    bg = 0.3 + 0.2 * _texture(seed)
    out = np.repeat(bg[None], n, 0)
    for t in range(n):
        x = int(round(2 + speed * t)) % (W - 10)
        out[t, row : row + 10, x : x + 10] = 0.9
    return torch.tensor(out, dtype=torch.float32)[None]


def test_farneback_recovers_a_known_shift():
    tex = _texture(1)
    frames = torch.tensor(np.stack([tex[:, 5:65], tex[:, 3:63]]), dtype=torch.float32)[None]  # content moves +2 px
    flow = farneback_flow(frames)
    assert flow.shape == (2, H, 60, 2)
    inner = flow[1, 8:-8, 8:-8]
    assert abs(float(np.median(inner[..., 0])) - 2.0) < 0.3
    assert abs(float(np.median(inner[..., 1]))) < 0.3
    # the first frame takes the motion from frame 0 to 1; one frame has no motion
    np.testing.assert_array_equal(flow[0], flow[1])
    assert not farneback_flow(frames[:, :1]).any()


def test_cell_mean_averages_cells():
    x = torch.arange(2 * 24 * 36, dtype=torch.float32).reshape(2, 24, 36)
    c = cell_mean(x, 12)
    assert c.shape == (2, 2, 3)
    assert torch.isclose(c[1, 1, 2], x[1, 12:24, 24:36].mean())


def test_flow_statistics_floor_flags_faster_motion():
    from seqnrl.scoring.baselines import FlowStatisticsBaseline

    base = FlowStatisticsBaseline(size=(H, W), cell=12)
    with pytest.raises(RuntimeError, match="fit"):
        base.scores(moving_blob(6, 1.0))
    base.fit([moving_blob(20, 1.0, seed=s) for s in range(3)])
    normal, fast = base.scores(moving_blob(20, 1.0, seed=5)), base.scores(moving_blob(20, 5.0, seed=5))
    assert fast.shape == normal.shape == (20,)
    assert np.median(fast) > np.median(normal) + 1.0


def _batch(clips: list[torch.Tensor]) -> B.Batch:
    return B.collate([B.make_sample(c, video_id=f"v{i}") for i, c in enumerate(clips)])


@pytest.mark.slow
def test_motion_prior_learns_normal_speed_and_scores_only_excess():
    """Trained on a square moving at 1 px/frame, the model scores the same square moving at
    5 px/frame higher than at 1 px/frame, and a square standing still no higher (slower than
    normal is not an anomaly). The untrained model does not know the normal speed."""
    from seqnrl.models.flow_prior.module import FlowPriorModel

    torch.manual_seed(0)
    model = FlowPriorModel(image_size=(H, W), cell=12, width=8, lr=5e-3)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    train = [moving_blob(8, 1.0, seed=s, row=r) for s in range(4) for r in (8, 20, 30)]
    for step in range(60):
        loss = model.losses(_batch(train[step % 4 :: 4]))["loss"]
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        s = {v: model.score_frames(_batch([moving_blob(8, v, seed=9)]))["score"][0, 1:].mean().item() for v in (0.0, 1.0, 5.0)}
    assert s[5.0] > s[1.0] + 1.0
    assert s[0.0] <= s[1.0] + 0.5


def test_motion_prior_resizes_other_inputs_and_keeps_shapes():
    from seqnrl.models.flow_prior.module import FlowPriorModel

    model = FlowPriorModel(image_size=(H, W), cell=12, width=8).eval()
    rgb = torch.rand(2, 3, 5, 96, 144)  # colour, twice the size
    with torch.no_grad():
        out = model.score_frames(_batch(list(rgb)))
    assert out["score"].shape == (2, 5)
    assert torch.isfinite(out["score"]).all()
    terms = model.losses(_batch(list(rgb)))
    assert set(terms) >= {"loss"} and torch.isfinite(terms["loss"])
    assert flow_magnitude(rgb[:, :, :2]).shape == (2, 2, 96, 144)


def test_cell_flow_cache_matches_direct_flow_and_reuses_pairs():
    from seqnrl.scoring.optical_flow import CellFlowCache

    clip = moving_blob(6, 2.0)
    direct = cell_mean(torch.from_numpy(np.linalg.norm(farneback_flow(clip), axis=-1)), 12).numpy()
    cache = CellFlowCache(max_items=100)
    np.testing.assert_array_equal(cache.clip(clip, 12), direct)
    assert len(cache) == 5  # five frame pairs
    # a later window: pairs met before; its first frame takes the motion to its next frame
    np.testing.assert_array_equal(cache.clip(clip[:, 2:], 12), direct[[3, 3, 4, 5]])
    assert len(cache) == 5
    small = CellFlowCache(max_items=2)
    small.clip(clip, 12)
    assert len(small) == 2
