"""Spatiotemporal transformer normative model: shapes, causality, deterministic scoring,
training signal, checkpoint buffers, anomaly sensitivity, EF / ED-ES heads and metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from seqnrl.batch import collate
from seqnrl.data.synthetic_echo import make_echo
from seqnrl.metrics.regression import afd, ed_es_afd, ef_metrics, find_ed_es, true_ed_es
from seqnrl.models.st_transformer import STTransformerModel, STTransformerNet

TINY = dict(
    image_size=32, clip_len=16, dim=32, depth=1, heads=2, decoder_dim=32, cnn_width=8, cnn_depth=2
)
NET = dict(
    image_size=32, max_frames=16, dim=32, depth=1, heads=2, decoder_dim=32, cnn_width=8, cnn_depth=2
)
COMBOS = [(b, o) for b in ("factorised", "frame_cnn") for o in ("masked", "future")]


def tiny_model(backbone="factorised", objective="masked", **kw) -> STTransformerModel:
    torch.manual_seed(0)
    return STTransformerModel(backbone=backbone, objective=objective, **{**TINY, **kw})


def echo_batch(n=2, t=16, size=32, seed=0, **kw):
    samples = []
    for i in range(n):
        e = make_echo(seed + i, n_frames=t, size=size, **kw)
        samples.append(e.to_sample(f"v{seed + i}"))
    return collate(samples)


@pytest.mark.parametrize("backbone,objective", COMBOS)
def test_shapes_through_every_path(backbone, objective):
    torch.manual_seed(0)
    net = STTransformerNet(backbone=backbone, objective=objective, pos_encoding="sinusoidal", **NET)
    v = torch.rand(2, 1, 16, 32, 32)
    n_tok = 16 if backbone == "factorised" else 1
    if objective == "masked":
        mask = torch.zeros(2, 16, dtype=torch.bool)
        mask[:, :12] = True
        rec, tok = net(v, mask)
        assert tok.shape == (2, 16, 4 if backbone == "factorised" else 1, 32)  # visible tokens only
    else:
        rec, tok = net(v)
        assert tok.shape == (2, 16, n_tok, 32)
        assert torch.equal(rec[:, :, 0], torch.zeros_like(rec[:, :, 0]))  # first frame has no past
    assert rec.shape == v.shape
    err, full = net.analyse(v, pool=4)
    assert err.shape == v.shape and (err >= 0).all()
    assert full.shape == (2, 16, n_tok, 32)
    assert net.frame_embeddings(full).shape == (2, 16, 32)
    ef = net.ef(full)
    assert ef.shape == (2,) and torch.isfinite(ef).all()
    assert net.edes(full).shape == (2, 16)


@pytest.mark.parametrize("backbone,objective", COMBOS)
def test_non_square_frames(backbone, objective):
    """``image_size=(H, W)`` (e.g. Ped2's 3:2 frames at 64x96): tubelet grid, 2-D positions,
    reconstruction/prediction heads and the frame CNN all follow (H, W); a transposed frame
    with the same number of patches is refused instead of being scored with scrambled
    positions."""
    torch.manual_seed(0)
    h, w = 32, 48
    net = STTransformerNet(
        backbone=backbone, objective=objective, pos_encoding="sinusoidal",
        **{**NET, "image_size": (h, w), "max_frames": 8},
    )  # fmt: skip
    assert net.backbone.grid == (4, 6) and net.n_patches == 24
    v = torch.rand(2, 1, 8, h, w)
    n_tok = 24 if backbone == "factorised" else 1
    if objective == "masked":
        mask = net.eval_mask_set[:1].expand(2, -1)
        rec, tok = net(v, mask)
        assert tok.shape[:3] == (2, 8, 6 if backbone == "factorised" else 1)  # visible only
        pm = net.pixel_mask(mask, 8)
        assert pm.shape == (2, 1, 8, h, w) and float(pm.mean()) == pytest.approx(18 / 24)
    else:
        rec, tok = net(v)
        assert tok.shape == (2, 8, n_tok, 32)
    assert rec.shape == v.shape
    err, full = net.analyse(v, pool=4)
    assert err.shape == v.shape and full.shape == (2, 8, n_tok, 32)
    assert net.edes(full).shape == (2, 8) and net.ef(full).shape == (2,)
    with pytest.raises(ValueError, match="48x32"):
        net.analyse(torch.rand(1, 1, 8, w, h))
    with pytest.raises(ValueError, match="divisible"):
        STTransformerNet(backbone=backbone, **{**NET, "image_size": (32, 44)})


def test_non_square_blocks_and_model():
    from seqnrl.nn.frame_cnn import FrameDecoder, FrameEncoder
    from seqnrl.nn.posenc import SpaceTimePosition, sinusoidal_2d
    from seqnrl.nn.tubelet import TubeletEmbed, patchify, unpatchify

    v = torch.rand(2, 1, 4, 16, 40)
    tok = TubeletEmbed(1, 12, patch_size=8)(v)
    assert tok.shape == (2, 4, 2 * 5, 12)
    assert torch.equal(unpatchify(patchify(v, 8), 8, 1, (2, 5), 1), v)
    tab = sinusoidal_2d(2, 5, 8)  # rows vary in the first half, columns in the second
    assert tab.shape == (10, 8)
    assert torch.equal(tab[0, :4], tab[4, :4]) and not torch.equal(tab[0, 4:], tab[4, 4:])
    assert torch.equal(tab[0, 4:], tab[5, 4:]) and not torch.equal(tab[0, :4], tab[5, :4])
    assert SpaceTimePosition((2, 5), 4, 12, "sinusoidal")(tok).shape == tok.shape
    enc = FrameEncoder(1, image_size=(16, 40), width=8, depth=3, dim=24)
    dec = FrameDecoder(1, image_size=(16, 40), width=8, depth=3, dim=24)
    assert enc.bottleneck == (2, 5)
    assert dec(enc(v)).shape == v.shape
    # the Lightning module: hparams keep a YAML-safe [H, W]; scoring works end to end
    m = tiny_model(image_size=(32, 48), clip_len=8, bank_size=32).eval()
    assert m.hparams.image_size == [32, 48]
    batch = {"video": torch.rand(2, 1, 8, 32, 48), "video_id": ["a", "b"]}
    m._remember(batch)
    m.refresh_bank()
    with torch.no_grad():
        out = m.score_frames(batch)
    assert out["score"].shape == (2, 8) and torch.isfinite(out["score"]).all()


def test_tubelets_of_two_frames():
    torch.manual_seed(0)
    for obj in ("masked", "future"):
        net = STTransformerNet(objective=obj, **{**NET, "tubelet_size": 2})
        v = torch.rand(1, 1, 16, 32, 32)
        err, tok = net.analyse(v)
        assert err.shape == v.shape and tok.shape == (1, 8, 16, 32)
        assert net.frame_embeddings(tok).shape == (1, 16, 32)


@pytest.mark.parametrize("backbone", ["factorised", "frame_cnn"])
def test_future_prediction_is_causal(backbone):
    torch.manual_seed(0)
    net = STTransformerNet(backbone=backbone, objective="future", **{**NET, "depth": 2}).eval()
    v = torch.rand(1, 1, 16, 32, 32)
    w = v.clone()
    w[:, :, 9:] = torch.rand_like(w[:, :, 9:])  # change frames 9..15
    with torch.no_grad():
        a, ta = net.forward_future(v)
        b, tb = net.forward_future(w)
    # the prediction of frame s uses frames < s only: frames <= 9 are predicted identically
    assert torch.allclose(a[:, :, :10], b[:, :, :10], atol=1e-5)
    assert torch.allclose(ta[:, :9], tb[:, :9], atol=1e-5)
    assert not torch.allclose(a[:, :, 10:], b[:, :, 10:], atol=1e-3)


@pytest.mark.parametrize("backbone", ["factorised", "frame_cnn"])
def test_residual_future_prediction_adds_the_change_to_the_current_frame(backbone):
    torch.manual_seed(0)
    net = STTransformerNet(backbone=backbone, objective="future", residual=True, **NET).eval()
    plain = STTransformerNet(backbone=backbone, objective="future", **NET).eval()
    plain.load_state_dict(net.state_dict())  # same weights: the flag adds no parameter
    v = torch.rand(1, 1, 16, 32, 32)
    with torch.no_grad():
        r, _ = net.forward_future(v)
        p, _ = plain.forward_future(v)
        # frame t is predicted as frame t - 1 plus the decoder's output for t - 1
        assert torch.allclose(r[:, :, 1:], p[:, :, 1:] + v[:, :, :-1], atol=1e-6)
        # a decoder that predicts no change gives the frame difference as the error
        net.backbone.decode = lambda tokens, *a, **k: torch.zeros_like(v)
        err, _ = net.analyse(v)
    assert torch.allclose(err[:, :, 1:], (v[:, :, 1:] - v[:, :, :-1]) ** 2, atol=1e-6)
    assert torch.allclose(err[:, :, 0], err[:, :, 1])  # the first frame takes the first error
    with pytest.raises(ValueError, match="future objective"):
        STTransformerNet(objective="masked", residual=True, **NET)


@pytest.mark.parametrize("backbone,objective", COMBOS)
def test_scoring_is_deterministic_and_batch_independent(backbone, objective):
    m = tiny_model(backbone, objective, ef_weight=1.0, edes_weight=1.0).eval()
    batch = echo_batch(2)
    m._remember(batch)
    m.refresh_bank()
    with torch.no_grad():
        a = m.score_frames(batch)
        b = m.score_frames(batch)
        single = m.score_frames({k: v[:1] for k, v in batch.items()})
    assert set(a) == {"score", "recon_err", "embed_dist", "edes", "ef"}
    for k in a:
        assert a[k].shape == (2, 16) and torch.isfinite(a[k]).all()
        assert torch.equal(a[k], b[k]), k
        assert torch.allclose(a[k][:1], single[k], atol=1e-4), k
    emb = m.embed_frames(batch["video"])
    assert emb.shape == (2, 16, 32)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2, 16), atol=1e-5)
    assert m.predict_ef(batch["video"]).shape == (2,)


@pytest.mark.parametrize("objective", ["masked", "future"])
def test_overfits_one_clip(objective):
    torch.manual_seed(0)
    m = tiny_model("factorised", objective, warmup_steps=1)
    batch = echo_batch(1)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = float(m.losses(batch)["loss"].detach())
    for _ in range(60):
        loss = m.losses(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        last = float(m.losses(batch)["loss"])
    assert last < 0.3 * first, (first, last)


def test_supervised_losses_masked_by_finite_targets():
    m = tiny_model(ef_weight=1.0, edes_weight=1.0)
    batch = echo_batch(2)
    batch["ef"] = torch.tensor([float("nan"), 60.0])
    batch["ed_es"][0] = float("nan")
    terms = m.losses(batch)
    assert all(torch.isfinite(v) for v in terms.values())
    # with no known target at all the head losses are exactly zero but keep a graph
    batch["ef"][:] = float("nan")
    batch["ed_es"][:] = float("nan")
    terms = m.losses(batch)
    assert float(terms["ef"]) == 0.0 and float(terms["edes"]) == 0.0
    terms["loss"].backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in m.parameters())
    assert (
        m.net.ef_head[1].weight.grad is None
        or float(m.net.ef_head[1].weight.grad.abs().sum()) == 0.0
    )


def test_anomalous_segment_scores_higher_after_short_training():
    torch.manual_seed(0)
    m = tiny_model("factorised", "masked", warmup_steps=10, embed_k=3, error_weight=0.5)
    vids = torch.stack([make_echo(s, n_frames=32, size=32).video for s in range(6)])
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(120):
        idx = torch.randint(0, 6, (4,), generator=g).tolist()
        st = torch.randint(0, 17, (4,), generator=g).tolist()
        clip = torch.stack([vids[j, :, s : s + 16] for j, s in zip(idx, st)])
        loss = m.losses({"video": clip})["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    m.refresh_bank(torch.cat([vids[:, :, :16], vids[:, :, 16:]]), [str(i) for i in range(6)] * 2)
    test = make_echo(100, n_frames=16, size=32).video.clone()
    test[:, 5:11, 12:20, 8:16] = 1.0  # a bright block in frames 5-10
    with torch.no_grad():
        out = m.components(test[None])
    inside = torch.zeros(16, dtype=torch.bool)
    inside[5:11] = True
    for key in ("score", "recon_err", "embed_dist"):
        s = out[key][0]
        margin = (s[inside].mean() - s[~inside].mean()) / s[~inside].std()
        assert margin > 3.0, (key, float(margin))


def test_checkpoint_keeps_bank_and_calibration(tmp_path):
    from data_modules.synthetic import SyntheticEchoDataModule

    pl.seed_everything(0)
    dm = SyntheticEchoDataModule(
        n_train=2, n_val=2, n_test=1, n_frames=24, clip_len=16, image_size=32, batch_size=2,
        samples_per_video=2, anomalies=["dropout"],
    )  # fmt: skip
    m = tiny_model(ef_weight=1.0, edes_weight=0.5, bank_size=64, bank_clips=4)
    ckpt_cb = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="m", save_last=False)
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[ckpt_cb],
    )  # fmt: skip
    trainer.fit(m, datamodule=dm)
    assert int(m.bank_count) == 4 * 16 and m.calibrator.fitted
    for k in ("val/loss", "val/ef_mae", "val/ef_rmse", "val/ed_afd", "val/es_afd"):
        assert k in trainer.callback_metrics, k
    path = tmp_path / "m.ckpt"
    raw = torch.load(path, weights_only=True, map_location="cpu")
    sd = raw["state_dict"]
    assert int(sd["bank_count"]) == 64 and torch.equal(sd["bank"], m.bank)
    assert int(sd["calibrator.n_ref"]) > 0 and float(sd["err_std"]) != 1.0
    loaded = STTransformerModel.load_from_checkpoint(path, map_location="cpu").eval()
    m.eval()
    batch = echo_batch(1, seed=50, anomaly="dropout", anomaly_span=(4, 10))
    with torch.no_grad():
        a, b = m.score_frames(batch), loaded.score_frames(batch)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert torch.equal(m.calibrator.quantiles, loaded.calibrator.quantiles)


# -- metrics ------------------------------------------------------------------------------
def test_ef_metrics_match_hand_computation():
    pred, true = [50.0, 60.0, 70.0, 40.0], [52.0, 57.0, 70.0, float("nan")]
    m = ef_metrics(pred, true)
    err = np.array([-2.0, 3.0, 0.0])
    y = np.array([52.0, 57.0, 70.0])
    assert m["ef_mae"] == pytest.approx(np.abs(err).mean())
    assert m["ef_rmse"] == pytest.approx(math.sqrt((err**2).mean()))
    assert m["ef_r2"] == pytest.approx(1 - (err**2).sum() / ((y - y.mean()) ** 2).sum())
    assert math.isnan(ef_metrics([1.0], [float("nan")])["ef_mae"])
    assert math.isnan(ef_metrics([1.0], [2.0])["ef_r2"])


def test_ed_es_peak_finding_on_hand_made_signal():
    t = np.arange(60)
    sig = np.cos(2 * np.pi * (t - 7) / 25)  # ED (max) at 7, 32, 57; ES (min) at 19.5, 44.5
    ed, es = find_ed_es(sig, distance=5)
    assert ed.tolist() == [7, 32, 57]
    assert len(es) == 2 and all(abs(a - b) <= 0.5 for a, b in zip(es, [19.5, 44.5]))
    # ripples below the prominence add no peaks
    ed, es = find_ed_es(sig + 0.05 * np.sin(t * 3.0), distance=5)
    assert ed.tolist() == [7, 32, 57] and len(es) == 2
    # an extreme on the first/last frame counts; a clip that merely ends on a slope does not
    ed, es = find_ed_es(np.cos(2 * np.pi * t[:20] / 40))
    assert ed.tolist() == [0] and es.tolist() == [19]
    ed, es = find_ed_es(np.cos(2 * np.pi * (t[:22] - 10) / 40), fallback=False)
    assert ed.tolist() == [10] and es.tolist() == []
    assert afd([8, 30], [7, 32, 57]) == pytest.approx((1 + 2 + 27) / 3)
    target = np.full(60, np.nan)
    target[[7, 32, 57]] = 1.0
    target[[20, 45]] = -1.0
    assert [x.tolist() for x in true_ed_es(target)] == [[7, 32, 57], [20, 45]]
    shifted = np.cos(2 * np.pi * (t - 9) / 25)  # predicted 2 frames late
    m = ed_es_afd([shifted], [target])
    assert m["ed_afd"] == pytest.approx(2.0) and m["es_afd"] == pytest.approx(1.5, abs=0.5)


@pytest.mark.parametrize("objective", ["masked", "future"])
def test_ef_and_edes_heads_learn(objective):
    torch.manual_seed(0)
    m = tiny_model(objective=objective, ef_weight=1.0, edes_weight=1.0, warmup_steps=1)
    batch = echo_batch(2)
    batch["ef"] = torch.tensor([30.0, 80.0])  # far apart: the head must tell the clips apart
    ef_err0 = float((m.predict_ef(batch["video"]) - batch["ef"]).abs().mean())
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for _ in range(80):
        loss = m.losses(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    pred = m.predict_edes(batch["video"])
    true = batch["ed_es"]
    assert float(((pred - true) ** 2).mean()) < 0.25
    assert float(torch.corrcoef(torch.stack((pred.flatten(), true.flatten())))[0, 1]) > 0.9
    ef = m.predict_ef(batch["video"])
    assert ef[1] - ef[0] > 5.0  # the clips are told apart in the right order
    if objective == "future":  # (masked: every step sees another quarter of the patches, noisier)
        assert float((ef - batch["ef"]).abs().mean()) < 0.5 * ef_err0
