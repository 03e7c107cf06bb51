"""Speed of the video diffusion model on CPU: DDIM sampling of one clip and training steps/s.

    python scripts/bench/diffusion_speed.py                  # default model, 16x64x64, 25 steps
    python scripts/bench/diffusion_speed.py --threads 2 --repeats 3 --latent

Prints the figures and writes ``bench_out/diffusion_speed.json``. Wall-clock times on a
shared machine depend on the load; the process CPU time and the load average are reported
beside them.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from scripts.bench._common import save  # noqa: E402
from seqnrl.models.video_diffusion import VideoDiffusionModel  # noqa: E402


def timed(fn, repeats: int) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return {
        "wall_s_min": min(walls),
        "wall_s_median": sorted(walls)[len(walls) // 2],
        "cpu_s_min": min(cpus),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=25, help="DDIM steps")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train-batch", type=int, default=4)
    p.add_argument("--train-steps", type=int, default=5)
    p.add_argument(
        "--base-channels", type=int, default=None, help="override the default model size"
    )
    p.add_argument("--latent", action="store_true", help="latent mode (per-frame autoencoder, f=4)")
    p.add_argument("--out", default="bench_out/diffusion_speed.json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    kw = {"clip_len": a.frames, "image_size": a.size, "latent": a.latent}
    if a.base_channels:
        kw["base_channels"] = a.base_channels
    if a.latent:
        kw["patch_size"] = 1
    model = VideoDiffusionModel(**kw)
    n_params = sum(p.numel() for p in model.net.parameters())
    model.eval()
    ref = torch.rand(1, 1, a.size, a.size)

    def sample(guidance: float):
        return lambda: model.sample(
            1, ef=55.0, reference=ref, steps=a.steps, guidance_scale=guidance, seed=0
        )

    sample(1.0)()  # warm-up
    res = {
        "model": {
            k: v
            for k, v in model.hparams.items()
            if k
            in (
                "base_channels",
                "channel_mults",
                "num_res_blocks",
                "attn_levels",
                "patch_size",
                "emb_dim",
                "latent",
                "prediction_type",
            )
        },
        "parameters": n_params,
        "clip": [1, a.frames, a.size, a.size],
        "ddim_steps": a.steps,
        "threads": a.threads,
        "sample_conditional": timed(sample(1.0), a.repeats),
        "sample_cfg_guidance2": timed(sample(2.0), a.repeats),
    }
    model.train()
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
    batch = {
        "video": torch.rand(a.train_batch, 1, a.frames, a.size, a.size),
        "ef": torch.full((a.train_batch,), 60.0),
    }

    def train_steps():
        for _ in range(a.train_steps):
            loss = model.losses(batch)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            model.update_ema()

    train_steps()  # warm-up
    t = timed(train_steps, max(1, a.repeats - 1))
    res["train"] = {
        "batch": a.train_batch,
        "steps_per_s": a.train_steps / t["wall_s_min"],
        "steps_per_cpu_s": a.train_steps / t["cpu_s_min"],
        "clips_per_s": a.train_steps * a.train_batch / t["wall_s_min"],
    }
    res["load_average"] = list(os.getloadavg())
    res["cpu_count"] = os.cpu_count()
    res["machine"] = platform.processor() or platform.machine()
    res["torch"] = torch.__version__
    print(
        f"video diffusion speed ({n_params / 1e6:.2f} M parameters, {a.threads} threads, "
        f"load {res['load_average'][0]:.1f}):"
    )
    for k in ("sample_conditional", "sample_cfg_guidance2"):
        r = res[k]
        print(
            f"  {k:22s} {a.frames}x{a.size}x{a.size}, {a.steps} DDIM steps: "
            f"{r['wall_s_min']:.2f} s wall (median {r['wall_s_median']:.2f}), {r['cpu_s_min']:.2f} s CPU"
        )
    print(
        f"  training (batch {a.train_batch}): {res['train']['steps_per_s']:.2f} steps/s "
        f"({res['train']['clips_per_s']:.1f} clips/s)"
    )
    res["table"] = [
        {"measure": f"sample {a.frames}x{a.size}x{a.size}, {a.steps} DDIM steps (s)", "value": res["sample_conditional"]["wall_s_min"],
         "goal": "<= 10"},
        {"measure": "sample with guidance 2 (s)", "value": res["sample_cfg_guidance2"]["wall_s_min"], "goal": ""},
        {"measure": f"training steps/s (batch {a.train_batch})", "value": res["train"]["steps_per_s"], "goal": ""},
    ]
    res["title"] = f"Video diffusion speed ({n_params / 1e6:.2f} M parameters, {a.threads} threads)"
    out = Path(a.out)
    save(out.stem, res, out.parent)
    print(f"wrote {a.out}")
    return res


if __name__ == "__main__":
    main()
