"""Shape-template pose model: exact affine warping, keypoints read off part transforms,
templates as data, COCO export, overlays and a short seeded training on rendered motion."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from seqnrl.errors import ConfigError, KeypointError
from seqnrl.models.pose import warp
from seqnrl.models.pose.net import (
    ShapeTemplateNet,
    TemplateParts,
    ms_ssim,
    reconstruction_loss,
    ssim,
)
from seqnrl.models.pose.templates import BUILTIN, load_template, template_from_dict

torch.set_num_threads(1)


def _rot(deg: float, about=(0.0, 0.0)) -> torch.Tensor:
    """Affine rotating by ``deg`` about the point ``about``."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    lin = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    p = torch.tensor(about, dtype=torch.float64)
    return torch.cat([lin, (p - lin @ p)[:, None]], dim=1)


# -- warping -------------------------------------------------------------------------------
def test_affine_algebra_exact():
    g = torch.Generator().manual_seed(0)
    a = torch.eye(2, 3, dtype=torch.float64) + 0.3 * torch.randn(5, 2, 3, generator=g, dtype=torch.float64)
    b = torch.eye(2, 3, dtype=torch.float64) + 0.3 * torch.randn(5, 2, 3, generator=g, dtype=torch.float64)
    pts = torch.randn(5, 7, 2, generator=g, dtype=torch.float64)
    ab = warp.compose(a, b)
    torch.testing.assert_close(warp.apply_points(ab, pts), warp.apply_points(a, warp.apply_points(b, pts)))
    torch.testing.assert_close(warp.compose(a, warp.invert(a)), warp.identity(5, dtype=torch.float64))
    # a known transform: rotate (1, 0) by 90 degrees about (0, 0) -> (0, 1); shift by (0.5, -0.25)
    r = _rot(90.0)
    r[:, 2] += torch.tensor([0.5, -0.25], dtype=torch.float64)
    out = warp.apply_points(r, torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.75], [0.5, -0.25]], dtype=torch.float64))


def test_gaussian_warp_exact_on_known_transforms():
    mean = torch.tensor([0.1, -0.2], dtype=torch.float64)
    cov = torch.diag(torch.tensor([0.04, 0.01], dtype=torch.float64))
    # translation: same blob, moved; rendered images identical to rendering the moved blob
    t = torch.tensor([[1.0, 0.0, 0.25], [0.0, 1.0, -0.5]], dtype=torch.float64)
    m2, c2 = warp.warp_gaussians(t, mean, cov)
    torch.testing.assert_close(m2, mean + torch.tensor([0.25, -0.5], dtype=torch.float64))
    torch.testing.assert_close(c2, cov)
    # 90-degree rotation about the blob centre swaps its axes; scaling by 2 multiplies cov by 4
    m3, c3 = warp.warp_gaussians(_rot(90.0, about=mean.tolist()), mean, cov)
    torch.testing.assert_close(m3, mean)
    torch.testing.assert_close(c3, torch.diag(torch.tensor([0.01, 0.04], dtype=torch.float64)))
    s = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(warp.warp_gaussians(s, mean, cov)[1], 4 * cov)
    # the peak of a rendered blob sits at the pixel of the transformed mean
    img = warp.render_gaussians(m2.float(), c2.float(), (32, 32))
    iy, ix = divmod(int(img.argmax()), 32)
    centre = warp.pixel_grid(32, 32)[iy, ix]
    assert (centre - m2.float()).abs().max() <= 1 / 32 + 1e-6


def test_image_warp_matches_analytic_gaussian_warp():
    size = (64, 64)
    mean = torch.tensor([[0.0, 0.1]])
    cov = torch.tensor([[[0.05, 0.01], [0.01, 0.02]]])
    canon = warp.render_gaussians(mean, cov, size)[None]  # (1, 1, H, W)
    a = (_rot(25.0, about=(0.1, 0.0)) @ torch.tensor([[0.8, 0.2, 0.0], [0.0, 1.1, 0.0], [0, 0, 1]], dtype=torch.float64)).float()[None]
    a[..., 2] += torch.tensor([0.1, -0.15])
    resampled = warp.warp_image(canon, a)[0, 0]
    analytic = warp.render_gaussians(*warp.warp_gaussians(a[0], mean[0], cov[0]), size)
    assert (resampled - analytic).abs().max() < 0.02
    # an exact whole-pixel shift is exact up to float rounding
    shift = torch.tensor([[[1.0, 0.0, 4 / 64], [0.0, 1.0, 0.0]]])  # two pixels to the right
    moved = warp.warp_image(canon, shift)[0, 0]
    torch.testing.assert_close(moved[:, 2:], canon[0, 0, :, :-2], atol=1e-5, rtol=0)
    # and a wrong transform is clearly detected
    assert (warp.warp_image(canon, a)[0, 0] - canon[0, 0]).abs().max() > 0.3


# -- keypoints from part transforms --------------------------------------------------------
ARM = {
    "name": "arm",
    "joints": {
        "shoulder": [0.25, 0.5, ["upper"]],
        "elbow": [0.5, 0.5, ["upper", "fore"]],
        "wrist": [0.75, 0.5, ["fore"]],
    },
    "parts": {"upper": ["shoulder", "elbow", 0.05], "fore": ["elbow", "wrist", 0.05]},
}


def test_keypoints_from_hand_built_pose():
    parts = TemplateParts(template_from_dict(ARM)).double()
    # canonical coordinates [-1, 1]: shoulder (-0.5, 0), elbow (0, 0), wrist (0.5, 0)
    eye = warp.identity(dtype=torch.float64)
    bend = _rot(90.0, about=(0.0, 0.0))  # forearm rotated about the elbow: wrist -> (0, 0.5)
    aff = torch.stack([eye, bend])[None]  # (1, K=2, 2, 3)
    kp = parts.keypoints(aff)[0]
    torch.testing.assert_close(kp, torch.tensor([[-0.5, 0.0], [0.0, 0.0], [0.0, 0.5]], dtype=torch.float64))
    assert float(parts.anchor_loss(aff)) == pytest.approx(0.0, abs=1e-12)
    # lift the whole arm by 0.2: every keypoint moves, anchors still agree
    up = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, -0.2]], dtype=torch.float64)
    kp2 = parts.keypoints(warp.compose(up, aff))[0]
    torch.testing.assert_close(kp2, kp + torch.tensor([0.0, -0.2], dtype=torch.float64))
    # detach the forearm by 0.1: the elbow is the midpoint and the anchor loss is 0.1 ** 2
    off = bend.clone()
    off[0, 2] += 0.1
    aff3 = torch.stack([eye, off])[None]
    kp3 = parts.keypoints(aff3)[0]
    torch.testing.assert_close(kp3[1], torch.tensor([0.05, 0.0], dtype=torch.float64))
    assert float(parts.anchor_loss(aff3)) == pytest.approx(0.01)
    # boundary loss: zero inside, positive once a part leaves the frame
    assert float(parts.boundary_loss(aff)) == 0.0
    far = aff.clone()
    far[..., 0, 2] += 1.5
    assert float(parts.boundary_loss(far)) > 0.1


def test_untrained_net_returns_the_template():
    tmpl = load_template("adult")
    net = ShapeTemplateNet(tmpl, in_channels=1, regressor_width=8, translator_width=8)
    frames = torch.rand(3, 1, 32, 32)
    kp = net.keypoints(frames)
    expect = torch.tensor([j.position for j in tmpl.joints])
    torch.testing.assert_close(kp, expect.expand(3, -1, -1))
    out = net(frames, frames.flip(0))
    assert out["recon"].shape == frames.shape and out["heatmaps"].shape == (3, tmpl.n_parts, 32, 32)


def test_templates_are_data():
    for name in BUILTIN:
        t = load_template(name)
        assert t.n_parts == 10 and t.n_joints == 15 and len(t.connections()) == 9
        assert template_from_dict(t.to_dict()) == t
    with pytest.raises(ConfigError, match="unknown joint"):
        template_from_dict({"joints": {"a": [0, 0, ["p"]]}, "parts": {"p": ["a", "zz", 0.1]}})
    with pytest.raises(ConfigError, match="not one of"):
        load_template("no-such-template")


def test_ssim_losses():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 32, 32, generator=g)
    assert torch.allclose(ssim(x, x), torch.ones(2))
    assert torch.allclose(ms_ssim(x, x), torch.ones(2))
    noisy = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert float(reconstruction_loss(noisy, x)) > float(reconstruction_loss(x, x)) + 0.1


# -- export and overlays -------------------------------------------------------------------
def test_coco_export_roundtrip(tmp_path):
    from seqnrl.io.keypoints_json import read_coco_keypoints, write_coco_keypoints

    kp = np.random.default_rng(0).uniform(0.1, 0.9, size=(4, 3, 2))
    kp[2, 1] = np.nan
    path = write_coco_keypoints(tmp_path / "kp.json", {"vid": kp}, (32, 64), ["a", "b", "c"], [(0, 1), (1, 2)], fps=10.0)
    doc = json.loads(path.read_text())
    assert doc["categories"][0]["skeleton"] == [[1, 2], [2, 3]]
    ann = doc["annotations"][2]
    assert ann["num_keypoints"] == 2 and ann["keypoints"][3:6] == [0.0, 0.0, 0]
    assert ann["keypoints"][0] == pytest.approx(round(kp[2, 0, 0] * 64, 3))
    assert doc["images"][3]["time_s"] == pytest.approx(0.3)
    back = read_coco_keypoints(path, normalised=True)
    np.testing.assert_allclose(back["videos"]["vid"]["keypoints"], kp, atol=1e-4)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(KeypointError, match="bad.json"):
        read_coco_keypoints(tmp_path / "bad.json")


def test_skeleton_overlay(tmp_path):
    from seqnrl.viz_pose import SkeletonLayer, draw_skeletons, save_overlay_grid

    frames = torch.zeros(1, 2, 16, 16)
    kp = np.array([[[0.25, 0.5], [0.75, 0.5]]] * 2)
    kp[1, 1] = np.nan
    out = draw_skeletons(frames, [SkeletonLayer(kp, [(0, 1)], color=(1.0, 0.0, 0.0))], scale=4)
    assert out.shape == (3, 2, 64, 64) and out.dtype == torch.uint8
    assert out[0, 0, 32, 32] == 255 and out[1, 0, 32, 32] == 0  # on the red bone
    assert out[0, 1, 32, 32] == 0  # the bone to a missing joint is not drawn
    assert out[:, 0, 5, 5].sum() == 0
    png = save_overlay_grid(tmp_path / "grid.png", frames, [SkeletonLayer(kp, [(0, 1)])], n=2, cols=2, scale=2)
    assert png.stat().st_size > 0


# -- short training ------------------------------------------------------------------------
def test_short_training_lowers_reconstruction_and_improves_pck():
    """20 seeded steps on rendered synthetic walking (32 x 32): the reconstruction loss drops
    and the linear probe (fit on the first half of each video, tested on the second half)
    beats the untrained model, whose keypoints are the constant template."""
    from data_modules.synthetic_motion import SyntheticMotionDataModule
    from seqnrl.metrics import pose as pm
    from seqnrl.models.pose import PoseTemplateModel

    dm = SyntheticMotionDataModule(n_train=4, n_frames=48, render=True, image_size=32, clip_len=8, seed=0)
    ds = dm.dataset("train")
    video = torch.stack([ds.video(i) for i in range(4)]).float() / 255  # (4, 1, 48, 32, 32)
    truth = torch.stack([s.keypoints for s in ds.sequences]).numpy()  # (4, 48, 16, 2)
    torch.manual_seed(0)
    model = PoseTemplateModel(template="adult", regressor_width=8, translator_width=8, pairs_per_clip=2, lr=3e-3)
    fixed = model.sample_pairs(video, torch.Generator().manual_seed(5))

    def recon() -> float:
        with torch.no_grad():
            return float(model.pair_losses(*fixed)["recon"])

    def probe() -> tuple[np.ndarray, np.ndarray]:
        kp = model.predict_keypoints(video).numpy()
        j = kp.shape[2]
        w = pm.fit_linear_map(kp[:, :24].reshape(-1, j, 2), truth[:, :24].reshape(-1, 16, 2))
        return pm.apply_linear_map(kp[:, 24:].reshape(-1, j, 2), w), truth[:, 24:].reshape(-1, 16, 2)

    rec0, (pred0, gt) = recon(), probe()
    g = torch.Generator().manual_seed(0)
    opt = model.configure_optimizers()
    model.train()
    for _ in range(20):
        idx = torch.randint(4, (4,), generator=g)
        start = int(torch.randint(48 - 8 + 1, (1,), generator=g))
        target, source = model.sample_pairs(video[idx][:, :, start : start + 8], g)
        loss = model.pair_losses(target, source)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    rec1, (pred1, _) = recon(), probe()
    assert rec1 < 0.5 * rec0, (rec0, rec1)
    err0 = np.linalg.norm(pred0 - gt, axis=-1).mean()
    err1 = np.linalg.norm(pred1 - gt, axis=-1).mean()
    assert err1 < 0.6 * err0, (err0, err1)
    if pm.mmpose_available():
        pck0, pck1 = pm.pck(pred0, gt, 0.05)["mean"], pm.pck(pred1, gt, 0.05)["mean"]
        assert pck1 > pck0 + 0.2, (pck0, pck1)
