"""Quality filters for keyframe selection. Each has `score(images) -> [N]` and `threshold`.

- ``hpsv3``: the published choice (HPSv3, a Qwen2-VL-7B preference model, empty prompt,
  threshold 3.0). Optional extra: ``pip install "storymem[hpsv3]"``. Loaded once per run.
- ``aesthetic``: the LAION aesthetic predictor (a linear head on CLIP ViT-L/14 image features,
  scores about 1-10). Threshold 4.5: below it frames are typically blurred, washed out or
  corrupted; typical generated frames score 5-6.5.
- ``none``: no filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import PIL.Image
import torch

from ..errors import InputError, WeightsNotFoundError
from ..weights import read_weights

CLIP_L14 = "openai/clip-vit-large-patch14"
LAION_HEAD_URL = (
    "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/sac+logos+ava1-l14-linearMSE.pth"
)


class HPSv3Scorer:
    threshold = 3.0

    def __init__(self, device: str | torch.device = "cuda"):
        try:
            from hpsv3 import HPSv3RewardInferencer
        except ImportError:
            raise InputError('the hpsv3 quality filter needs its package: pip install "storymem[hpsv3]"') from None
        self.inferencer = HPSv3RewardInferencer(device=str(device))

    @torch.no_grad()
    def score(self, images: Sequence[PIL.Image.Image]) -> torch.Tensor:
        rewards = self.inferencer.reward(prompts=[""] * len(images), image_paths=list(images))
        rewards = torch.as_tensor(rewards).float()
        return (rewards[:, 0] if rewards.ndim == 2 else rewards).cpu()  # (mean, sigma) -> mean


class AestheticScorer:
    """LAION improved aesthetic predictor: MLP/linear head on L2-normalised CLIP ViT-L/14 image
    embeddings. `head` is a path to its weights (.pth read weights-only, or .safetensors)."""

    threshold = 4.5

    def __init__(self, embedder, head: torch.nn.Module):
        self.embedder, self.head = embedder, head.eval().requires_grad_(False)

    @classmethod
    def from_pretrained(cls, head_path: str | Path, clip_id: str = CLIP_L14, device="cpu") -> AestheticScorer:
        from .clip import ClipImageEmbedder

        head = load_aesthetic_head(head_path)  # the small file first: fail fast before a CLIP download
        return cls(ClipImageEmbedder.from_pretrained(clip_id, device=device), head)

    @torch.no_grad()
    def score(self, images: Sequence[PIL.Image.Image]) -> torch.Tensor:
        features = self.embedder.embed(images)
        return self.head(features).float().squeeze(-1)


def load_aesthetic_head(path: str | Path) -> torch.nn.Module:
    """The LAION head: a Linear(768, 1), or the 'improved' MLP (layers.0 ... layers.7)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"aesthetic head not found: {path}; download it from {LAION_HEAD_URL}")
    state, _ = read_weights(path, "a LAION aesthetic head", fetch=f"download it from {LAION_HEAD_URL}")
    layout = f"{path}: not a LAION aesthetic head (expected weight/bias, or layers.0 ... layers.7); get it from {LAION_HEAD_URL}"
    if set(state) == {"weight", "bias"} and state["weight"].ndim == 2:
        head = torch.nn.Linear(state["weight"].shape[1], 1)
    elif "layers.0.weight" in state and state["layers.0.weight"].ndim == 2:
        dims = [state["layers.0.weight"].shape[1], 1024, 128, 64, 16, 1]
        head = torch.nn.Sequential()
        head.layers = torch.nn.Sequential(
            torch.nn.Linear(dims[0], dims[1]),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(dims[1], dims[2]),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(dims[2], dims[3]),
            torch.nn.Dropout(0.1),
            torch.nn.Linear(dims[3], dims[4]),
            torch.nn.Linear(dims[4], dims[5]),
        )
    else:
        raise InputError(layout)
    try:
        head.load_state_dict(state)
    except RuntimeError:  # missing, unexpected or misshapen tensors
        raise InputError(layout) from None
    return head


def make_quality_scorer(name: str, device="cpu", aesthetic_head: str | None = None):
    """Build a scorer by name, once per run; None for ``none``."""
    if name == "none":
        return None
    if name == "hpsv3":
        return HPSv3Scorer(device=device)
    if name == "aesthetic":
        if not aesthetic_head:
            raise InputError(
                f"the aesthetic quality filter needs --aesthetic-head PATH (LAION head, from {LAION_HEAD_URL})"
            )
        return AestheticScorer.from_pretrained(aesthetic_head, device=device)
    raise InputError(f"quality filter must be hpsv3, aesthetic or none, got {name!r}")
