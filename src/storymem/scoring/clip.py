"""CLIP image embeddings via transformers (no torchvision needed)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import PIL.Image
import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

try:  # transformers >= 5: the PIL processor, which needs no torchvision
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor
except ImportError:
    from transformers import CLIPImageProcessor

from .. import hub
from ..errors import WeightsNotFoundError
from ..weights import check_weights_folder

CLIP_B32 = "openai/clip-vit-base-patch32"  # the published keyframe-selection model
CLIP_FILES = ["*.json", "*.safetensors", "*.txt"]  # not the repo's duplicate pytorch/flax/tf weights
# The random-weight CLIP of tests (keyframe selection here, evaluation features in eval/).
TINY_CLIP_VISION = dict(
    hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
)
TINY_CLIP_PROJECTION = 16


def clip_fetch(folder: str | Path, repo: str) -> str:
    return f"hf download {repo} --local-dir {folder}"


def locate_clip(source: str, repo: str) -> Path:
    """The local folder of CLIP weights `source` (a folder, or a hub id looked up in the cache
    first), checked before it is loaded: a CLIP config, every safetensors file whole. `repo`:
    the model a broken folder is fetched again from."""
    if hub.is_hub_id(source):  # cache first; offline: one line at once, no retries
        hint = f"download them with: hf download {source} --local-dir DIR, then pass that folder"
        folder = hub.snapshot(source, f"CLIP weights {source}", hint, allow_patterns=CLIP_FILES)
        repo = source
    else:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise WeightsNotFoundError(f"CLIP weights not found: no folder {folder}")
    config = folder / "config.json"
    try:
        model_type = json.loads(config.read_text()).get("model_type", "")
    except (OSError, ValueError, AttributeError):
        raise WeightsNotFoundError(
            f"{config}: missing or unreadable, so {folder} is not a usable CLIP folder; fetch it again with: "
            f"{clip_fetch(folder, repo)}"
        ) from None
    if "clip" not in str(model_type):
        raise WeightsNotFoundError(
            f"{folder}: holds a {model_type or 'unknown'} model, not CLIP (config.json model_type); "
            f"fetch CLIP with: {clip_fetch(folder, repo)}"
        )
    check_weights_folder(folder, "CLIP weights", WeightsNotFoundError, clip_fetch(folder, repo))
    return folder


def load_clip(cls, folder: Path, repo: str, **kwargs):
    """`cls.from_pretrained(folder)`, with one line naming the folder if it cannot be loaded (no
    weights, other shapes than its config says)."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity(hf_logging.CRITICAL)  # its loading bar and mismatch report: our line says it
    hf_logging.disable_progress_bar()
    try:
        return cls.from_pretrained(str(folder), **kwargs)
    except Exception as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        if "mismatched" in first:  # transformers points at a report we silenced
            first = "its weights have other shapes than its config.json says"
        raise WeightsNotFoundError(
            f"{folder}: cannot load it as CLIP ({first}); fetch it again with: {clip_fetch(folder, repo)}"
        ) from None
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


class ClipImageEmbedder:
    """Frames resized straight to the model's input size (no crop, as the published selection),
    CLIP mean/std, projected image embeddings, L2-normalised."""

    def __init__(self, model: CLIPVisionModelWithProjection, batch_size: int = 32):
        self.model = model.eval().requires_grad_(False)
        size = model.config.image_size
        self.processor = CLIPImageProcessor(
            do_resize=True, size={"height": size, "width": size}, do_center_crop=False, resample=PIL.Image.BICUBIC
        )
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, model_id: str = CLIP_B32, device: str | torch.device = "cpu", **kwargs):
        folder = locate_clip(model_id, CLIP_B32)
        model = load_clip(CLIPVisionModelWithProjection, folder, CLIP_B32, **kwargs)
        return cls(model.to(device))

    @classmethod
    def tiny(cls, seed: int = 0) -> ClipImageEmbedder:
        """Random-weight CLIP at toy size for tests."""
        config = CLIPVisionConfig(**TINY_CLIP_VISION, projection_dim=TINY_CLIP_PROJECTION)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(CLIPVisionModelWithProjection(config))

    @torch.no_grad()
    def embed(self, images: Sequence[PIL.Image.Image]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = self.processor(images=list(images[start : start + self.batch_size]), return_tensors="pt")
            pixels = batch["pixel_values"].to(device, dtype)
            out.append(self.model(pixel_values=pixels).image_embeds.float().cpu())
        embeds = torch.cat(out)
        return embeds / embeds.norm(dim=-1, keepdim=True)
