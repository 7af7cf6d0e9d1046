"""M2V LoRA training: dataset and memory sampler, latent cache, the accelerate trainer."""

from .cache import EncodeSettings, encode_clip, read_cache, write_cache
from .data import Clip, Draw, MemorySampler, group_indices, load_metadata
from .trainer import TrainConfig, Trainer, build_batch, sample_sigmas, train

__all__ = [
    "Clip",
    "Draw",
    "EncodeSettings",
    "MemorySampler",
    "TrainConfig",
    "Trainer",
    "build_batch",
    "encode_clip",
    "group_indices",
    "load_metadata",
    "read_cache",
    "sample_sigmas",
    "train",
    "write_cache",
]
