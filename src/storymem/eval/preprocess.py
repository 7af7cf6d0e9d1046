"""Frame preprocessing of the evaluation models, reproduced without torchvision.

- `clip_frames`: VBench's `clip_transform(224)` (its aesthetic-quality protocol): the short side
  resized to 224 (bicubic, no antialiasing, rounded back to uint8 as torchvision does for uint8
  tensors), a centre crop to 224 x 224, /255, CLIP mean/std. The long side is int(224 * long /
  short), torchvision's rule: 832 x 480 -> 388 x 224, crop offset round((388 - 224) / 2) = 82.
- `viclip_frames`: InternVid's `frames2tensor`: 8 frames at stride len // 8 from the start,
  each resized to 224 x 224 (bilinear, as cv2.INTER_LINEAR, rounded to uint8), /255, ImageNet
  mean/std.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _as_tensor(frames) -> torch.Tensor:
    """uint8 [T, H, W, 3] (numpy or torch) -> float [T, 3, H, W] in 0..255."""
    frames = torch.as_tensor(np.asarray(frames))
    if frames.ndim == 3:
        frames = frames[None]
    return frames.permute(0, 3, 1, 2).float()


def _resize_uint8(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    x = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=False)
    return x.clamp(0, 255).round()


def _normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    mean = torch.tensor(mean).view(1, 3, 1, 1)
    std = torch.tensor(std).view(1, 3, 1, 1)
    return (x / 255.0 - mean) / std


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """torchvision's Resize(int): the short side becomes `short`, the long side int(short * long / short_side)."""
    if height <= width:
        return short, int(short * width / height)
    return int(short * height / width), short


def centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    height, width = x.shape[-2:]
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return x[..., top : top + size, left : left + size]


def clip_frames(frames, size: int = 224) -> torch.Tensor:
    """VBench's CLIP preprocessing: uint8 [T, H, W, 3] -> normalised [T, 3, size, size]."""
    x = _as_tensor(frames)
    x = _resize_uint8(x, short_side_size(x.shape[-2], x.shape[-1], size), mode="bicubic")
    return _normalise(centre_crop(x, size), CLIP_MEAN, CLIP_STD)


def viclip_frame_indices(total: int, count: int = 8) -> list[int]:
    """frames2tensor's sampling: every (total // count)-th frame from the first, `count` of them."""
    if total < count:
        raise ValueError(f"ViCLIP needs at least {count} frames, the video has {total}")
    return list(range(0, total, total // count))[:count]


def viclip_frames(frames, count: int = 8, size: int = 224) -> torch.Tensor:
    """InternVid's ViCLIP preprocessing: uint8 [T, H, W, 3] -> [1, count, 3, size, size]."""
    x = _as_tensor(frames)
    x = x[viclip_frame_indices(len(x), count)]
    x = _resize_uint8(x, (size, size), mode="bilinear")
    return _normalise(x, IMAGENET_MEAN, IMAGENET_STD)[None]
