"""Aesthetic quality as VBench measures it (the paper's "aesthetic" column).

The LAION aesthetic predictor (a linear head on CLIP ViT-L/14 image features; VBench uses
`sa_0_4_vit_l_14_linear.pth`) scores every frame of a shot after VBench's CLIP preprocessing
(short side 224, centre crop, CLIP mean/std) and L2 normalisation of the features; the shot's
score is the mean over its frames divided by 10, the run's the mean over shots.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

import torch

from ..errors import WeightsNotFoundError
from ..scoring.quality import load_aesthetic_head
from .extractors import ClipVideoText

VBENCH_HEAD_URL = "https://github.com/LAION-AI/aesthetic-predictor/raw/main/sa_0_4_vit_l_14_linear.pth"


def cache_dir() -> Path:
    return Path(os.environ.get("STORYMEM_CACHE", Path.home() / ".cache" / "storymem"))


def fetch_head(source: str) -> Path:
    """A local path as is; a URL downloaded once into the cache (weights are read weights-only)."""
    if not source.startswith(("http://", "https://")):
        return Path(source)
    target = cache_dir() / f"{hashlib.sha256(source.encode()).hexdigest()[:12]}-{source.rsplit('/', 1)[-1]}"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            urllib.request.urlretrieve(source, target.with_suffix(".part"))
        except OSError as e:
            raise WeightsNotFoundError(
                f"cannot download the aesthetic head from {source} ({e}); download it by hand and pass "
                "--aesthetic-head PATH, or --aesthetic-head none to skip the aesthetic metric"
            ) from None
        target.with_suffix(".part").rename(target)
    return target


class LaionAesthetic:
    def __init__(self, clip: ClipVideoText, head: torch.nn.Module, name: str = "laion-aesthetic"):
        self.clip, self.head, self.name = clip, head.eval().requires_grad_(False), name

    @classmethod
    def from_source(cls, clip: ClipVideoText, source: str) -> LaionAesthetic:
        return cls(clip, load_aesthetic_head(fetch_head(source)))

    @classmethod
    def tiny(cls, clip: ClipVideoText, seed: int = 0) -> LaionAesthetic:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = torch.nn.Linear(clip.model.config.projection_dim, 1)
        return cls(clip, head, name="tiny-aesthetic")

    def frame_scores(self, frames) -> torch.Tensor:
        """Per frame, on VBench's 0..1 scale (the head's 1..10 score / 10)."""
        return self.feature_scores(self.clip.frame_features(frames))

    @torch.no_grad()
    def feature_scores(self, features: torch.Tensor) -> torch.Tensor:
        """The same from CLIP frame features already computed."""
        head_param = next(self.head.parameters())
        return self.head(features.to(head_param.device, head_param.dtype)).float().cpu().squeeze(-1) / 10.0

    def score(self, frames) -> float:
        return float(self.frame_scores(frames).mean())
