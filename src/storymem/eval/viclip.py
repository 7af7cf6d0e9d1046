"""ViCLIP (InternVid, Wang et al. 2023): the video-text model the StoryMem paper evaluates with.

Written from the published architecture so that the released checkpoint
`ViClip-InternVid-10M-FLT.pth` (a dict with "model": state dict) loads with strict key checking:

    vision_encoder: ViT-L/14 over 8 frames. A Conv3d patch embedding (kernel 1 x 14 x 14, no
      bias), a class token, spatial position embeddings (257 x 1024), temporal position
      embeddings (1 x 8 x 1024, added to patch tokens only), one transformer over all frames'
      patch tokens plus the class token, ln_post, and the class token times `proj` (1024 x 768).
    text_encoder: the CLIP text transformer (width 768, 12 layers, causal), context length 32,
      the end-of-text token's feature times `text_projection` (768 x 768).
    temp: the contrastive temperature (unused here).

Blocks are CLIP's: x + attn(ln_1(x)), x + mlp(ln_2(x)); mlp = c_fc, QuickGELU, c_proj;
attention is torch's MultiheadAttention (in_proj_weight/bias, out_proj).
Text is tokenised with CLIP's BPE (the same vocabulary as ViCLIP's simple tokenizer), padded with 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError, WeightsNotFoundError
from ..weights import read_weights

VICLIP_URL = "https://huggingface.co/OpenGVLab/ViCLIP/blob/main/ViClip-InternVid-10M-FLT.pth"


@dataclass(frozen=True)
class ViClipConfig:
    image_size: int = 224
    patch_size: int = 14
    num_frames: int = 8
    vision_width: int = 1024
    vision_layers: int = 24
    vision_heads: int = 16
    embed_dim: int = 768
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    context_length: int = 32
    vocab_size: int = 49408


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Mlp(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.gelu = QuickGELU()
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = Mlp(width)

    def forward(self, x, mask=None):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList(Block(width, heads) for _ in range(layers))

    def forward(self, x, mask=None):
        for block in self.resblocks:
            x = block(x, mask)
        return x


class VisionEncoder(nn.Module):
    def __init__(self, c: ViClipConfig):
        super().__init__()
        w, p = c.vision_width, c.patch_size
        self.conv1 = nn.Conv3d(3, w, (1, p, p), (1, p, p), bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(w))
        self.positional_embedding = nn.Parameter(torch.zeros((c.image_size // p) ** 2 + 1, w))
        self.temporal_positional_embedding = nn.Parameter(torch.zeros(1, c.num_frames, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, c.vision_layers, c.vision_heads)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.zeros(w, c.embed_dim))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video [B, T, 3, H, W] -> [B, embed_dim]."""
        x = self.conv1(video.permute(0, 2, 1, 3, 4))  # [B, W, T, h, w]
        b, _, t = x.shape[:3]
        x = x.flatten(3).permute(0, 2, 3, 1)  # [B, T, N, W]
        x = x + self.positional_embedding[1:]
        temporal = self.temporal_positional_embedding
        x = x + (temporal.mean(1) if t == 1 else temporal[:, :t]).view(1, -1, 1, x.shape[-1])
        cls = (self.class_embedding + self.positional_embedding[0]).expand(b, 1, -1)
        x = torch.cat([cls, x.flatten(1, 2)], dim=1)  # token order is irrelevant to the class token
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class TextEncoder(nn.Module):
    def __init__(self, c: ViClipConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(c.vocab_size, c.text_width)
        self.positional_embedding = nn.Parameter(torch.zeros(c.context_length, c.text_width))
        self.transformer = Transformer(c.text_width, c.text_layers, c.text_heads)
        self.ln_final = nn.LayerNorm(c.text_width)
        self.text_projection = nn.Parameter(torch.zeros(c.text_width, c.embed_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, L] (0-padded; the end-of-text id is the largest) -> [B, embed_dim]."""
        length = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:length]
        causal = torch.full((length, length), float("-inf"), device=x.device).triu(1)
        x = self.ln_final(self.transformer(x, causal))
        return x[torch.arange(len(x)), tokens.argmax(dim=-1)] @ self.text_projection


class ViClip(nn.Module):
    def __init__(self, config: ViClipConfig = ViClipConfig()):
        super().__init__()
        self.config = config
        self.vision_encoder = VisionEncoder(config)
        self.text_encoder = TextEncoder(config)
        self.temp = nn.Parameter(torch.tensor(0.01))


def load_viclip(path: str | Path, config: ViClipConfig = ViClipConfig()) -> ViClip:
    """The released checkpoint, weights only, every key checked (a missing or unexpected key is an error)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"ViCLIP checkpoint not found: {path}; download it from {VICLIP_URL}")
    state, _ = read_weights(path, "a ViCLIP checkpoint", nested="model", fetch=f"download it from {VICLIP_URL}")
    model = ViClip(config)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes that do not fit
        detail = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e))
        raise InputError(f"{path}: does not match the ViCLIP-L layout ({detail})") from None
    problems = [f"missing {k}" for k in result.missing_keys] + [f"unexpected {k}" for k in result.unexpected_keys]
    if problems:
        shown = ", ".join(problems[:3]) + (f" and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise InputError(f"{path}: does not match the ViCLIP-L layout ({shown})")
    return model.eval().requires_grad_(False)
