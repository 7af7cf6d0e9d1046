"""Images as the pipeline takes them: PIL images or HxWx3 uint8 arrays, turned into pixel tensors
in [-1, 1] (inference and the training cache both use these)."""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from .errors import InputError

Image = PIL.Image.Image | np.ndarray


def as_pil(image: Image, what: str) -> PIL.Image.Image:
    """An RGB PIL image, or one line naming `what` was given instead."""
    if isinstance(image, PIL.Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise InputError(f"{what}: expected a PIL image or an HxWx3 uint8 array, got {array.dtype} {array.shape}")
    return PIL.Image.fromarray(array)


def image_to_tensor(image: PIL.Image.Image, height: int, width: int) -> torch.Tensor:
    """[1, 3, H, W] in [-1, 1]; other sizes are resized bicubically, as the published code does."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0
    if pixels.shape[-2:] != (height, width):
        pixels = F.interpolate(pixels, size=(height, width), mode="bicubic", align_corners=False)
    return pixels
