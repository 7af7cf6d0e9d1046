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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

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
    from .errors import InputError

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
