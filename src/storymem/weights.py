"""Reading weight files safely: safetensors, or torch files through the weights-only loader.

Every problem is one line naming the file: missing, damaged, pickled objects (never loaded, and
no advice to load them unsafely), not a mapping of tensors, NaN or infinite values.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
from pathlib import Path

import torch

from .errors import InputError, NumericalError, StoryMemError

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def refused_objects(e: Exception) -> bool:
    """Whether torch's weights-only loader refused pickled objects (code), as opposed to garbage.
    Its wording changed over versions ("Unsupported global", later "unsupported GLOBAL ... whose
    module ... is blocked"), so it is matched without case."""
    return "unsupported global" in str(e).lower()


def read_weights(
    path: str | Path,
    what: str,
    error: type[StoryMemError] = InputError,
    nested: str | None = None,
    fetch: str | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a weights file. `nested`: a key under which a checkpoint may keep
    its state dict (e.g. ViCLIP's "model"). `fetch`: the command that gets the file again, named
    when it is damaged."""
    path = Path(path)
    again = f"; fetch it again with: {fetch}" if fetch else ""
    if not path.is_file():
        raise error(f"{path}: {what} not found{again}")
    metadata: dict[str, str] = {}
    try:
        if path.suffix not in TORCH_SUFFIXES:
            check_safetensors(path, what, error, fetch)
        if path.suffix in TORCH_SUFFIXES:
            weights = torch.load(path, map_location="cpu", weights_only=True)
        else:
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            weights = load_file(str(path))
    except pickle.UnpicklingError as e:
        if not refused_objects(e):  # garbage, not objects the weights-only loader refuses
            raise error(f"{path}: cannot read it as {what} (not a torch or safetensors file{again})") from None
        raise error(
            f"{path}: not a plain weights file (it holds pickled objects, which are not loaded); "
            "convert it to .safetensors"
        ) from None
    except Exception as e:  # truncated, foreign or damaged: which file, not a traceback
        if isinstance(e, StoryMemError):
            raise
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise error(
            f"{path}: cannot read it as {what} ({type(e).__name__}{': ' + first if first else ''}){again}"
        ) from None
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


def safetensors_header(path: Path) -> tuple[dict, int] | None:
    """(header, data bytes it describes) of a safetensors file, or None if it has no readable
    header. Reads the first bytes only."""
    try:
        with open(path, "rb") as f:
            size_bytes = f.read(8)
            if len(size_bytes) < 8:
                return None
            size = struct.unpack("<Q", size_bytes)[0]
            if size > min(path.stat().st_size, 100_000_000):
                return None
            header = json.loads(f.read(size))
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    return header, 8 + size + max(ends, default=0)


def check_safetensors(path: str | Path, what: str, error: type[StoryMemError] = InputError, fetch=None) -> None:
    """One line for a safetensors file that is not one, or is shorter than its header says (a
    download cut short): found from its header, without reading the tensors."""
    path = Path(path)
    again = f"; fetch it again with: {fetch}" if fetch else ""
    found = safetensors_header(path)
    if found is None:
        raise error(
            f"{path}: cannot read it as {what} (no readable safetensors header: damaged or not fully downloaded){again}"
        )
    size = path.stat().st_size
    if size < found[1]:
        raise error(f"{path}: {what} is cut short ({size} of {found[1]} bytes; a download that did not finish?){again}")


def check_weights_folder(folder: str | Path, what: str, error: type[StoryMemError] = InputError, fetch=None) -> None:
    """Every safetensors file under a folder, checked as `check_safetensors` does."""
    for file in sorted(Path(folder).rglob("*.safetensors")):
        check_safetensors(file, what, error, fetch)


FINGERPRINT_TEXT = (".json", ".txt", ".model", ".yaml")  # small files read whole


def fingerprint(path: str | Path) -> str:
    """Which weights these are, cheaply: for each file (its path inside the folder), its size, and
    its header and the first and last 64 KB of its tensors (safetensors: a retrained model of the
    same shapes differs there), its whole text (configs, tokenizer files) or its first 64 KB (other
    files). The same files at another path give the same fingerprint; 27 GB are not hashed."""
    root = Path(path).resolve()
    files = [root] if root.is_file() else sorted(f for f in root.rglob("*") if f.is_file() and not _hidden(f, root))
    digest = hashlib.sha256()
    for file in files:
        name = "" if file == root else file.relative_to(root).as_posix()
        size = file.stat().st_size
        digest.update(f"{name}\0{size}\0".encode())
        if file.suffix == ".safetensors":  # its header, and the first and last 64 KB of its tensors
            found = safetensors_header(file)
            digest.update(json.dumps(found[0] if found else None, sort_keys=True).encode())
            with open(file, "rb") as f:
                digest.update(f.read(65536 + 8 + (len(json.dumps(found[0])) if found else 0)))
                f.seek(max(0, size - 65536))
                digest.update(f.read(65536))
        elif file.suffix in FINGERPRINT_TEXT and size <= 20_000_000:
            digest.update(file.read_bytes())
        else:
            with open(file, "rb") as f:
                digest.update(f.read(65536))
    return digest.hexdigest()[:16]


def _hidden(file: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in file.relative_to(root).parts)


def fingerprint_all(paths) -> str | None:
    """One fingerprint for several files or folders (a LoRA's two experts); None for none."""
    paths = list(paths)
    if not paths:
        return None
    if len(paths) == 1:
        return fingerprint(paths[0])
    return hashlib.sha256(" ".join(fingerprint(p) for p in paths).encode()).hexdigest()[:16]
