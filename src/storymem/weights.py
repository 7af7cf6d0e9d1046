"""Reading weight files safely: safetensors, or torch files through the weights-only loader.

Every problem is one line naming the file: missing, damaged, pickled objects (never loaded, and
no advice to load them unsafely), not a mapping of tensors, NaN or infinite values.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from .errors import InputError, NumericalError, StoryMemError

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def read_weights(
    path: str | Path, what: str, error: type[StoryMemError] = InputError, nested: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a weights file. `nested`: a key under which a checkpoint may keep
    its state dict (e.g. ViCLIP's "model")."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    metadata: dict[str, str] = {}
    try:
        if path.suffix in TORCH_SUFFIXES:
            weights = torch.load(path, map_location="cpu", weights_only=True)
        else:
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            weights = load_file(str(path))
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):  # garbage, not objects the weights-only loader refuses
            raise error(f"{path}: cannot read it as {what} (not a torch or safetensors file)") from None
        raise error(
            f"{path}: not a plain weights file (it holds pickled objects, which are not loaded); "
            "convert it to .safetensors"
        ) from None
    except Exception as e:  # truncated, foreign or damaged: which file, not a traceback
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise error(f"{path}: cannot read it as {what} ({type(e).__name__}{': ' + first if first else ''})") from None
    if nested and isinstance(weights, dict) and isinstance(weights.get(nested), dict):
        weights = weights[nested]
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise error(f"{path}: not {what} (expected a mapping of names to tensors)")
    check_finite(weights, path)
    return weights, metadata


def check_finite(weights: dict[str, torch.Tensor], file) -> None:
    """NaN or infinite weights would turn every output black: refuse them, naming the tensor."""
    for key, tensor in weights.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise NumericalError(f"{file}: {key} holds NaN or infinite values; the file is damaged")
