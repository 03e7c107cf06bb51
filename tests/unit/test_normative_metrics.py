"""Normative-learning metrics (RQI, AHI, CACI) and the artefact injector, on tiny tensors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from seqnrl.data.synthetic_echo import ANOMALIES, make_echo
from seqnrl.metrics import normative as N
from seqnrl.metrics.generation import frechet_distance

torch.set_num_threads(1)
KW = {"n_frames": 12, "size": 32}


def _blur(v: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    k = int(math.ceil(3 * sigma))
    ax = torch.arange(-k, k + 1, dtype=torch.float32)
    w = torch.exp(-(ax**2) / (2 * sigma**2))
    w = (w / w.sum()).view(1, 1, 1, -1)
    b, c, t, h, wd = v.shape
    y = v.reshape(-1, 1, h, wd)
    y = torch.nn.functional.conv2d(torch.nn.functional.pad(y, (k, k, 0, 0), mode="replicate"), w)
    y = torch.nn.functional.conv2d(
        torch.nn.functional.pad(y, (0, 0, k, k), mode="replicate"), w.transpose(-1, -2)
    )
    return y.reshape(b, c, t, h, wd)


@pytest.fixture(scope="module")
def echo():
    train = torch.stack([make_echo(100 + i, **KW).video for i in range(8)])
    normal = torch.stack([make_echo(200 + i, **KW).video for i in range(3)])
    anom = [make_echo(i, anomaly=a, **KW) for i, a in enumerate(ANOMALIES)]
    healthy = torch.stack([make_echo(i, **KW).video for i in range(len(ANOMALIES))])
    x = torch.stack([e.video for e in anom])
    m = torch.stack([e.pixel_mask for e in anom])
    return {"train": train, "normal": normal, "x": x, "mask": m, "healthy": healthy}


# ----------------------------------------------------------------------------- synthetic
def test_identity_is_perfect_rqi_and_corrects_nothing(echo):
    r = N.rqi(echo["normal"], echo["normal"].clone(), features=N.pixel_features)
    assert r["rqi"] == pytest.approx(1.0, abs=1e-5)
    assert r["mae"] == 0.0 and r["perceptual"] == pytest.approx(0.0, abs=1e-6)
    assert len(r["table"]) == 3 and {"clip", "mae", "ssim", "perceptual", "rqi"} <= set(
        r["table"][0]
    )
    c = N.caci(echo["x"], echo["x"].clone(), echo["mask"], reference=echo["healthy"])
    assert c["correction"] == 0.0 and c["conservation"] == 1.0 and c["caci"] == 0.0
    h = N.ahi(echo["x"].clone(), echo["x"], echo["train"])
    assert h["ahi"] == pytest.approx(0.0, abs=1e-9) and h["frame_ratio"] == pytest.approx(1.0)


def test_oracle_restoration_high_caci_and_better_ahi(echo):
    x, m = echo["x"], echo["mask"]
    oracle = x * (1 - m) + echo["healthy"] * m
    c = N.caci(x, oracle, m, reference=echo["healthy"])
    assert c["caci"] > 0.95 and c["fidelity"] > 0.95
    h = N.ahi(oracle, x, echo["train"])
    assert h["frame_d_restored"] < h["frame_d_unrestored"] and h["ahi"] > 0
    # the identity is worse on CACI than the oracle by the whole correction term
    assert N.caci(x, x, m, reference=echo["healthy"])["caci"] < c["caci"] - 0.9


def test_oracle_on_injected_artefacts_improves_ahi(echo):
    """A strong artefact moves clips off the normal distribution; undoing it moves them back."""
    pairs = [
        N.inject_artefact(v, "bright_blob", seed=i, strength=0.8)
        for i, v in enumerate(echo["normal"])
    ]
    x = torch.stack([p[0] for p in pairs])
    m = torch.stack([p[1] for p in pairs])
    h = N.ahi(echo["normal"], x, echo["train"])
    assert h["ahi"] > 0.3 and h["clip_ahi"] > 0
    assert N.caci(x, echo["normal"], m, reference=echo["normal"])["caci"] > 0.9


def test_blur_has_poor_rqi(echo):
    r = N.rqi(echo["normal"], _blur(echo["normal"]))
    assert r["rqi"] < 0.8 and r["ssim"] < 0.8 and r["mae"] > 0.01
    c = N.caci(echo["x"], _blur(echo["x"]), echo["mask"], reference=echo["healthy"])
    assert (
        c["conservation"] < 0.8 and c["fidelity"] < 0.5
    )  # changes healthy pixels, not towards the truth


# ----------------------------------------------------------------------------- hand-computed
def test_mae_and_ssim_constant_frames():
    x = torch.full((1, 1, 2, 16, 16), 0.5)
    y = torch.full((1, 1, 2, 16, 16), 0.6)
    assert N.per_frame_mae(x, y).flatten().tolist() == pytest.approx([0.1, 0.1])
    c1 = (0.01 * 1.0) ** 2  # constant images: SSIM is the luminance term only
    want = (2 * 0.5 * 0.6 + c1) / (0.5**2 + 0.6**2 + c1)
    assert N.per_frame_ssim(x, y).flatten().tolist() == pytest.approx([want, want], rel=1e-4)
    r = N.rqi(x, y)
    assert r["rqi"] == pytest.approx(want * 0.9, rel=1e-4)
    assert math.isnan(r["perceptual"])


def test_caci_hand_computed():
    x = torch.zeros(1, 1, 1, 2, 2)
    x[..., 0, 0] = 1.0  # one anomalous pixel, contrast 1 against the healthy truth (0)
    m = torch.zeros(1, 1, 1, 2, 2)
    m[..., 0, 0] = 1.0
    ref = torch.zeros_like(x)
    y = torch.tensor([[0.4, 0.1], [0.0, 0.2]]).view(1, 1, 1, 2, 2)
    c = N.caci(x, y, m, reference=ref)
    row = c["table"][0]
    assert row["scale"] == pytest.approx(1.0)
    assert row["anomalous_change"] == pytest.approx(0.6)  # |1 - 0.4|
    assert row["healthy_change"] == pytest.approx(0.1)  # mean(0.1, 0, 0.2)
    assert row["conservation"] == pytest.approx(0.9) and row["correction"] == pytest.approx(0.6)
    assert row["caci"] == pytest.approx(2 * 0.9 * 0.6 / 1.5)
    assert row["fidelity"] == pytest.approx(0.6)  # 1 - |0.4 - 0| / 1
    # without a reference the fixed scale is the unit; a region hides the pixel (1, 1)
    region = torch.tensor([[True, True], [True, False]])
    c2 = N.caci(x, y, m, scale=0.5, region=region)["table"][0]
    assert c2["healthy_change"] == pytest.approx(0.05) and c2["conservation"] == pytest.approx(0.9)
    assert c2["correction"] == 1.0  # 0.6 / 0.5 clipped
    with pytest.raises(ValueError):
        N.caci(x, y, m)


def test_caci_empty_mask_left_out_of_means():
    x = torch.rand(2, 1, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    m = torch.zeros_like(x)
    m[0, :, 0, :2, :2] = 1
    assert math.isnan(N.caci(x, x * 0.5, m, reference=x * 0.5)["table"][1]["conservation"])
    c = N.caci(x, x * 0.5, m, reference=x * 0.5, scale=1.0)
    assert c["table"][1]["conservation"] == pytest.approx(1 - float((x[1] * 0.5).mean()), rel=1e-5)
    assert math.isnan(c["table"][1]["correction"]) and math.isfinite(c["table"][1]["conservation"])
    assert c["correction"] == pytest.approx(c["table"][0]["correction"])


def test_ahi_matches_hand_computed_1d_frechet():
    # features = the frame's mean intensity (1-D); Frechet = (mu1 - mu2)^2 + (s1 - s2)^2
    def mean_feat(v):
        return v.mean(dim=(1, 3, 4)).unsqueeze(-1)

    def clips(values):
        return (
            torch.tensor(values, dtype=torch.float32)
            .view(len(values), 1, -1, 1, 1)
            .expand(-1, -1, -1, 2, 2)
        )

    normal = clips([[0.0, 1.0], [0.0, 1.0]])  # frames: mean 0.5, var 1/3 (unbiased)
    unrest = clips([[2.0, 3.0], [2.0, 3.0]])  # same spread, mean 2.5
    rest = clips([[1.0, 2.0], [1.0, 2.0]])  # mean 1.5
    h = N.ahi(rest, unrest, normal, features=mean_feat)
    assert h["frame_d_unrestored"] == pytest.approx(4.0, abs=1e-6)
    assert h["frame_d_restored"] == pytest.approx(1.0, abs=1e-6)
    assert h["ahi"] == pytest.approx(0.75, abs=1e-6) and h["frame_ratio"] == pytest.approx(
        0.25, abs=1e-6
    )
    # the per-clip Frechet uses the repo's implementation
    f_r = mean_feat(rest[:1]).reshape(-1, 1).double().numpy()
    f_n = mean_feat(normal).reshape(-1, 1).double().numpy()
    assert h["table"][0]["d_restored"] == pytest.approx(frechet_distance(f_r, f_n))


def test_perceptual_is_one_minus_cosine():
    x = torch.zeros(1, 1, 1, 1, 2)
    x[..., 0] = 1.0
    y = torch.zeros(1, 1, 1, 1, 2)
    y[..., 1] = 1.0
    feat = lambda v: v.flatten(3).squeeze(1)  # noqa: E731 - (B, T, 2)
    assert N.per_frame_perceptual(x, x, feat).item() == pytest.approx(0.0)
    assert N.per_frame_perceptual(x, y, feat).item() == pytest.approx(1.0)


def test_perceptual_is_exact_for_equal_and_nearly_equal_features():
    g = torch.Generator().manual_seed(0)
    f = torch.nn.functional.normalize(torch.randn(2, 5, 64, generator=g), dim=-1)
    eps = 1e-4 * torch.randn(2, 5, 64, generator=g)
    feats = iter([f, f, f, f + eps])
    d_same = N.per_frame_perceptual(torch.zeros(2), torch.zeros(2), lambda v: next(feats))
    d_near = N.per_frame_perceptual(torch.zeros(2), torch.zeros(2), lambda v: next(feats))
    assert torch.equal(d_same, torch.zeros(2, 5))  # no rounding residue for the identity
    ref = 1 - torch.nn.functional.cosine_similarity(f.double(), (f + eps).double(), dim=-1)
    assert torch.allclose(d_near.double(), ref, rtol=1e-3)  # float32 1 - cos would be noise here
    with pytest.raises(ValueError, match="agree"):
        N.per_frame_perceptual(
            torch.zeros(1), torch.zeros(2), lambda v: torch.zeros(1, 2, 3 + v.numel())
        )


def test_frame_difference_scores_region():
    x = torch.zeros(1, 1, 1, 2, 2)
    y = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 1, 1, 2, 2)
    assert N.frame_difference_scores(x, y).item() == pytest.approx(0.25)
    assert N.frame_difference_scores(x, y, torch.tensor([[1, 1], [0, 0]])).item() == pytest.approx(
        0.5
    )


# ----------------------------------------------------------------------------- artefacts
@pytest.mark.parametrize("kind", N.ARTEFACTS)
def test_inject_artefact_mask_and_span(kind):
    clip = torch.full((1, 10, 32, 32), 0.5)
    out, mask = N.inject_artefact(clip, kind, seed=3, span=(2, 6))
    assert out.shape == clip.shape and mask.shape == (1, 10, 32, 32)
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and mask.sum() > 0
    frames = mask.flatten(2).amax(-1)[0]
    assert frames.tolist() == [0, 0, 1, 1, 1, 1, 0, 0, 0, 0]
    assert torch.equal(out[:, :2], clip[:, :2]) and torch.equal(out[:, 6:], clip[:, 6:])
    changed = (out - clip).abs()
    assert changed[mask.bool()].min() > 0.05  # every masked pixel visibly changed
    assert (out >= 0).all() and (out <= 1).all()
    sign = 1 if kind == "bright_blob" else -1
    assert (sign * (out - clip)[mask.bool()] > 0).all()
    again, mask2 = N.inject_artefact(clip, kind, seed=3, span=(2, 6))
    assert torch.equal(again, out) and torch.equal(mask2, mask)
    _, mask3 = N.inject_artefact(clip, kind, seed=4)
    assert not torch.equal(mask3, mask)


def test_inject_artefact_rejects_unknown_kind():
    with pytest.raises(ValueError):
        N.inject_artefact(torch.zeros(1, 4, 16, 16), "tumour")


def test_rqi_length_mismatch_raises():
    with pytest.raises(ValueError):
        N.rqi(torch.zeros(2, 1, 2, 16, 16), torch.zeros(1, 1, 2, 16, 16))


def test_script_runs_tiny(tmp_path):
    from tests.conftest import run_script

    run_script("bench/normative_eval.py", "--size", "16", "--frames", "6", "--n-train", "3", "--n-normal", "2",
               "--n-anomalous", "3", "--out", tmp_path)  # fmt: skip
    res = json.loads((tmp_path / "normative_eval.json").read_text())
    rows = {r["model"]: r for r in res["table"]}
    assert set(rows) == {"identity", "blur", "oracle"}
    assert (
        rows["identity"]["rqi"] == pytest.approx(1.0, abs=1e-5) and rows["identity"]["caci"] == 0.0
    )
    assert rows["oracle"]["caci"] > 0.95 and rows["blur"]["rqi"] < rows["identity"]["rqi"]
    assert (tmp_path / "normative_eval.json").is_file() and (
        tmp_path / "normative_eval.md"
    ).is_file()
    assert np.isfinite(rows["oracle"]["frame_auroc_micro"])


def test_ahi_gap_against_the_healthy_floor():
    g = torch.Generator().manual_seed(1)
    feat = lambda v: v.flatten(3).squeeze(1)  # noqa: E731 - (B, T, 2): the pixels are the features
    clip = lambda shift, n=4: torch.randn(n, 1, 50, 1, 2, generator=g) + shift  # noqa: E731
    normal, healthy, patho = clip(0.0, 8), clip(0.0), clip(3.0)
    half, full = patho - 1.5, clip(0.0)  # half-way back, and all the way (fresh normal draws)
    h = N.ahi(half, patho, normal, features=feat, healthy=healthy)
    f = lambda x: x.flatten(3).squeeze(1).reshape(-1, 2).double().numpy()  # noqa: E731
    d_u, d_r, d_h = (frechet_distance(f(x), f(normal), 1e-6) for x in (patho, half, healthy))
    assert h["frame_d_healthy"] == pytest.approx(d_h) and h["frame_d_restored"] == pytest.approx(
        d_r
    )
    assert h["ahi_gap"] == pytest.approx((d_u - d_r) / (d_u - d_h))
    assert 0.6 < h["ahi_gap"] < 0.9  # a mean shift of 3 -> 1.5 removes ~3/4 of the squared distance
    assert N.ahi(full, patho, normal, features=feat, healthy=healthy)["ahi_gap"] == pytest.approx(
        1.0, abs=0.05
    )
    assert N.ahi(patho.clone(), patho, normal, features=feat, healthy=healthy)[
        "ahi_gap"
    ] == pytest.approx(0.0)
    # without healthy clips, or when the pathology is not farther than them: NaN
    assert math.isnan(N.ahi(half, patho, normal, features=feat)["ahi_gap"])
    assert math.isnan(N.ahi(half, healthy, normal, features=feat, healthy=patho)["ahi_gap"])
