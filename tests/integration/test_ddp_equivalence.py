"""Two-process DDP (gloo, CPU) gives the single-process result, for every model family.

Each family is fitted twice through the real command line (``python -m seqnrl.cli fit``, a
subprocess; the summariser, which has no data module, through a small ``pl.Trainer``
script): once with one process and batch ``2B``, once with ``--trainer.devices=2
--trainer.strategy=ddp`` and batch ``B``, same seed, one epoch (2-3 optimiser steps), and
the two checkpoints and CSV-logged validation metrics are compared. Why they must agree:

* the data modules shard the single-process order round-robin (``data_modules.sharding``),
  so step ``k`` of the two processes covers exactly the clips of step ``k`` of one process;
  evaluation windows are dealt out without repeats;
* every loss is a mean over clips of per-clip terms, so DDP's gradient average is the
  single-process gradient of the global batch;
* the randomness of training (motion masks, pose frame pairs, summariser episodes, the
  motion model's sample of normal clips) is drawn per clip from the clip's identity and the
  step (``seqnrl.models.base.sample_seeds``), not from a per-process stream;
* what is fitted on data is fitted on the data of all processes: the score accumulators and
  so the calibration buffers (``calibrator.*``, gathered with ``all_gather_object``), the
  motion model's token bank / ``ref_error`` / ``frame_stats`` (kept clips gathered), the pose
  linear probe, the summariser's reward baselines; validation losses are logged with
  ``sync_dist``.

Both fits run in float64 (``--trainer.precision=64-true``). In float32 the summation order
of a reduction (which differs between CPUs, thread counts and 1 vs 2 processes) changes a
gradient by ~1e-7 relative, and Adam turns the ~1e-10 noise of an analytically zero
gradient (a bias followed by GroupNorm) into full steps of ``lr`` whose sign is a coin
flip: a float32 comparison either fails on some machines or needs a floor that hides part
of the weights. In float64 the same noise is ~1e-16 relative and ~1e-18 absolute, Adam's
``eps`` (1e-8) swamps it, and every weight can be compared. Measured here (2 cores, 1 and 2
threads, loaded and idle): trained weights agree to <= 1e-10, fitted buffers and validation
metrics to <= 1e-9 (the motion score divides by small statistics). The tolerances are set
three orders of magnitude above that (``ATOL``/``STAT_ATOL``) and at least three below what
a real synchronisation bug does: ``test_ddp_comparison_catches_a_broken_gradient_sync``
runs the two-process fit with DDP's all-reduce replaced by a no-op and checks that the same
comparison fails (weights then differ by ~1e-3).

Metrics that count threshold crossings (PCK: one keypoint moves it by 1/n) are not
compared: a 1e-12 change of a keypoint can flip one count. What they are computed from,
the weights and buffers, is compared exactly as above.

The video diffusion model draws its training noise levels from a per-process random stream,
so two processes cannot reproduce one process's weight updates. It runs with ``lr=0``: the
weights stay at their seeded initialisation, and everything fitted on data from those weights
must still match, i.e. its per-level statistics, the calibration buffers and the validation
frame metrics (not the validation loss, whose noise is drawn per batch). The spatiotemporal
transformer draws its masks per clip and fits its memory bank on the clips of every process,
so it is compared like the other families: weights, bank, statistics and validation loss.

No ``PYTHONHASHSEED`` is set: per-clip seeds must not depend on Python's salted ``hash``.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.ddp

# float64 fits (see the docstring): measured noise <= 1e-10 on weights, <= 1e-9 on buffers
# fitted on data and validation metrics; a broken gradient sync moves weights by ~1e-3
ATOL, RTOL = 1e-8, 1e-6  # trained weights
STAT_ATOL, STAT_RTOL = 1e-6, 1e-5  # buffers fitted on data, validation metrics
DISCRETE_METRICS = ("pck",)  # counts of threshold crossings: not compared (see the docstring)

TRAINER = [
    "--trainer.accelerator=cpu", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false", "--trainer.num_sanity_val_steps=0", "--seed_everything=3",
    "--trainer.precision=64-true",
]
ECHO = [
    "--data=data_modules.synthetic.SyntheticEchoDataModule", "--data.n_train=4", "--data.n_val=4",
    "--data.n_test=2", "--data.anomaly_fraction=0.5",
]
MOTION_DATA = [
    "--data=data_modules.synthetic_motion.SyntheticMotionDataModule", "--data.n_train=4", "--data.n_val=4",
    "--data.n_test=2", "--data.n_frames=48", "--data.clip_len=16", "--data.clips_per_sequence=3",
    "--data.val_anomaly_fraction=0.5",
]


@dataclass
class Family:
    args: list[str]
    batch: int  # per process with two processes; one process gets twice as many
    exact: bool = True  # same weights expected (else lr=0: compare what is fitted on data)
    skip_val: tuple[str, ...] = ()  # validation losses drawn per batch position (see docstring)
    strategy: str = "ddp"
    marks: list = field(default_factory=list)


FAMILIES = {
    "baseline": Family(
        [*ECHO, "--data.n_frames=24", "--data.clip_len=8", "--data.image_size=32", "--data.samples_per_video=3",
         "--model=seqnrl.models.baseline.module.FrameAutoEncoderModel", "--model.width=8", "--model.depth=2",
         "--model.latent=8"],
        batch=2,
    ),
    "motion": Family(
        [*MOTION_DATA, "--model=seqnrl.models.motion.module.MotionTransformerModel", "--model.dim=16",
         "--model.depth=1", "--model.heads=2", "--model.bank_size=64", "--model.stat_clips=8",
         "--model.warmup_steps=2", "--model.max_len=16", "--model.eval_masks=2"],
        batch=2,
    ),
    "pose": Family(
        [*MOTION_DATA, "--data.render=true", "--data.image_size=32", "--data.n_val=2", "--data.clip_len=8",
         "--data.n_frames=16", "--data.clips_per_sequence=2", "--model=seqnrl.models.pose.module.PoseTemplateModel",
         "--model.regressor_width=8", "--model.regressor_depth=2", "--model.regressor_hidden=32",
         "--model.translator_width=8", "--model.translator_depth=2"],
        batch=2,
    ),
    "st_transformer": Family(
        [*ECHO, "--data.n_frames=12", "--data.clip_len=8", "--data.image_size=16", "--data.samples_per_video=2",
         "--model=seqnrl.models.st_transformer.module.STTransformerModel", "--model.image_size=16",
         "--model.clip_len=8", "--model.patch_size=8", "--model.dim=16", "--model.depth=1", "--model.heads=2",
         "--model.decoder_dim=16", "--model.bank_size=64", "--model.bank_clips=16"],
        # masks are drawn per clip from its identity and the bank gathers every process's
        # clips, so the trained weights, the bank and the validation loss all match
        batch=2,
    ),
    "video_diffusion": Family(
        [*ECHO, "--data.n_frames=12", "--data.clip_len=6", "--data.stride=6", "--data.image_size=16",
         "--data.samples_per_video=2", "--model=seqnrl.models.video_diffusion.module.VideoDiffusionModel",
         "--model.clip_len=6", "--model.image_size=16", "--model.base_channels=8", "--model.channel_mults=[1,2]",
         "--model.attn_levels=[1]", "--model.heads=2", "--model.dim_head=8", "--model.emb_dim=16",
         "--model.recon_steps=4", "--model.noise_levels=[0.5]", "--model.lr=0.0"],
        batch=2, exact=False, skip_val=("val/loss", "val/diffusion"),
    ),
}


def _env(repo: Path) -> dict[str, str]:
    # one thread per process unless the caller sets another count (CI runs this file twice,
    # the second time with OMP_NUM_THREADS=2, so a thread-dependent comparison fails there)
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("PYTHONHASHSEED", None)
    return env


def _cli(out: Path, family: Family, devices: int, extra: tuple[str, ...] = ()) -> list[str]:
    bs = family.batch * (2 if devices == 1 else 1)
    ddp = ["--trainer.devices=2", f"--trainer.strategy={family.strategy}"] if devices == 2 else ["--trainer.devices=1"]
    return [
        sys.executable, "-m", "seqnrl.cli", "fit", *family.args, f"--data.batch_size={bs}", *TRAINER, *ddp,
        f"--trainer.default_root_dir={out}",
        "--trainer.logger=pytorch_lightning.loggers.CSVLogger", f"--trainer.logger.save_dir={out}",
        "--trainer.logger.name=log", "--trainer.logger.version=0",
        "--trainer.callbacks+=ModelCheckpoint", f"--trainer.callbacks.dirpath={out / 'ckpt'}",
        "--trainer.callbacks.filename=final", *extra,
    ]


def _run_pair(tmp: Path, repo: Path, cmds: dict[int, list[str]]) -> dict[int, float]:
    """Run the one- and two-process fits side by side; return their wall times."""
    logs = {n: tmp / f"p{n}.log" for n in cmds}
    t0 = time.perf_counter()
    procs = {}
    for n, cmd in cmds.items():
        with open(logs[n], "w") as log:  # the child keeps its own handle
            procs[n] = subprocess.Popen(cmd, cwd=tmp, env=_env(repo), stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # its own group: rank 1 goes with it
    walls, rcs = {}, {}
    try:
        for n, p in procs.items():
            rcs[n] = p.wait(timeout=400)
            walls[n] = time.perf_counter() - t0
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    for n, rc in rcs.items():
        assert rc == 0, f"{n}-process run failed ({rc}):\n" + logs[n].read_text()[-4000:]
    return walls


def _metrics(path: Path) -> dict[str, float]:
    """Last logged value of every column of a CSVLogger ``metrics.csv``."""
    out: dict[str, float] = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                if v not in ("", None):
                    out[k] = float(v)
    return out


def _diffs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    assert a.keys() == b.keys()
    return {k: float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0
            for k in a if a[k].is_floating_point() or a[k].dtype in (torch.long, torch.int, torch.bool)}


def _trained_names(ck: dict, cls: type) -> list[str]:
    hp = {k: v for k, v in ck["hyper_parameters"].items() if not k.startswith("_")}
    return [n for n, p in cls(**hp).named_parameters() if p.requires_grad]


def _compare_weights(c1: dict, c2: dict, cls: type, name: str) -> set[str]:
    """Every trained weight must agree within ``ATOL``/``RTOL`` (no element left out)."""
    names = _trained_names(c1, cls)
    assert names, "no trained parameters found"
    worst = max(float((c1["state_dict"][k].double() - c2["state_dict"][k].double()).abs().max()) for k in names)
    print(f"[ddp {name}] trained weights: max |diff| {worst:.2e} over {len(names)} tensors")
    for k in names:
        _assert_close(k, c1["state_dict"][k], c2["state_dict"][k])
    return set(names)


def _arg(args: list[str], key: str) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith(key + "="))


def _class(path: str) -> type:
    import importlib

    mod, _, name = path.rpartition(".")
    return getattr(importlib.import_module(mod), name)


def _assert_close(name: str, a: torch.Tensor, b: torch.Tensor, stat: bool = False) -> None:
    atol, rtol = (STAT_ATOL, STAT_RTOL) if stat else (ATOL, RTOL)
    torch.testing.assert_close(b.double(), a.double(), atol=atol, rtol=rtol, equal_nan=True,
                               msg=lambda m: f"{name} differs between 1 and 2 processes: {m}")


@pytest.mark.parametrize(
    "name", [pytest.param(k, marks=f.marks) for k, f in FAMILIES.items()]
)
def test_ddp_two_processes_match_one(name, tmp_path, repo_root):
    fam = FAMILIES[name]
    out = {n: tmp_path / f"{n}proc" for n in (1, 2)}
    walls = _run_pair(tmp_path, repo_root, {n: _cli(out[n], fam, n) for n in (1, 2)})
    ck = {n: torch.load(out[n] / "ckpt" / "final.ckpt", map_location="cpu", weights_only=True) for n in (1, 2)}
    assert ck[1]["global_step"] == ck[2]["global_step"] > 1, "the global batch must be the same"
    sd1, sd2 = ck[1]["state_dict"], ck[2]["state_dict"]
    m1, m2 = (_metrics(out[n] / "log" / "version_0" / "metrics.csv") for n in (1, 2))
    val = sorted(k for k in m1 if k.startswith("val/") and k not in fam.skip_val
                 and not any(d in k for d in DISCRETE_METRICS))
    print(f"\n[ddp {name}] wall 1p/2p {walls[1]:.0f}/{walls[2]:.0f} s, steps {ck[1]['global_step']}: "
          + ", ".join(f"{k} {m1[k]:.6g}/{m2.get(k, float('nan')):.6g}" for k in val))
    if fam.exact:
        trained = _compare_weights(ck[1], ck[2], _class(_arg(fam.args, "--model")), name)
    else:  # lr = 0: the weights never moved, so any difference is in fitted statistics
        trained = {k for k in sd1 if k.startswith(("net.", "ema."))}
        for k in trained:
            assert torch.equal(sd1[k], sd2[k]), k
    fitted = _diffs({k: v for k, v in sd1.items() if k not in trained}, {k: v for k, v in sd2.items() if k not in trained})
    print(f"[ddp {name}] buffers fitted on data: " + ", ".join(f"{k} {v:.1e}" for k, v in fitted.items()))
    for k in fitted:
        _assert_close(k, sd1[k], sd2[k], stat=True)
    assert int(sd1.get("calibrator.n_ref", torch.tensor(1))) > 0
    assert val, "validation metrics must be logged"
    for k in val:
        assert k in m2, f"{k} not logged by the two-process run"
        _assert_close(k, torch.tensor(m1[k]), torch.tensor(m2[k]), stat=True)


def test_ddp_comparison_catches_a_broken_gradient_sync(tmp_path, repo_root):
    """Mutation check: with DDP's gradient all-reduce replaced by a no-op
    (``tests/integration/ddp_mutations.py``) each process trains on its own half of the batch,
    and the weight comparison above must fail, by orders of magnitude, not by a hair."""
    fam = FAMILIES["baseline"]
    out = {n: tmp_path / f"{n}proc" for n in (1, 2)}
    broken = ("--trainer.callbacks+=tests.integration.ddp_mutations.BreakGradientSync",)
    _run_pair(tmp_path, repo_root, {1: _cli(out[1], fam, 1), 2: _cli(out[2], fam, 2, broken)})
    ck = {n: torch.load(out[n] / "ckpt" / "final.ckpt", map_location="cpu", weights_only=True) for n in (1, 2)}
    assert ck[1]["global_step"] == ck[2]["global_step"] > 1
    cls = _class(_arg(fam.args, "--model"))
    with pytest.raises(AssertionError, match="differs between 1 and 2 processes"):
        _compare_weights(ck[1], ck[2], cls, "baseline, broken sync")
    worst = max(float((ck[1]["state_dict"][k].double() - ck[2]["state_dict"][k].double()).abs().max())
                for k in _trained_names(ck[1], cls))
    assert worst > 1e3 * ATOL, f"a broken sync moved the weights by only {worst:.1e}"


SUMMARISER_SCRIPT = textwrap.dedent('''
    """Fit the summariser on fixed synthetic features: argv = devices, batch size, out dir."""
    import sys

    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader, Sampler

    from data_modules.sharding import shard
    from seqnrl.models.summariser import SummariserModule, SummaryFeatureDataset
    from seqnrl.models.summariser.module import collate_videos


    class EpochShuffle(Sampler):
        """A new order every epoch, a function of the epoch only."""

        def __init__(self, n):
            self.n, self.epoch = n, 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return self.n

        def __iter__(self):
            return iter(torch.randperm(self.n, generator=torch.Generator().manual_seed(self.epoch)).tolist())


    class Features(pl.LightningDataModule):
        def __init__(self, train, val, bs):
            super().__init__()
            self.train, self.val, self.bs = train, val, bs

        def _loader(self, ds, sampler, train):
            return DataLoader(ds, batch_size=self.bs, collate_fn=collate_videos,
                              sampler=shard(self, len(ds), sampler, train=train))

        def train_dataloader(self):
            return self._loader(self.train, EpochShuffle(len(self.train)), True)

        def val_dataloader(self):
            return self._loader(self.val, None, False)


    devices, bs, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    pl.seed_everything(5)
    g = torch.Generator().manual_seed(0)

    def items(n, tag):
        return [{"video_id": f"{tag}{i}", "features": torch.randn(24, 8, generator=g),
                 "scores": torch.rand(24, generator=g),
                 "user_summary": (torch.rand(2, 24, generator=g) < 0.2).float()} for i in range(n)]

    data = Features(SummaryFeatureDataset(items(8, "t")), SummaryFeatureDataset(items(4, "v")), bs)
    model = SummariserModule(in_dim=8, hidden=8, n_episodes=3, normative_weight=1.0, lr=1e-2,
                             temporal_distance=5, fps=2.0, shot_seconds=2.0)
    ddp = {"devices": 2, "strategy": "ddp"} if devices == 2 else {"devices": 1}
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, enable_progress_bar=False, precision="64-true",
                         enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=out,
                         logger=pl.loggers.CSVLogger(out, name="log", version=0),
                         callbacks=[pl.callbacks.ModelCheckpoint(dirpath=out + "/ckpt", filename="final")], **ddp)
    trainer.fit(model, datamodule=data)
''')


def test_ddp_summariser_matches_one_process(tmp_path, repo_root):
    """The summariser trains on feature tensors and the repository has no LightningDataModule
    for them, so it is not reachable from ``seqnrl fit``: the same equivalence through a
    ``pl.Trainer`` script whose small data module shards with ``data_modules.sharding``
    (Lightning's own sampler would reshuffle the training order under DDP). Two epochs in a
    new order each, so a video's epoch-2 reward baseline was set by the other process in
    epoch 1 and must have been shared."""
    script = tmp_path / "fit_summariser.py"
    script.write_text(SUMMARISER_SCRIPT)
    out = {n: tmp_path / f"{n}proc" for n in (1, 2)}
    cmds = {n: [sys.executable, str(script), str(n), str(4 // n), str(out[n])] for n in (1, 2)}
    walls = _run_pair(tmp_path, repo_root, cmds)
    ck = {n: torch.load(out[n] / "ckpt" / "final.ckpt", map_location="cpu", weights_only=True) for n in (1, 2)}
    assert ck[1]["global_step"] == ck[2]["global_step"] == 4
    b1, b2 = ck[1]["summariser_baselines"], ck[2]["summariser_baselines"]
    assert sorted(b1) == sorted(b2) == [f"t{i}" for i in range(8)], "every video's baseline is in the checkpoint"
    bdiff = max(abs(b1[k] - b2[k]) for k in b1)
    m1, m2 = (_metrics(out[n] / "log" / "version_0" / "metrics.csv") for n in (1, 2))
    print(f"\n[ddp summariser] wall 1p/2p {walls[1]:.0f}/{walls[2]:.0f} s, max |diff| reward baselines {bdiff:.2e}, val/reward {m1['val/reward']:.6g}/{m2['val/reward']:.6g}, "
          f"val/f_score {m1['val/f_score']:.6g}/{m2['val/f_score']:.6g}")
    _compare_weights(ck[1], ck[2], _class("seqnrl.models.summariser.module.SummariserModule"), "summariser")
    assert bdiff < 1e-5
    for k in ("val/reward", "val/f_score"):
        _assert_close(k, torch.tensor(m1[k]), torch.tensor(m2[k]), stat=True)


# -- in-process checks of the pieces (no subprocess) -----------------------------------------
def test_sharded_sampler_deals_the_single_process_order_round_robin():
    from data_modules.sharding import ShardedSampler
    from seqnrl.data.clips import SeededEpochSampler

    base = SeededEpochSampler(10, seed=4)
    base.set_epoch(2)
    one = list(base)
    shards = [ShardedSampler(10, SeededEpochSampler(10, seed=4), num_replicas=2, rank=r) for r in (0, 1)]
    for s in shards:
        s.set_epoch(2)  # forwarded to the wrapped sampler
    got = [list(s) for s in shards]
    b = 2  # per process; one process with batch 4 sees the union of the steps' batches
    for k in range(0, 5, b):
        assert sorted(got[0][k : k + b] + got[1][k : k + b]) == sorted(one[2 * k : 2 * k + 2 * b])
    # evaluation: no item repeated, processes may differ by one; training: padded to equal length
    ev = [list(ShardedSampler(7, None, num_replicas=2, rank=r, even=False)) for r in (0, 1)]
    assert sorted(ev[0] + ev[1]) == list(range(7)) and [len(e) for e in ev] == [4, 3]
    tr = [ShardedSampler(7, None, num_replicas=2, rank=r) for r in (0, 1)]
    assert [len(t) for t in tr] == [4, 4] and sorted(list(tr[0]) + list(tr[1])) == [0, 0, 1, 2, 3, 4, 5, 6]
    assert [list(ShardedSampler(1, None, num_replicas=2, rank=r, even=False)) for r in (0, 1)] == [[0], [0]]


def test_motion_normal_sample_is_independent_of_the_split_across_processes():
    from seqnrl.models.motion.module import MotionTransformerModel

    def model():
        return MotionTransformerModel(n_joints=4, dim=8, depth=1, heads=2, bank_size=8, stat_clips=5, max_len=8)

    clips = torch.randn(12, 8, 4, 2)
    keys = [int(k) for k in torch.randint(0, 2**62, (12,), generator=torch.Generator().manual_seed(0))]
    one = model()
    for i in range(0, 12, 4):
        one._remember(clips[i : i + 4], keys[i : i + 4])
    ranks = [model(), model()]
    for i in range(0, 12, 2):
        ranks[(i // 2) % 2]._remember(clips[i : i + 2], keys[i : i + 2])
    merged = ranks[0]._bottom_k([kv for r in ranks for kv in r._reservoir])
    assert [k for k, _ in merged] == [k for k, _ in one._reservoir] == sorted(keys)[:5]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(merged, one._reservoir))
