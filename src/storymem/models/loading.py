"""Load a preset's components: diffusers-format Wan2.2 folders or hub repos, or a built-in model.

Missing weights are a `WeightsNotFoundError` that says where we looked and the command that
downloads them; nothing is fetched before we know it exists.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel

from ..errors import WeightsNotFoundError
from .presets import Preset
from .transformer import StoryMemWanTransformer3DModel


def flow_scheduler(shift: float = 4.0) -> UniPCMultistepScheduler:
    """Wan's sampler: UniPC on flow-matching sigmas. The shift is set per shot kind."""
    return UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift, num_train_timesteps=1000
    )


def locate_weights(source: str, what: str) -> str:
    """Return a loadable folder or repo id, or say exactly why it cannot be loaded."""
    path = Path(source).expanduser()
    stem = source.rstrip("/").split("/")[-1]
    hint = f"download them with: hf download {source if not path.exists() else '<repo id>'} --local-dir ./models/{stem}"
    if path.exists():
        if not (path / "model_index.json").is_file() and not (path / "transformer").is_dir():
            raise WeightsNotFoundError(
                f"{what} weights not found: {path} is not a diffusers-format folder (no model_index.json); "
                f"use the '-Diffusers' repos, e.g. Wan-AI/Wan2.2-I2V-A14B-Diffusers"
            )
        return str(path)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", source):
        raise WeightsNotFoundError(f"{what} weights not found: no folder {path}")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.constants import HF_HUB_CACHE

    try:
        hf_hub_download(source, "model_index.json")
    except Exception as e:
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise WeightsNotFoundError(
            f"{what} weights not found: looked for {source} in the Hugging Face cache {HF_HUB_CACHE} and "
            f"could not download it{offline} ({type(e).__name__}); {hint}, then pass that folder"
        ) from None
    return source


def load_wan_components(
    preset: Preset,
    t2v: str | None = None,
    i2v: str | None = None,
    load_t2v: bool = True,
    torch_dtype: torch.dtype | None = None,
) -> dict:
    """Text encoder, tokenizer and VAE are shared (taken from the I2V repo); the T2V experts are
    loaded only when `load_t2v` (they serve the first shot when no reference images are given)."""
    from transformers import AutoTokenizer, UMT5EncoderModel

    dtype = torch_dtype or preset.dtype
    i2v_source = locate_weights(i2v or preset.i2v_source, "Wan2.2 I2V-A14B")
    t2v_source = locate_weights(t2v or preset.t2v_source, "Wan2.2 T2V-A14B") if load_t2v else None

    def expert(cls, source, subfolder):
        return cls.from_pretrained(source, subfolder=subfolder, torch_dtype=dtype).eval()

    return dict(
        tokenizer=AutoTokenizer.from_pretrained(i2v_source, subfolder="tokenizer"),
        text_encoder=UMT5EncoderModel.from_pretrained(i2v_source, subfolder="text_encoder", torch_dtype=dtype).eval(),
        # The VAE stays in fp32: it is small and bf16 visibly degrades decoding.
        vae=AutoencoderKLWan.from_pretrained(i2v_source, subfolder="vae", torch_dtype=torch.float32).eval(),
        scheduler=flow_scheduler(preset.m2v.shift),
        transformer=expert(StoryMemWanTransformer3DModel, i2v_source, "transformer"),
        transformer_2=expert(StoryMemWanTransformer3DModel, i2v_source, "transformer_2"),
        t2v_transformer=expert(WanTransformer3DModel, t2v_source, "transformer") if t2v_source else None,
        t2v_transformer_2=expert(WanTransformer3DModel, t2v_source, "transformer_2") if t2v_source else None,
    )


def load_components(preset: Preset, **kwargs) -> dict:
    if preset.build is not None:
        return preset.build()
    return load_wan_components(preset, **kwargs)
