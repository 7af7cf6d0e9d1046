"""Sampler settings and the noise-level grid: which sigmas a shot is denoised through.

The shift is applied by the diffusers scheduler (sigma -> s * sigma / (1 + (s - 1) * sigma));
what differs between recipes is the UNSHIFTED grid handed to it:

- ``official``: Wan's own FlowUniPC solver, linspace(float32(0.999), 0, n + 1)[:-1]. The
  default of the real preset: what Wan2.2 and StoryMem sample with.
- ``diffusers``: diffusers' default, linspace(1, 1/1000, n + 1)[:-1] (up to 3.5e-3 apart from
  the official grid at 40 steps). The toy model was trained and benchmarked with it.
- ``lightning``: the step-distilled Lightning / LightX2V LoRAs, linspace(1, 0, n + 1)[:-1],
  with the Euler solver and float timesteps.

Timesteps are sigma * 1000: int64 for UniPC (as both the official solver and diffusers do),
float for Euler (as the Lightning code does).

The denoising loop is here too, as pure functions (`denoise` with `guided_prediction`): the
pipeline prepares the inputs and hands them over.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor

from .conditioning import model_input
from .errors import InputError, NumericalError

NUM_TRAIN_TIMESTEPS = 1000
SIGMA_GRIDS = ("official", "diffusers", "lightning")
SOLVERS = ("unipc", "euler")


@dataclass(frozen=True)
class Sampling:
    """Sampler settings for one kind of shot. `guidance` is for the high-noise expert
    (t >= boundary * 1000), `guidance_2` for the low-noise expert; 1.0 = no CFG branch."""

    steps: int
    shift: float
    boundary: float
    guidance: float
    guidance_2: float
    solver: str = "unipc"
    grid: str = "official"


def check_sigma_grid(grid: str | None) -> None:
    if grid is not None and grid not in SIGMA_GRIDS:
        raise InputError(f"sigma grid must be one of {', '.join(SIGMA_GRIDS)}, got {grid!r}")


def unshifted_sigmas(grid: str, steps: int) -> np.ndarray | None:
    """The grid before the shift; None = the scheduler's own default (the diffusers grid)."""
    if grid == "official":
        # The official solver builds sigma_max from a float32 table: 0.999 rounded to float32.
        return np.linspace(float(np.float32(0.999)), 0.0, steps + 1)[:-1]
    if grid == "lightning":
        return np.linspace(1.0, 0.0, steps + 1)[:-1]
    if grid == "diffusers":
        return None
    raise ValueError(f"unknown sigma grid {grid!r}; choose one of {', '.join(SIGMA_GRIDS)}")


def make_scheduler(sampling: Sampling, device=None):
    """A fresh scheduler with its timesteps set for one shot."""
    if sampling.solver == "unipc":
        scheduler = UniPCMultistepScheduler(
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=sampling.shift,
            num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        )
    elif sampling.solver == "euler":
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=sampling.shift)
    else:
        raise ValueError(f"unknown solver {sampling.solver!r}; choose one of {', '.join(SOLVERS)}")
    sigmas = unshifted_sigmas(sampling.grid, sampling.steps)
    if sigmas is None:
        scheduler.set_timesteps(sampling.steps, device=device)
    else:
        scheduler.set_timesteps(sigmas=sigmas, device=device)
    return scheduler


def flow_scheduler(shift: float = 4.0):
    """The scheduler component a pipeline is saved with (each shot builds its own from its Sampling)."""
    return make_scheduler(Sampling(steps=1, shift=shift, boundary=0, guidance=1, guidance_2=1, grid="diffusers"))


def initial_noise(shape: tuple[int, ...], seed: int, device) -> torch.Tensor:
    """The starting latents of a shot, from a CPU generator: the same seed gives the same shot on
    any device."""
    generator = torch.Generator("cpu").manual_seed(int(seed))
    return randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32).to(device)


def guided_prediction(experts, sampling: Sampling, condition, positive, negative, num_memory: int, device):
    """predict(latents, t, step) for `denoise`: the high-noise expert above the boundary, the
    low-noise one below, each with its classifier-free guidance scale (no unconditional branch
    when the scale is 1 or there is no negative prompt). Both branches see the same memory
    conditioning. A NaN or infinite prediction stops the shot: a black shot is never saved."""
    boundary = sampling.boundary * NUM_TRAIN_TIMESTEPS
    extra = {"num_memory_frames": num_memory} if num_memory else {}

    def predict(latents: torch.Tensor, t: torch.Tensor, step: int, steps: int) -> torch.Tensor:
        high_noise = t >= boundary
        model = experts[0] if high_noise else experts[1]
        scale = sampling.guidance if high_noise else sampling.guidance_2
        x = model_input(latents, condition).to(model.dtype)
        timestep = t.expand(1).to(device)
        prediction = model(x, timestep, positive.to(device, model.dtype), return_dict=False, **extra)[0].float()
        if scale > 1 and negative is not None:
            negative_branch = model(x, timestep, negative.to(device, model.dtype), return_dict=False, **extra)
            unconditional = negative_branch[0].float()
            prediction = unconditional + scale * (prediction - unconditional)
        if not torch.isfinite(prediction).all():
            raise NumericalError(
                f"the {'high' if high_noise else 'low'}-noise expert produced NaN or infinite values at "
                f"step {int(step) + 1} of {steps}; its weights (a LoRA with huge or damaged "
                "values?) or the settings are broken; nothing was saved for this shot"
            )
        return prediction

    return predict


def denoise(predict, latents: torch.Tensor, scheduler, progress=iter, callback=None) -> torch.Tensor:
    """The sampling loop, k-diffusion style: `predict(latents, t, step, steps)` gives the flow
    prediction, the scheduler steps, and `callback(step, t, latents)` (if any) sees the latents
    after each step and may return new ones. `progress` wraps the timesteps (a progress bar)."""
    timesteps = scheduler.timesteps
    for step, t in enumerate(progress(timesteps)):
        prediction = predict(latents, t, step, len(timesteps))
        latents = scheduler.step(prediction, t, latents, return_dict=False)[0]
        if callback is not None:
            latents = callback(step, t, latents)
    return latents
