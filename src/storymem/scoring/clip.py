"""CLIP image embeddings via transformers (no torchvision needed)."""

from __future__ import annotations

from collections.abc import Sequence

import PIL.Image
import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

try:  # transformers >= 5: the PIL processor, which needs no torchvision
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor
except ImportError:
    from transformers import CLIPImageProcessor

from .. import hub
from ..errors import WeightsNotFoundError

CLIP_B32 = "openai/clip-vit-base-patch32"  # the published keyframe-selection model
CLIP_FILES = ["*.json", "*.safetensors", "*.txt"]  # not the repo's duplicate pytorch/flax/tf weights
# The random-weight CLIP of tests (keyframe selection here, evaluation features in eval/).
TINY_CLIP_VISION = dict(
    hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
)
TINY_CLIP_PROJECTION = 16


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
        source = model_id
        if hub.is_hub_id(model_id):  # cache first; offline: one line at once, no retries
            hint = f"download them with: hf download {model_id}, or pass a local CLIP folder"
            source = str(hub.snapshot(model_id, f"CLIP weights {model_id}", hint, allow_patterns=CLIP_FILES))
        try:
            model = CLIPVisionModelWithProjection.from_pretrained(source, **kwargs)
        except OSError as e:
            raise WeightsNotFoundError(
                f"CLIP weights {model_id} not found locally and not downloadable ({type(e).__name__}); "
                f"download them with: hf download {model_id}"
            ) from None
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
