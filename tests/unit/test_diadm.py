"""Diversity-aware generation (DiADM-style feature conditioning of the video diffusion model):
the feature changes the output, a dropped feature is the unconditional model, stepping
through training items gives one deterministic sample per item, the option leaves the
model unchanged when off, and training collects the items into the checkpoint."""

from __future__ import annotations

import pytest
import torch

from seqnrl import batch as B
from seqnrl.errors import ConfigError
from seqnrl.models.video_diffusion import sampling as S
from seqnrl.models.video_diffusion.features import PixelPCAFeatures
from seqnrl.models.video_diffusion.module import (
    ITEMS_KEY,
    VideoDiffusionModel,
    load_video_diffusion,
)
from seqnrl.models.video_diffusion.net import VideoDiffusionNet
from tests.unit.test_video_diffusion import _randomise

torch.set_num_threads(1)

TINY = dict(
    base_channels=8, channel_mults=(1, 2), attn_levels=(1,), heads=2, dim_head=8, emb_dim=16
)




def _model(**kw) -> VideoDiffusionModel:
    args = dict(
        TINY, clip_len=4, image_size=16, patch_size=2, ema_decay=0.0,
        condition_on_ef=False, condition_on_reference=False, feature_cond_dim=3, feature_pool=4,
    )  # fmt: skip
    args.update(kw)
    m = VideoDiffusionModel(**args).eval()
    _randomise(m.net)
    return m


def _clips(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 4, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_feature_conditioning_changes_output_and_dropped_is_unconditional():
    net = _randomise(
        VideoDiffusionNet(
            channels=1,
            condition_on_ef=False,
            condition_on_reference=False,
            patch_size=2,
            feature_cond_dim=5,
            **TINY,
        )  # fmt: skip
    ).eval()
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(2, 1, 4, 8, 8, generator=g), torch.tensor([10, 600])
    f1, f2 = torch.randn(2, 5, generator=g), torch.randn(2, 5, generator=g)
    with torch.no_grad():
        a, b, unc = net(x, t, feature=f1), net(x, t, feature=f2), net(x, t)
        assert (a - b).abs().max() > 1e-4
        dropped = net(x, t, feature=f1, drop_feature=torch.tensor([True, False]))
        assert torch.allclose(dropped[0], unc[0], atol=1e-6)
        assert torch.allclose(dropped[1], a[1], atol=1e-6)
        nan = torch.full_like(f1, float("nan"))  # unknown feature = null embedding too
        assert torch.allclose(net(x, t, feature=nan), unc, atol=1e-6)
        # guidance w = 0 is the unconditional prediction, w = 1 the conditional one
        assert torch.allclose(
            S.guided_denoiser(net, feature=f1, guidance_scale=0.0)(x, t), unc, atol=1e-5
        )
        assert torch.allclose(S.guided_denoiser(net, feature=f1)(x, t), a, atol=1e-6)
    with pytest.raises(ValueError, match="feature must be"):
        net(x, t, feature=torch.randn(2, 4))


def test_module_sampling_with_feature_guidance():
    m = _model()
    f = torch.randn(2, 3, generator=torch.Generator().manual_seed(2))
    plain = m.sample(2, steps=3, seed=5)
    assert torch.equal(plain, m.sample(2, steps=3, seed=5))
    assert not torch.allclose(m.sample(2, steps=3, seed=5, feature=f), plain, atol=1e-4)
    # the unconditional branch of guidance (w = 0) is plain sampling
    assert torch.allclose(
        m.sample(steps=3, seed=5, feature=f, guidance_scale=0.0), plain, atol=1e-5
    )
    with pytest.raises(ConfigError):
        _model(feature_cond_dim=0).sample(2, steps=2, feature=f)


def test_sample_diverse_steps_through_items_deterministically():
    m = _model()
    feats = torch.randn(3, 3, generator=torch.Generator().manual_seed(3))
    m.set_item_features(["a", "b", "c"], feats)
    one_each = m.sample_diverse(steps=3, seed=0)
    assert one_each.shape == (3, 1, 4, 16, 16)  # default: one sample per training item
    a = m.sample_diverse(n=5, steps=3, seed=0, guidance_scale=2.0, batch_size=2)
    assert a.shape[0] == 5
    assert torch.equal(a, m.sample_diverse(n=5, steps=3, seed=0, guidance_scale=2.0, batch_size=2))
    # independent of batching; sample i uses item i mod N
    assert torch.allclose(a, m.sample_diverse(n=5, steps=3, seed=0, guidance_scale=2.0), atol=1e-6)
    explicit = feats[torch.tensor([0, 1, 2, 0, 1])]
    b = m.sample_diverse(n=5, features=explicit, steps=3, seed=0, guidance_scale=2.0)
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, m.sample_diverse(n=5, steps=3, seed=1, guidance_scale=2.0))
    with pytest.raises(ConfigError, match="no training-item features"):
        _model().sample_diverse(steps=2)


def test_off_keeps_parameters_and_old_checkpoints_load():
    off = VideoDiffusionModel(**TINY, clip_len=4, image_size=16)
    on = VideoDiffusionModel(**TINY, clip_len=4, image_size=16, feature_cond_dim=3)
    keys_off, keys_on = set(off.state_dict()), set(on.state_dict())
    assert not any("feature" in k for k in keys_off)
    assert off.net.feature_embed is None and off.feature_extractor is None
    assert keys_on - keys_off and all("feature" in k for k in keys_on - keys_off)
    assert keys_off <= keys_on
    with pytest.raises(ValueError, match="feature_cond_dim=0"):
        off.net(torch.randn(1, 1, 4, 16, 16), torch.tensor([5]), feature=torch.randn(1, 3))
    # a checkpoint written before the option existed (no feature hparams) loads strictly
    hp = {k: v for k, v in off.hparams.items() if "feature" not in k}
    fresh = VideoDiffusionModel(**hp)
    fresh.load_state_dict(off.state_dict(), strict=True)
    assert fresh.hparams.feature_cond_dim == 0


def test_pixel_pca_features_whitened():
    fx = PixelPCAFeatures(1, 4, pool=4)
    with pytest.raises(RuntimeError, match="not fitted"):
        fx(_clips(2))
    clips = _clips(12)
    f = fx.fit([clips[:6], clips[6:]])(clips)
    assert f.shape == (12, 4)
    assert torch.allclose(f.mean(0), torch.zeros(4), atol=1e-4)
    assert torch.allclose(f.std(0), torch.ones(4), atol=1e-3)
    assert fx(clips[:1, :, :2]).shape == (1, 4)  # any clip length


def test_batch_feature_source_and_training_collects_items(tmp_path):
    m = _model(feature_source="batch").train()
    batch = {B.VIDEO: _clips(2), B.VIDEO_ID: ["v0", "v1"]}
    with pytest.raises(ConfigError, match="feature"):
        m.losses(batch)
    batch[B.FEATURE] = torch.randn(2, 3)
    assert torch.isfinite(m.losses(batch)["loss"])
    ids, feats = m.item_features()
    assert ids == ["v0", "v1"] and torch.allclose(feats, batch[B.FEATURE])
    # the contract's sample builder carries the optional key
    s = B.make_sample(_clips(1)[0], video_id="x", feature=torch.ones(3))
    assert B.collate([s, s])[B.FEATURE].shape == (2, 3)


def test_fit_with_pixel_pca_collects_items_into_checkpoint(tmp_path):
    import pytorch_lightning as pl

    from data_modules.synthetic import SyntheticEchoDataModule

    dm = SyntheticEchoDataModule(
        n_train=3, n_val=1, n_test=1, n_frames=4, clip_len=4, image_size=16, batch_size=3,
        samples_per_video=1, anomaly_fraction=0.0, seed=0,
    )  # fmt: skip
    m = VideoDiffusionModel(
        **TINY, clip_len=4, image_size=16, condition_on_ef=False, condition_on_reference=False,
        feature_cond_dim=2, feature_pool=4, ema_decay=0.9,
    )  # fmt: skip
    trainer = pl.Trainer(
        max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(m, datamodule=dm)
    assert bool(m.feature_extractor.fitted)
    ids, feats = m.item_features()
    assert len(ids) == 3 and feats.shape == (3, 2)
    clips = torch.stack([r.frames.float() for r in dm.records()["train"]])
    # one clip per video (the loader quantises frames slightly)
    assert torch.allclose(feats, m.clip_features(clips), atol=2e-2)
    path = tmp_path / "diadm.ckpt"
    trainer.save_checkpoint(path)
    assert ITEMS_KEY in torch.load(path, weights_only=True)
    loaded = load_video_diffusion(path)
    assert loaded.item_features()[0] == ids
    assert torch.allclose(loaded.clip_features(clips), m.clip_features(clips))
    m.eval()
    assert torch.allclose(
        loaded.sample_diverse(steps=2, seed=0), m.sample_diverse(steps=2, seed=0), atol=1e-6
    )
