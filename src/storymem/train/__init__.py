"""M2V LoRA training: dataset and memory sampler, latent cache, the accelerate trainer.

Names are imported when first used, so the command line can read `TrainConfig`'s defaults
(train/config.py) without loading torch."""

import importlib

_WHERE = {
    "Clip": "data",
    "Draw": "data",
    "MemorySampler": "data",
    "group_indices": "data",
    "load_metadata": "data",
    "EncodeSettings": "cache",
    "encode_clip": "cache",
    "read_cache": "cache",
    "write_cache": "cache",
    "TrainConfig": "config",
    "check_config": "config",
    "Trainer": "trainer",
    "build_batch": "trainer",
    "sample_sigmas": "trainer",
    "train": "trainer",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(name)
