"""Video-text feature extractors for the metrics. One small interface, two models:

    extractor.name                      -> str (written next to every number)
    extractor.video_features(frames)    -> [D], L2-normalised (frames: uint8 [T, H, W, 3])
    extractor.sample_indices(total)     -> the frames of a `total`-frame video it looks at
    extractor.text_features(texts)      -> [N, D], L2-normalised

- `ClipVideoText` (default): CLIP ViT-L/14 (transformers). A video's feature is the mean of the
  L2-normalised image features of 8 evenly spaced frames (first and last included), normalised
  again; frames go through VBench's CLIP preprocessing (short side 224, centre crop). Text:
  CLIP's tokenizer, truncated at 77 tokens. It also gives per-frame features for the aesthetic
  metric, so CLIP-L is loaded once.
- `ViClipVideoText`: ViCLIP-L (the paper's choice), from the released checkpoint; 8 frames by
  InternVid's sampling and preprocessing; text truncated at 32 tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

from .. import hub
from ..errors import WeightsNotFoundError
from ..scoring.clip import TINY_CLIP_PROJECTION, TINY_CLIP_VISION, load_clip, locate_clip
from ..storyboard import evenly_spaced
from .preprocess import clip_frames, viclip_frame_indices, viclip_frames
from .viclip import ViClip, ViClipConfig, load_viclip

CLIP_L14 = "openai/clip-vit-large-patch14"
FRAMES_PER_VIDEO = 8


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _device_dtype(model: torch.nn.Module):
    p = next(model.parameters())
    return p.device, p.dtype


def tiny_clip_tokenizer() -> CLIPTokenizer:
    """CLIP's byte-level BPE with no merges (one token per character), built in memory for tests."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    return CLIPTokenizer(vocab=vocab, merges=[])


def _load_tokenizer(model_id: str) -> CLIPTokenizer:
    try:
        if hub.is_hub_id(model_id):  # the cache first; offline: one line at once
            hint = f"download it with: hf download {model_id} --local-dir DIR"
            model_id = str(
                hub.snapshot(model_id, f"CLIP tokenizer {model_id}", hint, allow_patterns=["*.json", "*.txt"])
            )
        return CLIPTokenizer.from_pretrained(model_id)
    except WeightsNotFoundError:
        raise
    except Exception as e:
        raise WeightsNotFoundError(
            f"CLIP tokenizer {model_id} cannot be loaded ({type(e).__name__}); fetch it again with: "
            f"hf download {CLIP_L14} --local-dir DIR"
        ) from None


class ClipVideoText:
    def __init__(self, model: CLIPModel, tokenizer: CLIPTokenizer, name: str = "clip-vit-l14", batch_size: int = 32):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size
        self.image_size = model.config.vision_config.image_size

    @classmethod
    def from_pretrained(cls, model_id: str = CLIP_L14, device="cpu") -> ClipVideoText:
        folder = locate_clip(model_id, CLIP_L14)
        model = load_clip(CLIPModel, folder, CLIP_L14)
        name = "clip-vit-l14" if model_id == CLIP_L14 else model_id.rsplit("/", 1)[-1]
        return cls(model.to(device), _load_tokenizer(str(folder)), name=name)

    @classmethod
    def tiny(cls, seed: int = 0) -> ClipVideoText:
        """Random weights at toy size: for tests and smoke runs; its numbers mean nothing."""
        tokenizer = tiny_clip_tokenizer()
        config = CLIPConfig(
            text_config=dict(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=37,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=77,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
            ),
            vision_config=TINY_CLIP_VISION,
            projection_dim=TINY_CLIP_PROJECTION,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(CLIPModel(config), tokenizer, name="tiny-clip")

    @torch.no_grad()
    def frame_features(self, frames) -> torch.Tensor:
        """[T, D], L2-normalised, every frame (VBench preprocessing)."""
        device, dtype = _device_dtype(self.model)
        out = []
        for start in range(0, len(frames), self.batch_size):
            pixels = clip_frames(frames[start : start + self.batch_size], self.image_size).to(device, dtype)
            pooled = self.model.vision_model(pixel_values=pixels).pooler_output
            out.append(self.model.visual_projection(pooled).float().cpu())
        return _normalise(torch.cat(out))

    @staticmethod
    def sample_indices(total: int) -> list[int]:
        return evenly_spaced(FRAMES_PER_VIDEO, total)

    def video_features(self, frames) -> torch.Tensor:
        frames = np.asarray(frames)
        return _normalise(self.frame_features(frames[self.sample_indices(len(frames))]).mean(0))

    def pool(self, frame_features: torch.Tensor) -> torch.Tensor:
        """The video feature from features of ALL of a video's frames (no second CLIP pass)."""
        return _normalise(frame_features[self.sample_indices(len(frame_features))].mean(0))

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        device, _ = _device_dtype(self.model)
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=77, return_tensors="pt")
        pooled = self.model.text_model(
            input_ids=tokens["input_ids"].to(device), attention_mask=tokens["attention_mask"].to(device)
        ).pooler_output
        return _normalise(self.model.text_projection(pooled).float().cpu())


class ViClipVideoText:
    name = "viclip-l14"

    def __init__(self, model: ViClip, tokenizer: CLIPTokenizer):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer

    @classmethod
    def from_checkpoint(cls, path, device="cpu", tokenizer_id: str = CLIP_L14) -> ViClipVideoText:
        return cls(load_viclip(path).to(device), _load_tokenizer(tokenizer_id))

    def sample_indices(self, total: int) -> list[int]:
        return viclip_frame_indices(total, self.model.config.num_frames)

    @torch.no_grad()
    def video_features(self, frames) -> torch.Tensor:
        config: ViClipConfig = self.model.config
        device, dtype = _device_dtype(self.model)
        video = viclip_frames(frames, config.num_frames, config.image_size).to(device, dtype)
        return _normalise(self.model.vision_encoder(video).float().cpu()[0])

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """CLIP BPE with start/end tokens, truncated to the context (end token kept), padded with 0."""
        length = self.model.config.context_length
        ids = self.tokenizer(list(texts), truncation=True, max_length=length)["input_ids"]
        out = torch.zeros(len(ids), length, dtype=torch.long)
        for row, seq in enumerate(ids):
            out[row, : len(seq)] = torch.tensor(seq)
        return out

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        device, _ = _device_dtype(self.model)
        return _normalise(self.model.text_encoder(self.tokenize(texts).to(device)).float().cpu())
