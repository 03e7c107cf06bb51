"""DSN summariser: rewards, REINFORCE training, feature dataset, Lightning module."""

import h5py
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from seqnrl.models.summariser import DSNPolicy, SummariserModule, SummaryFeatureDataset, fit_policy
from seqnrl.models.summariser.module import collate_videos
from seqnrl.models.summariser.net import sample_episodes
from seqnrl.models.summariser.rewards import (
    RewardWeights,
    diversity_reward,
    reinforce_loss,
    representativeness_reward,
    signal_reward,
    summary_rewards,
)

torch.set_num_threads(1)


def scenes(order, seg=10, dim=16, noise=0.05, seed=0):
    """Piecewise-constant features: segment k shows prototype ``order[k]``."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(max(order) + 1, dim, generator=g)
    x = torch.cat([protos[i].expand(seg, dim) for i in order])
    return x + noise * torch.randn(x.shape, generator=g)


def mask(t, idx):
    m = torch.zeros(t)
    m[list(idx)] = 1
    return m


def test_diversity_prefers_distinct_frames():
    x = scenes([0, 1, 2, 0])  # 40 frames
    diverse = mask(40, [2, 12, 22])  # one frame of each scene
    duplicate = mask(40, [2, 3, 4])  # three frames of one scene
    r = diversity_reward(x, torch.stack([diverse, duplicate]), temporal_distance=None)
    assert r[0] > 0.5 > 0.05 > r[1]
    # one selected frame has no pairs: 0, as in DSN
    assert diversity_reward(x, mask(40, [5])).item() == 0.0


def test_diversity_ignores_similarity_of_far_pairs():
    x = scenes([0, 1, 0])  # frames 5 and 25 look alike but are 20 frames apart
    a = mask(30, [5, 25])
    assert diversity_reward(x, a, temporal_distance=None).item() < 0.1
    assert diversity_reward(x, a, temporal_distance=10).item() == pytest.approx(1.0)


def test_representativeness_prefers_coverage():
    x = scenes([0, 1, 2, 0])
    cover = mask(40, [2, 12, 22])
    one_scene = mask(40, [2, 3, 4])
    r = representativeness_reward(x, torch.stack([cover, one_scene, torch.zeros(40)]))
    assert r[0] > r[1] > r[2] == 0.0
    assert r[0] > 0.9


def test_normative_reward_prefers_anomalous_segment():
    x = scenes([0, 1, 2, 3])
    scores = torch.zeros(40)
    scores[20:30] = 1.0  # scene 2 is anomalous
    anomalous, normal = mask(40, range(20, 25)), mask(40, range(0, 5))
    r = signal_reward(scores, torch.stack([anomalous, normal]))
    assert r.tolist() == [1.0, 0.0]
    w = RewardWeights(diversity=1.0, representativeness=1.0, normative=1.0)
    tot = summary_rewards(x, torch.stack([anomalous, normal]), w, scores=scores)["total"]
    assert tot[0] > tot[1]
    with pytest.raises(ValueError):
        summary_rewards(x, anomalous, w)  # normative weight without scores


def test_reinforce_loss_gradient_direction():
    probs = torch.full((4,), 0.5, requires_grad=True)
    actions = torch.tensor([[1.0, 1, 0, 0], [0.0, 0, 1, 1]])
    rewards = torch.tensor([1.0, 0.0])  # the first episode was better
    reinforce_loss(probs, actions, rewards, baseline=0.5, length_weight=0.0)["loss"].backward()
    g = probs.grad
    assert (g[:2] < 0).all() and (g[2:] > 0).all()  # descent raises p of frames 0, 1


def test_policy_shapes_and_sampling():
    pol = DSNPolicy(16, hidden=8)
    p = pol(torch.randn(2, 30, 16))
    assert p.shape == (2, 30) and ((p > 0) & (p < 1)).all()
    a = sample_episodes(p[0], 5, torch.Generator().manual_seed(0))
    assert a.shape == (5, 30) and set(a.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError):
        pol(torch.randn(1, 30, 8))


def test_seeded_reinforce_raises_reward_and_follows_normative_reward():
    order = [0, 1, 0, 2, 1, 0, 3, 1, 2, 4, 0, 1]
    x = scenes(order, noise=0.1)
    scores = torch.zeros(len(x))
    scores[60:70] = 1.0  # segment 6 (a rare scene) is anomalous
    kw = dict(steps=50, seed=0, hidden=32, lr=1e-2)
    pol, hist = fit_policy(x, scores, normative_weight=1.0, **kw)
    r = np.array([h["reward"] for h in hist])
    assert r[-10:].mean() > r[:10].mean() + 0.05
    assert abs(hist[-1]["selection_rate"] - 0.15) < 0.1  # the length regulariser holds
    with torch.no_grad():
        p = pol(x)[0].view(len(order), 10).mean(1)
    assert int(p.argmax()) == 6
    # without the normative reward the anomalous-but-normal-looking segment is not singled out
    pol0, _ = fit_policy(x, scores, normative_weight=0.0, **kw)
    with torch.no_grad():
        p0 = pol0(x)[0].view(len(order), 10).mean(1)
    assert p[6] > p0[6] + 0.1


def test_plain_adam_matches_torch_adam():
    from seqnrl.models.summariser.net import _Adam

    torch.manual_seed(0)
    p1 = torch.nn.Parameter(torch.randn(6))
    p2 = torch.nn.Parameter(p1.detach().clone())
    o1 = torch.optim.Adam([p1], lr=0.05, weight_decay=0.01)
    o2 = _Adam([p2], lr=0.05, weight_decay=0.01)
    for _ in range(20):
        for p, o in ((p1, o1), (p2, o2)):
            o.zero_grad()
            (p**3 - p).sum().backward()
            o.step()
    assert torch.allclose(p1, p2, atol=1e-5)


def test_fit_policy_on_long_sequence_trains_on_chunks():
    x = scenes(list(range(6)) * 10, seg=10)  # 600 frames
    pol, hist = fit_policy(x, steps=3, max_len=64, chunks=2, hidden=8)
    assert len(hist) == 3
    assert pol(x)[0].shape == (600,)


def items(n=3, t=40):
    out = []
    for i in range(n):
        x = scenes([i % 3, (i + 1) % 3, 3, (i + 2) % 3], seed=i)
        s = torch.zeros(t)
        s[20:30] = 1
        user = np.zeros((2, t))
        user[0, 20:26] = 1
        user[1, 22:28] = 1
        out.append({"video_id": f"v{i}", "features": x, "scores": s, "user_summary": user})
    return out


def test_dataset_from_pt_and_h5(tmp_path):
    it = items(2)
    torch.save([{k: torch.as_tensor(v) if k != "video_id" else v for k, v in d.items()} for d in it], tmp_path / "f.pt")
    ds = SummaryFeatureDataset(tmp_path / "f.pt")
    assert len(ds) == 2 and ds[0]["features"].shape == (40, 16) and ds[1]["video_id"] == "v1"
    with h5py.File(tmp_path / "f.h5", "w") as f:
        for d in it:
            g = f.create_group(d["video_id"])
            g["features"] = d["features"].numpy()
            g["gtscore"] = d["scores"].numpy()
    ds = SummaryFeatureDataset(tmp_path / "f.h5")
    assert ds[0]["relevance"].shape == (40,) and "scores" not in ds[0]
    with pytest.raises(ValueError):
        SummaryFeatureDataset([{"features": torch.zeros(5, 3), "scores": torch.zeros(4)}])


def test_lightning_module_trains_and_validates(tmp_path):
    pl.seed_everything(0)
    ds = SummaryFeatureDataset(items())
    dl = DataLoader(ds, batch_size=2, collate_fn=collate_videos)
    model = SummariserModule(in_dim=16, hidden=8, normative_weight=1.0, fps=1.0, shot_seconds=5.0)
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(model, dl, dl)
    m = trainer.callback_metrics
    for k in ("train/reward", "train/reward_normative", "train/loss", "val/f_score", "val/reward"):
        assert k in m and torch.isfinite(m[k]), k
    assert set(model.baselines) == {"v0", "v1", "v2"}
    ck = tmp_path / "s.ckpt"
    trainer.save_checkpoint(ck)
    raw = torch.load(ck, map_location="cpu", weights_only=True)
    assert raw["hyper_parameters"]["in_dim"] == 16 and "summariser_baselines" in raw
