"""The toy model's "VAE": `PixelPackCodec`, an exact, invertible packing of pixels behind the VAE
interface (2x2 pixels and 2 frames per latent, frame 0 alone as in Wan's causal VAE)."""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput

Z_DIM = 24  # 3 colours x 2 frames x 2 x 2 pixels
TEMPORAL, SPATIAL = 2, 2


class PixelPackCodec(ModelMixin, ConfigMixin):
    """Pixels [B, 3, tk+1, H, W] <-> latents [B, 3 t s s, k+1, H/s, W/s], losslessly
    (t = scale_factor_temporal, s = scale_factor_spatial).

    Frame 0 is repeated t times so that it fills a latent frame of its own, as Wan's causal
    VAE gives it one; every later latent frame holds t consecutive frames. Decoding frame 0
    averages its copies (exact when they are equal)."""

    @register_to_config
    def __init__(
        self,
        z_dim: int = Z_DIM,
        scale_factor_temporal: int = TEMPORAL,
        scale_factor_spatial: int = SPATIAL,
        latents_mean: list[float] | None = None,
        latents_std: list[float] | None = None,
    ):
        super().__init__()
        if z_dim != 3 * scale_factor_temporal * scale_factor_spatial**2:
            raise ValueError("z_dim must equal 3 x temporal x spatial^2 for an exact packing")
        self.register_to_config(latents_mean=latents_mean or [0.0] * z_dim, latents_std=latents_std or [1.0] * z_dim)
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # gives the codec a device/dtype

    def pack(self, pixels: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = pixels.shape
        t, s = self.config.scale_factor_temporal, self.config.scale_factor_spatial
        if (f - 1) % t or h % s or w % s:
            raise ValueError(f"cannot pack {f} frames of {h}x{w}: need {t}k+1 frames and sizes divisible by {s}")
        video = torch.cat([pixels[:, :, :1].expand(-1, -1, t, -1, -1), pixels[:, :, 1:]], dim=2)
        video = video.reshape(b, c, f // t + 1, t, h // s, s, w // s, s)
        return video.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, c * t * s * s, f // t + 1, h // s, w // s)

    def unpack(self, latents: torch.Tensor) -> torch.Tensor:
        b, z, n, hh, ww = latents.shape
        t, s = self.config.scale_factor_temporal, self.config.scale_factor_spatial
        video = latents.reshape(b, 3, t, s, s, n, hh, ww).permute(0, 1, 5, 2, 6, 3, 7, 4)
        video = video.reshape(b, 3, n * t, hh * s, ww * s)
        return torch.cat([video[:, :, :t].mean(2, keepdim=True), video[:, :, t:]], dim=2)

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        mean = self.pack(x)
        # A point mass: the "distribution" has the packing as its mode and (almost) no spread.
        dist = DiagonalGaussianDistribution(torch.cat([mean, torch.full_like(mean, -30.0)], dim=1))
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        video = self.unpack(z).clamp(-1, 1)
        if return_dict:
            from diffusers.models.autoencoders.vae import DecoderOutput

            return DecoderOutput(sample=video)
        return (video,)
