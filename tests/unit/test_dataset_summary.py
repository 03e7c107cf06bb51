"""Dataset summarisation: selection on separated clusters, budgets, descriptors, the
downstream comparison and the script end to end on tiny videos."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from seqnrl.dataset_summary.embed import (
    FallbackFrameEncoder,
    collect_items,
    embed_arrays,
    motion_descriptor,
)
from seqnrl.dataset_summary.evaluate import EvalConfig, compare_subsets, group_folds, rank_auroc
from seqnrl.dataset_summary.select import allocate_budget, k_center_greedy, select_subset

SIZES = (14, 9, 20, 6)


def _clusters(seed=0, sizes=SIZES, d=16, spread=0.25):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), d)) * 3.0
    x = np.concatenate([c + spread * rng.normal(size=(n, d)) for c, n in zip(centres, sizes)])
    return x, np.repeat(np.arange(len(sizes)), sizes)


@pytest.mark.parametrize("method", ["louvain", "label_propagation", "greedy_modularity"])
@pytest.mark.parametrize("centrality", ["degree", "closeness", "medoid"])
def test_one_pick_per_separated_cluster(method, centrality):
    x, y = _clusters()
    picks = select_subset(x, 4, community_method=method, centrality=centrality, k=5)
    assert sorted(y[p.index] for p in picks) == [0, 1, 2, 3]
    assert sorted(p.community_size for p in picks) == sorted(SIZES)
    for p in picks:  # the representative is a member of its cluster; radius small
        assert p.source == "community" and 0 <= p.community_radius < 0.5


def test_kcenter_baseline_covers_every_cluster():
    x, y = _clusters(1)
    picks = select_subset(x, 4, method="kcenter")
    assert sorted(y[p.index] for p in picks) == [0, 1, 2, 3]
    assert len(set(k_center_greedy(x, 10))) == 10


def test_budget_below_and_above_the_number_of_communities():
    x, y = _clusters(2)
    two = select_subset(x, 2, k=5)
    assert sorted(y[p.index] for p in two) == [0, 2]  # the two largest clusters
    seven = select_subset(x, 7, k=5)
    idx = [p.index for p in seven]
    assert len(idx) == 7 == len(set(idx))
    assert set(y[idx]) == {0, 1, 2, 3}
    assert {p.source for p in seven} - {"community"}  # some split or k-center picks
    assert sum(p.assigned_size for p in seven) == len(x)
    assert len(select_subset(x[:3], 10)) == 3  # never more than the collection


def test_per_class_and_overall_budgets():
    x, y = _clusters(3)
    labels = np.where(y < 2, "a", "b")
    # Louvain may cut the big homogeneous cluster 2 of class b into pieces that outnumber
    # cluster 3 ("largest" would then keep two of them); "merge" joins similar pieces first
    per = select_subset(x, 2, labels, per_class=True, k=5, overflow="merge")
    assert sorted((p.label, y[p.index]) for p in per) == [("a", 0), ("a", 1), ("b", 2), ("b", 3)]
    overall = select_subset(x, 3, labels, k=5)
    assert len(overall) == 3 and {p.label for p in overall} == {"a", "b"}
    assert allocate_budget({"normal": 26, "covid": 3, "viral": 2, "bact": 1}, 6) == {"normal": 3, "covid": 1, "viral": 1, "bact": 1}
    assert allocate_budget({"a": 3, "b": 1}, 10) == {"a": 3, "b": 1}
    assert allocate_budget({"a": 10, "b": 10, "c": 10}, 2) in ({"a": 1, "b": 1, "c": 0}, {"a": 1, "b": 0, "c": 1}, {"a": 0, "b": 1, "c": 1})


def test_motion_descriptor_speed_and_period():
    fps = 20.0
    static = np.ones((40, 4))
    m = motion_descriptor(static, fps)
    assert np.allclose(m, 0.0)
    t = np.arange(80) / fps
    periodic = np.stack([np.sin(2 * np.pi * t / 0.8), 0.5 * np.sin(2 * np.pi * t / 0.8)], 1)
    m = motion_descriptor(periodic, fps)
    assert m[-1] == pytest.approx(0.4, abs=0.06)  # speed |cos| peaks twice per 0.8 s cycle
    assert m[-2] > 0.3
    assert m[0] == pytest.approx(2 * m[1], rel=1e-5)  # the first feature moves twice as much


def test_embed_synthetic_echo_in_memory():
    from seqnrl.data.synthetic_echo import make_echo

    torch.set_num_threads(1)
    clips = [make_echo(s, n_frames=24, size=32, anomaly="reduced_ef" if s % 2 else None) for s in range(6)]
    emb = embed_arrays([c.video for c in clips], fps=30.0, encoder=FallbackFrameEncoder(dims=8))
    assert emb.X.shape[0] == 6 and np.isfinite(emb.X).all()
    assert emb.info["kind"] == "fallback" and "FALLBACK" in emb.info["description"]
    assert emb.info["appearance_dims"] == 8 and emb.info["motion_dims"] == 8 + 6
    assert all(0 <= v.key_index < 24 and v.thumb.shape == (32, 32) for v in emb.videos)


def test_group_folds_keep_patients_together():
    groups = ["p1"] * 6 + ["p2"] * 6 + [f"s{i}" for i in range(12)]
    y = np.r_[np.zeros(12), np.zeros(8), np.ones(4)]
    folds = group_folds(groups, 4, seed=0, strata=y)
    for g in set(groups):
        assert len(set(folds[np.array(groups) == g])) == 1
    assert all(y[folds == f].sum() == 1 for f in range(4))  # positives spread over folds


def test_rank_auroc():
    assert rank_auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert math.isnan(rank_auroc([1, 2], [0, 0]))


def test_compare_subsets_end_to_end_tiny():
    x, c = _clusters(4, sizes=(12, 12, 10, 10), d=8, spread=0.6)
    y = (c >= 2).astype(float)
    cfg = EvalConfig(budget=2, per_class=True, n_folds=3, seeds=(0, 1), k=5)
    res = compare_subsets(x, y, groups=[f"g{i // 2}" for i in range(len(x))], cfg=cfg)
    arms = res["arms"]
    assert set(arms) == {"summary", "kcenter", "random", "all"}
    assert arms["summary"]["train_size_mean"] == arms["random"]["train_size_mean"] == 4
    assert arms["all"]["train_size_mean"] > 25
    assert len(arms["summary"]["per_seed"]) == 2
    assert arms["all"]["mean"]["auroc"] > 0.9
    # regression: one class, overall budget
    target = x[:, 0] * 2.0 + 0.1 * np.random.default_rng(0).normal(size=len(x))
    reg = compare_subsets(x, target, cfg=EvalConfig(budget=6, per_class=False, task="regression", n_folds=3, seeds=(0,), k=5))
    r = reg["arms"]
    assert r["summary"]["train_size_mean"] == r["random"]["train_size_mean"] == 6
    assert r["all"]["mean"]["r2"] > 0.8 and set(r["all"]["mean"]) == {"mae", "r2"}


def test_script_end_to_end_on_tiny_videos(tmp_path):
    from seqnrl.io import write_video
    from tests.conftest import run_script

    root = tmp_path / "data"
    for label, base in (("normal", 0.2), ("sick", 0.8)):
        (root / label).mkdir(parents=True)
        for i in range(4):
            v = torch.full((1, 8, 32, 32), base) + 0.1 * torch.rand(1, 8, 32, 32) + 0.05 * i
            write_video(root / label / f"{label}{i}.mp4", v.clamp(0, 1), fps=10)
    (root / "sick" / "broken.mp4").write_bytes(b"not a video at all")
    (root / "README.txt").write_text("ignored")
    items, problems = collect_items(root)
    assert len(items) == 9 and not problems and {it.label for it in items} == {"normal", "sick"}

    out = tmp_path / "out"
    rc = run_script("summarise_dataset.py", root, "--budget", "2", "--per-class", "--out", out, "--no-progress",
                    "--k", "3").returncode
    assert rc == 1  # the broken file was reported and skipped
    sel = json.loads((out / "selection.json").read_text())
    assert sel["fallback_features"] and sel["n_items"] == 8
    assert [f["path"].endswith("broken.mp4") for f in sel["failed"]] == [True]
    assert sel["chosen_per_class"] == {"normal": 2, "sick": 2}
    rows = list(csv.DictReader((out / "selection.csv").open()))
    assert len(rows) == 4 and all(r["reason"] for r in rows)
    for name in ("embedding.png", "contact_sheet.png", "embeddings.npz"):
        assert (out / name).stat().st_size > 1000

    # a manifest with a row pointing at a missing file: reported, the rest summarised
    (root / "manifest.csv").write_text(
        "file,label,patient\nnormal/normal0.mp4,normal,p0\nnormal/normal1.mp4,normal,p0\n"
        "sick/sick0.mp4,sick,p1\nsick/missing.mp4,sick,p2\n"
    )
    rc = run_script("summarise_dataset.py", root, "--budget", "2", "--out", tmp_path / "out2", "--no-progress",
                    "--method", "kcenter").returncode
    sel = json.loads((tmp_path / "out2" / "selection.json").read_text())
    assert rc == 1 and sel["n_items"] == 3 and len(sel["picks"]) == 2
    assert any("missing.mp4" in f["path"] for f in sel["failed"])


def test_normative_encoder_follows_the_models_input_spec():
    """The dataset summary embeds at the model's input size, or at the native size of each
    video when the model was trained at native sizes: no size of its own."""
    from seqnrl.data.input_spec import InputSpec
    from seqnrl.dataset_summary.embed import NormativeFrameEncoder, prepare_array
    from seqnrl.models.baseline.module import FrameAutoEncoderModel

    video = torch.rand(1, 10, 40, 56)
    for size, want in ((32, (32, 32)), (None, (40, 56))):
        model = FrameAutoEncoderModel(width=4, depth=2, latent=4, input_spec=InputSpec(clip_len=4, image_size=size))
        enc = NormativeFrameEncoder(model, fps=10.0)
        frames = prepare_array(video, enc)
        assert tuple(frames.shape) == (10, 1, *want)
        feats = enc.encode(frames)
        assert feats.shape[0] == 10 and np.isfinite(feats).all()
        assert ("native size" in enc.description) == (size is None)
