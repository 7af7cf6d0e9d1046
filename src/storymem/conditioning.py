"""The M2V conditioning layout (reference section 4), as pure tensor functions.

Shapes carry a batch dim of 1: latents [1, C, frames, h, w], pixels [1, 3, frames, H, W] in
[-1, 1]. The model input of the I2V experts has 36 channels:

    [ noisy latent 16 | mask 4 | condition 16 ]      over M + T latent frames

where condition = concat(memory latents [M], video condition latents [T]) along TIME (memory
first), and the mask is 1 on every memory frame and on the video frames that are given.
The same functions serve inference and training, so the two cannot drift apart.
"""

from __future__ import annotations

from enum import Enum

import torch


class ShotMode(str, Enum):
    T2V = "t2v"  # no memory, no given frames: the text-to-video experts
    M2V = "m2v"  # memory only
    MI2V = "mi2v"  # memory + the previous shot's last frame
    MM2V = "mm2v"  # memory + the previous shot's last 5 frames


GIVEN_FRAMES = {ShotMode.T2V: 0, ShotMode.M2V: 0, ShotMode.MI2V: 1, ShotMode.MM2V: 5}


def mode_for(num_memory: int, num_first_frames: int) -> ShotMode:
    """Which kind of shot a (memory, first frames) pair asks for."""
    if num_first_frames == 0:
        return ShotMode.M2V if num_memory else ShotMode.T2V
    for mode in (ShotMode.MI2V, ShotMode.MM2V):
        if GIVEN_FRAMES[mode] == num_first_frames:
            return mode
    raise ValueError(f"first_frames must hold 1 frame (MI2V) or 5 frames (MM2V), got {num_first_frames}")


def num_latent_frames(num_frames: int, temporal_scale: int = 4) -> int:
    """Causal VAE: pixel frame 0 -> latent 0, frames 4k-3..4k -> latent k."""
    return (num_frames - 1) // temporal_scale + 1


def kept_frames(num_frames: int, num_given: int) -> slice:
    """Frames a shot contributes to the story: the given ones are the previous shot's, so they
    are dropped (81 -> 81 / 80 / 76 for M2V / MI2V / MM2V)."""
    return slice(num_given, num_frames)


def condition_mask(
    num_memory: int, num_frames: int, num_given: int, latent_h: int, latent_w: int, temporal_scale: int = 4
) -> torch.Tensor:
    """The 4-channel mask [1, 4, M + T, h, w].

    Video part: the per-pixel-frame "given" flag, with frame 0's flag repeated `temporal_scale`
    times (it has a latent frame of its own), then grouped by `temporal_scale` into channels.
    Memory part: all ones.
    """
    flags = torch.zeros(num_frames)
    flags[:num_given] = 1
    flags = torch.cat([flags[:1].repeat(temporal_scale), flags[1:]])
    video = flags.view(-1, temporal_scale).T  # [4, T]
    memory = torch.ones(temporal_scale, num_memory)
    mask = torch.cat([memory, video], dim=1)
    return mask.view(1, temporal_scale, -1, 1, 1).expand(-1, -1, -1, latent_h, latent_w).contiguous()


def condition_pixels(given: torch.Tensor | None, num_frames: int, height: int, width: int) -> torch.Tensor:
    """The pixel video whose encoding is the video condition: zeros (Wan's I2V "black" video,
    zeros in the VAE's [-1, 1] input space), with the given frames [1, 3, g, H, W] in front."""
    video = torch.zeros(1, 3, num_frames, height, width)
    if given is not None and given.shape[2]:
        video[:, :, : given.shape[2]] = given.to(video.dtype)
    return video


def condition_input(memory_latents: torch.Tensor, video_latents: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[mask 4 | condition 16] over M + T frames: memory latents prepended to the video
    condition latents in time."""
    condition = torch.cat([memory_latents.to(video_latents.dtype), video_latents], dim=2)
    if mask.shape[2] != condition.shape[2]:
        raise ValueError(f"mask covers {mask.shape[2]} latent frames, condition {condition.shape[2]}")
    return torch.cat([mask.to(condition.dtype), condition], dim=1)


def model_input(noisy: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
    """What the expert sees: the noisy latent alone (T2V) or [noisy | mask | condition]."""
    if condition is None:
        return noisy
    return torch.cat([noisy, condition.to(noisy.dtype)], dim=1)
