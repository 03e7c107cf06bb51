"""Restoration adapters of real models (video diffusion, masked / future spatiotemporal
transformer) on tiny untrained models, and the benchmark script end to end on checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch

from seqnrl.callbacks.normative_eval import (
    clip_length,
    evaluate_restorations,
    feature_fn,
    over_windows,
    restoration_fn,
    run_batched,
)
from seqnrl.data.synthetic_echo import restoration_set
from seqnrl.models.st_transformer.module import STTransformerModel
from seqnrl.models.video_diffusion.module import VideoDiffusionModel
from tests.conftest import run_script

torch.set_num_threads(1)

SIZE, T = 16, 8
DIFF = dict(image_size=SIZE, clip_len=T, base_channels=8, channel_mults=(1, 2), attn_levels=(1,), heads=2,
            dim_head=8, emb_dim=32, ema_decay=0.0, recon_steps=6)  # fmt: skip
ST = dict(image_size=SIZE, clip_len=T, patch_size=4, dim=16, depth=1, heads=2, decoder_dim=16, bank_size=8,
          bank_clips=2, eval_masks=4, mask_ratio=0.75)  # fmt: skip


def _randomise(m: torch.nn.Module, scale: float = 0.05) -> torch.nn.Module:
    """Perturb every weight (zero-initialised output layers would make outputs constant)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return m.eval()


@pytest.fixture(scope="module")
def diffusion():
    return _randomise(VideoDiffusionModel(**DIFF))


@pytest.fixture(scope="module")
def st_masked():
    return _randomise(STTransformerModel(objective="masked", **ST))


@pytest.fixture(scope="module")
def st_future():
    return _randomise(STTransformerModel(objective="future", **ST))


def _video(b: int = 2, t: int = T, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 1, t, size, size, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- adapters
def test_diffusion_restoration_shape_range_determinism_and_noise_level(diffusion):
    v = _video()
    # levels snap to the DDIM grid of ``steps`` over the schedule: a fine grid for a low level
    low, high = (
        restoration_fn(diffusion, noise_level=0.02, steps=50),
        restoration_fn(diffusion, noise_level=0.9),
    )
    r = low(v)
    assert r.shape == v.shape and r.dtype == torch.float32 and r.device.type == "cpu"
    assert torch.isfinite(r).all() and r.min() >= 0 and r.max() <= 1
    assert torch.equal(r, low(v))  # deterministic (seeded noise)
    # the noise level is honoured: little noise keeps the input, much noise replaces it
    d_low, d_high = (low(v) - v).abs().mean(), (high(v) - v).abs().mean()
    assert d_low < 0.05 < d_high and d_low < d_high / 3
    # batch-independent: a clip restores the same alone or with others
    assert torch.allclose(low(v[:1]), r[:1], atol=1e-5)


def test_long_clips_are_restored_in_windows(diffusion, st_masked):
    v = _video(b=1, t=T + 5)
    for m in (diffusion, st_masked):
        assert clip_length(m) == T
        r = restoration_fn(m, noise_level=0.3)(v)
        assert r.shape == v.shape and torch.isfinite(r).all()
    # windows overlap by half and every frame is averaged over the windows holding it
    seen = []
    out = over_windows(lambda w: (seen.append(w.shape[2]), w * 0 + 1)[1], v, 4, time_dim=2)
    assert set(seen) == {4} and torch.allclose(out, torch.ones_like(v))


def test_st_masked_restoration_never_sees_the_pixel_it_predicts(st_masked):
    fn = restoration_fn(st_masked)
    v = _video(b=1)
    r = fn(v)
    assert r.shape == v.shape and torch.isfinite(r).all() and 0 <= r.min() and r.max() <= 1
    assert (r - v).abs().mean() > 1e-3  # not an identity
    # change one patch (a tube through every frame): its own restoration must not move,
    # other patches' (which see it through the masks where it is visible) do
    v2 = v.clone()
    v2[..., 4:8, 8:12] = 1.0 - v2[..., 4:8, 8:12]
    r2 = fn(v2)
    assert torch.allclose(r2[..., 4:8, 8:12], r[..., 4:8, 8:12], atol=1e-5)
    assert not torch.allclose(r2, r, atol=1e-4)


def test_st_future_restoration_is_causal_and_copies_the_first_frame(st_future):
    fn = restoration_fn(st_future)
    v = _video(b=1)
    r = fn(v)
    assert r.shape == v.shape and torch.isfinite(r).all()
    assert torch.allclose(r[:, :, 0], v[:, :, 0])
    v2 = v.clone()
    v2[:, :, 5:] = 1.0 - v2[:, :, 5:]
    r2 = fn(v2)
    assert torch.allclose(r2[:, :, 1:6], r[:, :, 1:6], atol=1e-5)  # frame t from frames < t only
    assert not torch.allclose(r2[:, :, 6:], r[:, :, 6:], atol=1e-4)


def test_st_frames_of_another_size_are_resized(st_masked):
    v = _video(b=1, size=24)
    r = restoration_fn(st_masked)(v)
    f = feature_fn(st_masked)(v)
    assert r.shape == v.shape and torch.isfinite(r).all()
    assert f.shape == (1, T, ST["dim"]) and torch.isfinite(f).all()


def test_features_and_non_restoring_models(diffusion, st_masked):
    assert feature_fn(diffusion) is None  # no normative encoder: pixel features are used
    f = feature_fn(st_masked)(_video(b=2, t=T + 3))
    assert f.shape == (2, T + 3, ST["dim"]) and torch.isfinite(f).all()
    assert restoration_fn(torch.nn.Linear(2, 2)) is None


# ----------------------------------------------------------------------------- benchmark
def test_evaluate_rows_and_per_clip_tables(st_masked):
    d = restoration_set(3, 2, 3, n_frames=T, size=SIZE)
    fn = restoration_fn(st_masked)
    restored = (run_batched(fn, d["normal"], 2), run_batched(fn, d["anomalous"], 2))
    row, det = evaluate_restorations("st_masked", restored, d, feature_fn(st_masked))
    for k in ("rqi", "ssim", "mae", "perceptual", "ahi", "ahi_pixel", "fd_restored", "fd_unrestored",
              "conservation", "correction", "caci", "fidelity", "frame_auroc_micro", "frame_ap"):  # fmt: skip
        assert math.isfinite(row[k]), k
    assert 0 < row["mae"] and row["rqi"] < 1 and row["perceptual"] > 0
    assert row["ahi_ratio"] == pytest.approx(row["fd_restored"] / row["fd_unrestored"])
    assert [r["clip"] for r in det["rqi"]] == d["normal_ids"]
    assert [r["clip"] for r in det["caci"]] == [r["clip"] for r in det["ahi"]] == d["ids"]
    # the identity through the same code: perfect RQI, nothing corrected
    row_id, _ = evaluate_restorations("identity", (d["normal"].clone(), d["anomalous"].clone()), d, None)
    assert (
        row_id["rqi"] == pytest.approx(1.0)
        and row_id["correction"] == 0.0
        and row_id["ahi"] == pytest.approx(0.0)
    )


def _save_ckpt(model, path):
    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return str(path)


def test_script_end_to_end_on_checkpoints(tmp_path, diffusion, st_masked):
    d_ck = _save_ckpt(diffusion, tmp_path / "diff.ckpt")
    s_ck = _save_ckpt(st_masked, tmp_path / "st.ckpt")
    run_script("bench/normative_eval.py", "--echo-ckpt", d_ck, "--echo-ckpt", s_ck, "--size", SIZE, "--frames", T,
               "--n-train", "3", "--n-normal", "2", "--n-anomalous", "3", "--noise-levels", "0.2", "0.5",
               "--out", tmp_path, "--name", "ne", "--no-figure")  # fmt: skip
    saved = json.loads((tmp_path / "ne.json").read_text())
    res = saved
    assert saved["command"].startswith("python scripts/bench/normative_eval.py --echo-ckpt")
    models = [r["model"] for r in saved["table"]]
    assert models == ["identity", "blur", "oracle", "diffusion@0.20", "diffusion@0.50", "st_masked"]
    assert "st_masked.embed_frames" in saved["features"]["synthetic_echo"]
    for r in res["rows_full"]:
        assert all(
            math.isfinite(r[k]) for k in ("rqi", "ahi", "ahi_pixel", "caci", "frame_auroc_micro")
        ), r
    diff = {r["model"]: r for r in res["rows_full"]}
    assert diff["diffusion@0.20"]["mae"] < diff["diffusion@0.50"]["mae"]  # more noise, more change
    assert len(saved["per_clip"]["synthetic_echo"]["st_masked"]["caci"]) == 3
    assert (tmp_path / "ne.md").read_text().count("diffusion@") == 2
