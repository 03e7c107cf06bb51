"""Video diffusion: UNet shapes, scheduler math, deterministic/conditional sampling, window
stitching, overfitting, pseudo-healthy scoring, latent autoencoder, checkpoint round trip."""

from __future__ import annotations

import math

import pytest
import torch

from seqnrl.models.video_diffusion import sampling as S
from seqnrl.models.video_diffusion.latent import FrameLatentAutoEncoder
from seqnrl.models.video_diffusion.module import VideoDiffusionModel, load_video_diffusion
from seqnrl.models.video_diffusion.net import VideoDiffusionNet
from seqnrl.nn.timestep import ScalarConditionEmbedding, sinusoidal_embedding
from seqnrl.nn.unet3d import UNet3D

torch.set_num_threads(1)

TINY = dict(
    base_channels=16, channel_mults=(1, 2), attn_levels=(1,), heads=2, dim_head=8, emb_dim=32
)


def _randomise(module: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Perturb every weight (zero-initialised output layers would hide conditioning)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return module


# -- blocks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("patch_size", [1, 2])
def test_unet3d_shapes(patch_size):
    net = UNet3D(
        3, 2, emb_dim=32, patch_size=patch_size, **{k: v for k, v in TINY.items() if k != "emb_dim"}
    )
    x = torch.randn(2, 3, 5, 16, 24)
    assert net(x, torch.randn(2, 32)).shape == (2, 2, 5, 16, 24)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 3, 5, 17, 16), torch.randn(1, 32))


def test_embeddings():
    e = sinusoidal_embedding(torch.tensor([0.0, 1.0, 500.0]), 9)
    assert e.shape == (3, 9) and torch.allclose(e[0, :4], torch.ones(4))
    emb = _randomise(ScalarConditionEmbedding(16))
    v = torch.tensor([0.5, float("nan"), -1.0])
    out = emb(v, drop=torch.tensor([False, False, True]))
    assert torch.allclose(out[1], emb.null) and torch.allclose(out[2], emb.null)
    assert not torch.allclose(out[0], emb.null)


@pytest.mark.parametrize("ef_on,ref_on", [(True, True), (False, False), (True, False)])
def test_net_shapes_with_and_without_conditioning(ef_on, ref_on):
    net = VideoDiffusionNet(
        channels=1, condition_on_ef=ef_on, condition_on_reference=ref_on, patch_size=2, **TINY
    )
    x, t = torch.randn(2, 1, 6, 16, 16), torch.tensor([3, 900])
    ef, ref = torch.tensor([0.3, -1.0]), torch.randn(2, 1, 16, 16)
    for kw in (
        {},
        {"ef": ef},
        {"ref": ref},
        {"ef": ef, "ref": ref, "drop_ef": torch.tensor([True, False])},
    ):
        assert net(x, t, **kw).shape == x.shape


# -- scheduler math -------------------------------------------------------------------------
@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
def test_true_noise_recovers_clip(prediction_type):
    cfg = S.scheduler_config(prediction_type=prediction_type)
    sched = S.make_scheduler("ddpm", cfg)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 1, 4, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([10, 500, 990])
    x_t = sched.add_noise(x0, noise, t)
    target = S.training_target(sched, x0, noise, t)
    assert torch.allclose(S.predict_x0(sched, target, x_t, t), x0, atol=1e-3)
    assert torch.allclose(S.output_from_x0(sched, x0, x_t, t), target, atol=1e-3)

    # a whole DDIM chain driven by the true clean clip returns it, from pure noise or from
    # an intermediate level (the pseudo-healthy path)
    def oracle(x, tt):
        return S.output_from_x0(sched, x0, x, tt)

    for kw in ({}, {"x_start": x0, "noise_level": 0.4}):
        out = S.sample(
            oracle, tuple(x0.shape), S.make_scheduler("ddim", cfg), 10, generator=g, **kw
        )
        assert torch.allclose(out, x0, atol=1e-3)
    # ... and a wrong oracle does not
    out = S.sample(
        lambda x, tt: torch.zeros_like(x),
        tuple(x0.shape),
        S.make_scheduler("ddim", cfg),
        10,
        generator=g,
    )
    assert not torch.allclose(out, x0, atol=0.1)


def test_start_timestep_grid():
    sched = S.make_scheduler("ddim", S.scheduler_config())
    assert S.start_timestep(sched, 10, 1.0) == 999
    assert S.start_timestep(sched, 10, 0.4) == 399
    with pytest.raises(ValueError):
        S.start_timestep(sched, 10, 0.0)


def _tiny_model(**kw) -> VideoDiffusionModel:
    args = dict(TINY, clip_len=6, image_size=16, patch_size=2, ema_decay=0.0, recon_steps=8)
    args.update(kw)
    return VideoDiffusionModel(**args).eval()


def test_ddim_sampling_is_deterministic_and_seeded():
    m = _tiny_model()
    _randomise(m.net)
    a = m.sample(2, ef=[40.0, 60.0], steps=5, seed=3)
    b = m.sample(2, ef=[40.0, 60.0], steps=5, seed=3)
    c = m.sample(2, ef=[40.0, 60.0], steps=5, seed=4)
    assert a.shape == (2, 1, 6, 16, 16) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 1e-3
    # DDPM (ancestral) runs and is seeded too
    d1 = m.sample(1, steps=5, sampler="ddpm", seed=1)
    d2 = m.sample(1, steps=5, sampler="ddpm", seed=1)
    assert torch.equal(d1, d2)


def test_conditioning_changes_the_sample():
    m = _tiny_model()
    _randomise(m.net, scale=0.1)
    low = m.sample(1, ef=20.0, steps=5, seed=0)
    high = m.sample(1, ef=80.0, steps=5, seed=0)
    assert (low - high).abs().mean() > 1e-3
    ref = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with_ref = m.sample(1, ef=20.0, reference=ref, steps=5, seed=0)
    assert (with_ref - low).abs().mean() > 1e-3
    # guidance: scale 1 is the conditional model; another scale changes the result
    guided = m.sample(1, ef=20.0, steps=5, seed=0, guidance_scale=3.0)
    assert (guided - low).abs().mean() > 1e-4
    # dropped conditions are ignored by the network
    x, t = torch.randn(2, 1, 6, 16, 16), torch.tensor([500, 500])
    drop = torch.tensor([True, True])
    o1 = m.net(x, t, ef=torch.tensor([-2.0, -2.0]), drop_ef=drop)
    o2 = m.net(x, t, ef=torch.tensor([2.0, 2.0]), drop_ef=drop)
    assert torch.allclose(o1, o2)


# -- long videos ----------------------------------------------------------------------------
def _gp_denoiser(sched, window: int, length: float = 3.0, std: float = 0.5):
    """Exact posterior-mean denoiser of a prior where each pixel's time series is a Gaussian
    process (RBF kernel over frames): a stand-in for a trained model with known behaviour."""
    i = torch.arange(window, dtype=torch.float64)
    k = std**2 * torch.exp(-((i[:, None] - i[None]) ** 2) / (2 * length**2)) + 1e-6 * torch.eye(
        window
    )

    def den(x, t):
        a = float(sched.alphas_cumprod[int(t[0])])
        gain = (
            math.sqrt(a)
            * k
            @ torch.linalg.inv(a * k + (1 - a) * torch.eye(window, dtype=torch.float64))
        )
        x0 = torch.einsum("st,bctij->bcsij", gain.float(), x)
        return S.output_from_x0(sched, x0, x, t)

    return den


def _neighbour_jumps(video: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between frame k and k-1, for k = 1..T-1."""
    return (video[:, :, 1:] - video[:, :, :-1]).abs().mean(dim=(0, 1, 3, 4))


@pytest.mark.parametrize("blend", [False, True])
def test_generate_long_has_requested_length_and_smooth_seams(blend):
    cfg = S.scheduler_config(clip_sample=False)
    sched = S.make_scheduler("ddim", cfg)
    window, stride, n = 12, 8, 37
    overlap = window - stride
    den = _gp_denoiser(sched, window)
    g = torch.Generator().manual_seed(0)
    video = S.generate_long(
        den, n, window, stride, (2, 1, 8, 8), sched, 20, generator=g, blend=blend
    )
    assert video.shape == (2, 1, n, 8, 8)
    jumps = _neighbour_jumps(video)  # jumps[k] = |frame k+1 - frame k|
    within = jumps[: window - 1]  # inside the first window
    seams = list(range(window, n, stride))  # first frame of each window's new part
    # every frame difference around a seam (the cross-faded overlap and the first new frame)
    around = torch.cat([jumps[s - overlap - 1 : s] for s in seams])
    assert around.max() < 2.0 * within.quantile(0.9), (around, within)
    # negative control: independent windows (no overlap) jump at every seam
    indep = S.generate_long(den, 24, window, window, (2, 1, 8, 8), sched, 20, generator=g)
    j2 = _neighbour_jumps(indep)
    assert j2[window - 1] > 2.0 * j2[: window - 1].quantile(0.9)


def test_crossfade_weights():
    a, b = torch.zeros(1, 1, 4, 1, 1), torch.ones(1, 1, 4, 1, 1)
    w = S.crossfade(a, b).flatten()
    assert torch.allclose(w, torch.tensor([0.2, 0.4, 0.6, 0.8]))


def test_model_generate_long_length():
    m = _tiny_model()
    out = m.generate_long(15, n=1, ef=55.0, steps=3, stride=4)
    assert out.shape == (1, 1, 15, 16, 16)


# -- training -------------------------------------------------------------------------------
def _echo_clips(n: int, n_frames: int, size: int, seed0: int = 0) -> torch.Tensor:
    from seqnrl.data.synthetic_echo import make_echo

    return torch.stack([make_echo(seed0 + i, n_frames=n_frames, size=size).video for i in range(n)])


def _train(
    m: VideoDiffusionModel, clips: torch.Tensor, steps: int, bs: int, lr: float, seed: int = 0
) -> None:
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(m.net.parameters(), lr=lr)
    m.train()
    for _ in range(steps):
        idx = torch.randint(0, len(clips), (bs,))
        loss = m.losses({"video": clips[idx], "ef": torch.full((bs,), float("nan"))})["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        m.update_ema()
    m.eval()


def test_overfitting_one_clip_lowers_the_loss():
    torch.manual_seed(0)
    m = _tiny_model(clip_len=4)
    clip = _echo_clips(1, 4, 16)
    batch = {"video": clip.repeat(8, 1, 1, 1, 1), "ef": torch.full((8,), 60.0)}
    with torch.no_grad():
        before = float(m.losses(batch)["loss"])  # eval mode: fixed t and noise
    _train(m, clip, steps=100, bs=4, lr=2e-3)
    with torch.no_grad():
        after = float(m.losses(batch)["loss"])
    assert after < 0.5 * before, (before, after)


def test_pseudo_healthy_scores_an_injected_segment():
    torch.manual_seed(0)
    t_len, size = 8, 16
    m = _tiny_model(clip_len=t_len, image_size=size, noise_levels=(0.4, 0.55), map_blur_sigma=0.5)
    clips = _echo_clips(8, t_len, size)
    _train(m, clips, steps=60, bs=4, lr=3e-3)
    test = _echo_clips(1, t_len, size, seed0=100)
    abnormal = test.clone()
    seg = slice(3, 6)
    abnormal[:, :, seg, 3:9, 4:10] = 1.0  # a bright block where the heart should be
    s = m.score_frames({"video": abnormal})["score"][0]
    inside, outside = s[seg], torch.cat([s[:3], s[6:]])
    assert inside.min() > outside.max(), s
    assert inside.mean() > 1.5 * outside.mean(), s
    amap = m.anomaly_map(abnormal)
    assert amap.shape == (1, 1, t_len, size, size)
    assert amap[0, 0, 4, 3:9, 4:10].mean() > 2 * amap[0, 0, 0, 3:9, 4:10].mean()
    # deterministic: same call, same scores; reconstruction keeps the shape
    assert torch.equal(s, m.score_frames({"video": abnormal})["score"][0])
    assert m.reconstruct(abnormal, 0.4).shape == abnormal.shape


def test_level_statistics_fit_and_standardise():
    import numpy as np

    from seqnrl.scoring.aggregate import VideoScores

    m = _tiny_model(noise_levels=(0.3, 0.5))
    rng = np.random.default_rng(0)
    res = {}
    for v in range(3):
        e0, e1 = rng.normal(1.0, 0.1, 20), rng.normal(10.0, 2.0, 20)
        res[f"v{v}"] = VideoScores(
            f"v{v}", scores=e0 + e1, labels=np.zeros(20, int), counts=np.ones(20), label=0,
            extra={"err_0": e0, "err_1": e1},
        )  # fmt: skip
    m.fit_calibration(res)
    assert bool(m.level_fitted) and m.calibrator.fitted
    assert m.level_mean.tolist() == pytest.approx([1.0, 10.0], abs=0.5)
    allsc = np.concatenate([r.scores for r in res.values()])
    assert abs(allsc.mean()) < 1e-5  # combined standardised scores are centred


# -- latent mode ----------------------------------------------------------------------------
def test_latent_autoencoder_shapes_and_round_trip():
    torch.manual_seed(0)
    ae = FrameLatentAutoEncoder(1, latent_channels=4, width=8, downsample=2)
    clips = _echo_clips(2, 4, 32)
    z = ae.encode(clips)
    assert z.shape == (2, 4, 4, 8, 8) and z.abs().max() <= 1
    assert ae.decode(z).shape == clips.shape
    with torch.no_grad():
        before = float(ae.loss(clips))
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    for _ in range(40):
        loss = ae.loss(clips)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(ae.loss(clips))
    assert after < 0.5 * before, (before, after)
    with pytest.raises(ValueError):
        ae.encode(torch.rand(1, 1, 2, 30, 30))


def test_latent_mode_model():
    m = _tiny_model(latent=True, latent_width=8, latent_downsample=1, patch_size=1, image_size=16)
    clips = _echo_clips(2, 6, 16)
    m.train()
    terms = m.losses({"video": clips, "ef": torch.tensor([60.0, float("nan")])})
    assert {"ae", "diffusion", "loss"} <= set(terms)
    m.eval()
    assert m.sample(1, steps=2).shape == (1, 1, 6, 16, 16)
    assert m.score_frames({"video": clips})["score"].shape == (2, 6)


# -- Lightning + checkpoint -----------------------------------------------------------------
def test_fit_checkpoint_and_weights_only_load(tmp_path):
    import pytorch_lightning as pl

    from data_modules.synthetic import SyntheticEchoDataModule

    dm = SyntheticEchoDataModule(
        n_train=2, n_val=2, n_test=2, n_frames=12, clip_len=6, stride=6, image_size=16,
        batch_size=2, samples_per_video=1, anomaly_fraction=0.5, seed=0,
    )  # fmt: skip
    m = VideoDiffusionModel(
        **dict(TINY, clip_len=6, image_size=16, recon_steps=4, noise_levels=(0.5,))
    )
    trainer = pl.Trainer(
        max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(m, datamodule=dm)
    assert m.calibrator.fitted and bool(m.level_fitted) and int(m.ema_updates) == 2
    path = tmp_path / "vd.ckpt"
    trainer.save_checkpoint(path)
    loaded = load_video_diffusion(path)
    assert loaded.input_spec.clip_len == 6
    m.eval()
    clip = _echo_clips(1, 6, 16)
    assert torch.allclose(
        m.score_frames({"video": clip})["score"], loaded.score_frames({"video": clip})["score"]
    )
    from seqnrl.errors import CheckpointError

    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(CheckpointError):
        load_video_diffusion(bad)
