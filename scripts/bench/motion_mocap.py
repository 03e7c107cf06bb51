"""Motion normative model on CMU motion capture (BVH): train on normal sequences, score a
held-out sequence with a synthetically perturbed segment.

:class:`MocapDataModule` reads ``../shared/data/mocap/*.bvh`` (CMU subject 131), resamples
them to 30 fps and holds the last file out: the test set is that file unchanged plus one
copy per perturbation (``freeze``: the pose held; ``tremor``: 6-10 Hz jitter of a limb) with
the perturbed frames labelled. The model trains on the other files (normal only), is
calibrated on the validation copies (other perturbed spans) and scores the test copies.
Reports frame AUROC per perturbation (that copy + the unchanged file) for the model score,
its components and the speed-typicality reference, the joints carrying the score inside the
perturbed spans, and the cadence of each file. Prints a table, writes JSON (default
``bench_out/motion_mocap.json``).

    python scripts/bench/motion_mocap.py                # 3D positions (root-relative, height 1)
    python scripts/bench/motion_mocap.py --dim 2        # side-view 2D projection
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from motion_synthetic import per_type_metrics, print_table, quiet, score_rows, top_joints, trainer  # noqa: E402

from data_modules.mocap import MOCAP_ANOMALIES, MocapDataModule  # noqa: E402
from scripts.bench._common import save  # noqa: E402
from seqnrl.models.motion import MotionTransformerModel  # noqa: E402
from seqnrl.models.motion import descriptors as D  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "mocap"))
    p.add_argument("--dim", type=int, default=3, choices=(2, 3))
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--clip-len", type=int, default=32)
    p.add_argument("--clips-per-sequence", type=int, default=160)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--model-dim", type=int, default=48)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--asymmetry-weight", type=float, default=2.0, help="left/right asymmetry channel in the score (0 = off)")
    p.add_argument("--asymmetry-window", type=float, default=16.0, help="its Gaussian window, frames")
    p.add_argument("--asymmetry-margin", type=float, default=2.0, help="z_asym counted beyond this margin")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "bench_out" / "motion_mocap.json")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    quiet()
    t0 = time.time()
    pl.seed_everything(a.seed, workers=True)
    dm = MocapDataModule(
        root=a.root, clip_len=a.clip_len, dim=a.dim, batch_size=a.batch_size, seed=a.seed,
        clips_per_sequence=a.clips_per_sequence,
    )  # fmt: skip
    dm.setup("fit")
    model = MotionTransformerModel(
        n_joints=len(dm.parents), coord_dim=a.dim, joint_names=dm.joint_names, dim=a.model_dim, depth=a.depth, lr=a.lr,
        asymmetry_weight=a.asymmetry_weight, asymmetry_window=a.asymmetry_window, asymmetry_margin=a.asymmetry_margin,
    )  # fmt: skip
    tr = trainer(a.epochs)
    tr.fit(model, datamodule=dm)
    t_fit = time.time() - t0
    tr.test(model, datamodule=dm, verbose=False)
    res = model.last_results
    seqs = {s.video_id: s for s in dm.dataset("test").sequences}
    types = {vid: next((k for k in MOCAP_ANOMALIES if vid.endswith(f"-{k}")), None) for vid in res}
    labels = {vid: vs.labels for vid, vs in res.items()}
    rows = score_rows(res, types)
    base = D.SpeedTypicality().fit([s.keypoints.numpy() for s in dm.dataset("train").sequences])
    for kind, m in per_type_metrics({v: base.score(seqs[v].keypoints.numpy()) for v in res}, labels, types).items():
        rows.append({"anomaly": kind, "signal": "speed_typicality", **m})
    rows.sort(key=lambda r: (r["anomaly"], r["signal"]))
    joints = top_joints(res, types, dm.joint_names)
    files = {s.video_id: s for s in dm.dataset("train").sequences} | {v: s for v, s in seqs.items() if types[v] is None}
    desc = {}
    for vid, s in files.items():
        d = model.describe(s.keypoints.numpy(), dm.fps, parents=dm.parents)
        desc[vid] = {
            "steps_per_min": round(d["cadence"]["steps_per_min"], 1),
            "cadence_confidence": round(d["cadence"]["confidence"], 3),
            "variability": round(d["variability"], 3),
            "asymmetry": round(d["asymmetry"], 3),
        }
    out = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "train_files": [p.name for p in dm.split_files()["train"]],
        "test_files": [p.name for p in dm.split_files()["test"]],
        "rows": rows,
        "top_joints": joints,
        "descriptors": desc,
        "fit_seconds": round(t_fit, 1),
        "total_seconds": round(time.time() - t0, 1),
    }
    print_table(rows, f"motion transformer on CMU mocap ({a.dim}D; test file {out['test_files']} with perturbed segments)")
    print("\njoints carrying the score inside perturbed spans:", json.dumps(joints))
    print("descriptors:", json.dumps(desc))
    print(f"fit {t_fit:.0f} s, total {out['total_seconds']:.0f} s")
    out["table"] = rows
    out["title"] = "Motion anomalies on CMU motion capture (injected perturbations): frame AUROC"
    save(a.out.stem, out, a.out.parent)
    return out


if __name__ == "__main__":
    main()
