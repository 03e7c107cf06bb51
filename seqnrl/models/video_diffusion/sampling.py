"""Sampling with diffusers' schedulers: DDIM (deterministic, few steps) and DDPM (ancestral),
inpainting-style replacement of known frames, partial denoising from an intermediate noise
level (pseudo-healthy reconstruction) and long videos stitched from overlapping windows.

Everything here works in *model space* (pixels scaled to [-1, 1], or autoencoder latents)
and takes a ``denoiser``: any callable ``(x_t (B, C, T, H, W), t (B,) long) -> model output``
in the scheduler's ``prediction_type`` (``epsilon`` or ``v_prediction``). Conditioning and
classifier-free guidance are folded into it by :func:`guided_denoiser`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Scheduler = DDIMScheduler | DDPMScheduler


def scheduler_config(
    num_train_timesteps: int = 1000,
    beta_schedule: str = "squaredcos_cap_v2",
    prediction_type: str = "v_prediction",
    clip_sample: bool = True,
) -> dict:
    """One beta schedule shared by training (DDPM) and both samplers.

    ``timestep_spacing="trailing"`` makes a few-step grid start at the last training step
    (pure noise) and end near 0, as recommended by Lin et al. 2024 ("Common diffusion noise
    schedules and sample steps are flawed"); the default "leading" grid never starts from
    pure noise. ``clip_sample`` clamps the predicted clean sample to [-1, 1] (our data range).
    """
    return {
        "num_train_timesteps": int(num_train_timesteps),
        "beta_schedule": beta_schedule,
        "prediction_type": prediction_type,
        "clip_sample": bool(clip_sample),
        "timestep_spacing": "trailing",
    }


def make_scheduler(kind: Literal["ddpm", "ddim"], config: dict) -> Scheduler:
    """A fresh scheduler (they are stateful: ``set_timesteps`` mutates them)."""
    if kind == "ddim":
        return DDIMScheduler(**config, set_alpha_to_one=True)
    if kind == "ddpm":
        return DDPMScheduler(**config, variance_type="fixed_small")
    raise ValueError(f"unknown sampler {kind!r}; expected 'ddim' or 'ddpm'")


def training_target(
    scheduler: Scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """What the network must output at ``x_t = add_noise(x0, noise, t)``."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    if kind == "sample":
        return x0
    raise ValueError(f"unsupported prediction_type {kind!r}")


def _abar(scheduler: Scheduler, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    a = scheduler.alphas_cumprod.to(like.device, like.dtype)[t.long()]
    return a.view(-1, *([1] * (like.ndim - 1)))


def predict_x0(
    scheduler: Scheduler, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """Clean-sample estimate from a model output (the schedulers' formulas, batched over ``t``)."""
    a = _abar(scheduler, t, x_t)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return (x_t - (1 - a).sqrt() * output) / a.sqrt()
    if kind == "v_prediction":
        return a.sqrt() * x_t - (1 - a).sqrt() * output
    return output


def output_from_x0(
    scheduler: Scheduler, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """The model output that corresponds to the clean sample ``x0`` at ``x_t`` (an oracle)."""
    a = _abar(scheduler, t, x_t)
    eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return eps
    if kind == "v_prediction":
        return a.sqrt() * eps - (1 - a).sqrt() * x0
    return x0


def guided_denoiser(
    net: nn.Module,
    ef: torch.Tensor | None = None,
    ref: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    feature: torch.Tensor | None = None,
) -> Denoiser:
    """Wrap ``net(x_t, t, ef=, ref=, drop_ef=, drop_ref=[, feature=, drop_feature=])`` with
    fixed conditions.

    ``guidance_scale`` ``w``: classifier-free guidance ``uncond + w * (cond - uncond)``; the
    unconditional branch drops every condition (null EF and feature embeddings, no
    reference frame). ``w = 1`` (or no condition given) costs one network call per step,
    otherwise two (batched). ``feature`` ``(B, D)`` is only passed to the network when given.
    """
    has_cond = ef is not None or ref is not None or feature is not None

    def call(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        if not has_cond or guidance_scale == 1.0:
            kw = {} if feature is None else {"feature": feature}
            return net(x, t, ef=ef, ref=ref, **kw)
        drop = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)]).to(
            x.device
        )
        kw = {}
        if feature is not None:
            kw = {"feature": torch.cat([feature, feature]), "drop_feature": drop}
        out = net(
            torch.cat([x, x]),
            torch.cat([t, t]),
            ef=None if ef is None else torch.cat([ef, ef]),
            ref=None if ref is None else torch.cat([ref, ref]),
            drop_ef=drop,
            drop_ref=drop,
            **kw,
        )
        cond, uncond = out.chunk(2)
        return uncond + guidance_scale * (cond - uncond)

    return call


def _grid(scheduler: Scheduler, num_steps: int, t_max: int | None) -> list[int]:
    scheduler.set_timesteps(num_steps)
    ts = [int(t) for t in scheduler.timesteps]
    if t_max is not None:
        ts = [t for t in ts if t <= t_max]
    return ts


def start_timestep(scheduler: Scheduler, num_steps: int, noise_level: float) -> int:
    """The grid time step of a ``num_steps`` schedule closest to ``noise_level`` (fraction of
    the training schedule, 0..1)."""
    if not 0.0 < noise_level <= 1.0:
        raise ValueError(f"noise_level must be in (0, 1], got {noise_level}")
    ts = _grid(scheduler, num_steps, None)
    target = noise_level * (scheduler.config.num_train_timesteps - 1)
    return min(ts, key=lambda t: (abs(t - target), t))


def _randn(
    shape, generator: torch.Generator | None, like: torch.Tensor | None = None, device=None
) -> torch.Tensor:
    dev = like.device if like is not None else (device or "cpu")
    # draw on the generator's device (CPU generators are the norm), then move
    gdev = generator.device if generator is not None else dev
    return torch.randn(shape, generator=generator, device=gdev).to(dev)


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    shape: tuple[int, ...],
    scheduler: Scheduler,
    num_steps: int = 25,
    *,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    known: torch.Tensor | None = None,
    known_mask: torch.Tensor | None = None,
    x_start: torch.Tensor | None = None,
    noise_level: float | None = None,
    eta: float = 0.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Run the reverse process and return the clean sample ``(B, C, T, H, W)`` in model space.

    - From pure noise (default), or from ``x_start`` noised to ``noise_level`` (the grid step
      closest to it; SDEdit-style partial denoising used for pseudo-healthy reconstruction).
    - ``known`` + ``known_mask`` (broadcastable to ``shape``, 1 = known): after every step
      the known part of the sample is replaced by ``known`` noised to the new step's level
      (RePaint-style inpainting without resampling). The last step keeps the model's own
      output, so any seam is the model's and can be cross-faded afterwards.
    - ``noise`` fixes the starting noise (else drawn from ``generator``). DDIM with
      ``eta = 0`` is then fully deterministic; DDPM draws its step noise from ``generator``.
    """
    is_ddim = isinstance(scheduler, DDIMScheduler)
    dev = device if device is not None else (x_start.device if x_start is not None else "cpu")
    t_max = None
    if x_start is not None:
        if noise_level is None:
            raise ValueError("x_start needs a noise_level")
        t_max = start_timestep(scheduler, num_steps, noise_level)
    timesteps = _grid(scheduler, num_steps, t_max)
    if noise is None:
        noise = _randn(shape, generator, device=dev)
    noise = noise.to(dev)
    if x_start is not None:
        x = scheduler.add_noise(
            x_start, noise, torch.full((shape[0],), timesteps[0], dtype=torch.long, device=dev)
        )
    else:
        x = noise * getattr(scheduler, "init_noise_sigma", 1.0)
    if known is not None:
        if known_mask is None:
            raise ValueError("known needs a known_mask")
        known = known.to(dev)
        known_mask = known_mask.to(dev, x.dtype)
        t0 = torch.full((shape[0],), timesteps[0], dtype=torch.long, device=dev)
        x = torch.lerp(x, scheduler.add_noise(known, noise, t0), known_mask)
    b = shape[0]
    for i, t in enumerate(timesteps):
        tt = torch.full((b,), t, dtype=torch.long, device=dev)
        out = denoiser(scheduler.scale_model_input(x, t), tt)
        if is_ddim:
            x = scheduler.step(out, t, x, eta=eta, generator=generator).prev_sample
        else:
            x = scheduler.step(out, t, x, generator=generator).prev_sample
        last = i == len(timesteps) - 1
        if known is not None and not last:
            t_prev = torch.full((b,), timesteps[i + 1], dtype=torch.long, device=dev)
            known_t = scheduler.add_noise(known, _randn(x.shape, generator, like=x), t_prev)
            x = torch.lerp(x, known_t, known_mask)
    return x


def crossfade(prev: torch.Tensor, new: torch.Tensor, dim: int = 2) -> torch.Tensor:
    """Linear cross-fade of two versions of the same frames along ``dim``: the weight of
    ``new`` rises from ~0 at the first frame to ~1 at the last (excluding the end points)."""
    n = prev.shape[dim]
    w = torch.linspace(0, 1, n + 2, device=prev.device, dtype=prev.dtype)[1:-1]
    shape = [1] * prev.ndim
    shape[dim] = n
    return torch.lerp(prev, new, w.view(shape))


@torch.no_grad()
def generate_long(
    denoiser: Denoiser,
    n_frames: int,
    window: int,
    stride: int,
    frame_shape: tuple[int, int, int, int],
    scheduler: Scheduler,
    num_steps: int = 25,
    *,
    generator: torch.Generator | None = None,
    blend: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A video of ``n_frames`` from overlapping windows of ``window`` frames every ``stride``.

    ``frame_shape`` is ``(B, C, H, W)``. The first window is sampled freely; each later one
    starts ``window - stride`` frames before the end of what exists, and those overlapping
    frames are imposed as *known* (inpainting at every step, see :func:`sample`). The
    model's own version of the overlap is then cross-faded into the existing frames.
    Returns ``(B, C, n_frames, H, W)`` in model space.
    """
    if not 0 < stride <= window:
        raise ValueError(f"need 0 < stride <= window, got stride={stride}, window={window}")
    b, c, h, w = frame_shape
    shape = (b, c, window, h, w)
    video = sample(denoiser, shape, scheduler, num_steps, generator=generator, device=device)
    overlap = window - stride
    while video.shape[2] < n_frames:
        if overlap == 0:
            new = sample(denoiser, shape, scheduler, num_steps, generator=generator, device=device)
            video = torch.cat([video, new], dim=2)
            continue
        known = torch.zeros(shape, device=video.device, dtype=video.dtype)
        known[:, :, :overlap] = video[:, :, -overlap:]
        mask = torch.zeros(1, 1, window, 1, 1, device=video.device, dtype=video.dtype)
        mask[:, :, :overlap] = 1
        new = sample(
            denoiser,
            shape,
            scheduler,
            num_steps,
            generator=generator,
            known=known,
            known_mask=mask,
            device=device,
        )
        seam = (
            crossfade(video[:, :, -overlap:], new[:, :, :overlap])
            if blend
            else video[:, :, -overlap:]
        )
        video = torch.cat([video[:, :, :-overlap], seam, new[:, :, overlap:]], dim=2)
    return video[:, :, :n_frames]
