"""Preview mode: a step-distilled Wan2.2 LoRA (4 steps, no CFG) stacked on the StoryMem LoRA.

The published distilled LoRAs come one file per expert, in Wan's own module names with
`diffusion_model.` keys, `lora_down` / `lora_up` / `alpha` (scale alpha / rank), e.g.

    lightx2v/Wan2.2-Lightning  Wan2.2-I2V-A14B-4steps-lora-rank64-Seko-V1/high_noise_model.safetensors
                                                                         /low_noise_model.safetensors
                               Wan2.2-T2V-A14B-4steps-lora-rank64-Seko-V1.1/... (the first shot)
    Kijai/WanVideo_comfy       Wan22-Lightning/Wan2.2-Lightning_I2V-A14B-4steps-lora_HIGH_fp16.safetensors ...

diffusers' Wan LoRA converter reads that format (and LightX2V's); we only find the files and
load each into its expert as the adapter ``preview``. The files are sorted by what their path
says: the expert by "high" / "low" in the file name, the task by "t2v" / "i2v" in the path
(neither = I2V). The I2V pair is required; the T2V pair is optional (without it a first shot
with no memory samples at full quality).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..errors import LoraError, NumericalError
from ..weights import check_finite, check_safetensors

PREVIEW_ADAPTER = "preview"
EXPERTS = ("high", "low")
PREVIEW_FETCH = "hf download lightx2v/Wan2.2-Lightning --local-dir models/Wan2.2-Lightning (see docs/real-weights.md)"


@dataclass(frozen=True)
class PreviewFiles:
    folder: Path
    i2v: dict[str, Path]  # {"high": file, "low": file}
    t2v: dict[str, Path] | None


def _classify(file: Path, folder: Path) -> tuple[str, str] | None:
    name = file.name.lower()
    expert = "high" if "high" in name else "low" if "low" in name else None
    if expert is None:
        return None
    path = str(file.relative_to(folder)).lower()
    return ("t2v" if "t2v" in path and "i2v" not in path else "i2v"), expert


def find_preview_files(folder: str | Path) -> PreviewFiles:
    """The distilled LoRA files in `folder` (and its direct subfolders), sorted by task and expert."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise LoraError(f"--preview {folder}: no such folder (download the distilled LoRAs into it; see the README)")
    found: dict[tuple[str, str], list[Path]] = {}
    for file in sorted([*folder.glob("*.safetensors"), *folder.glob("*/*.safetensors")]):
        slot = _classify(file, folder)
        if slot is not None:
            found.setdefault(slot, []).append(file)
    for (task, expert), files in found.items():
        if len(files) > 1:
            names = ", ".join(str(f.relative_to(folder)) for f in files)
            raise LoraError(
                f"--preview {folder}: several {task.upper()} {expert}-noise files ({names}); keep one version"
            )
    i2v = {e: found[("i2v", e)][0] for e in EXPERTS if ("i2v", e) in found}
    if len(i2v) != 2:
        missing = [e for e in EXPERTS if e not in i2v]
        raise LoraError(
            f"--preview {folder}: no I2V {' and '.join(missing)}-noise LoRA file (*.safetensors with "
            f"'{missing[0]}' in its name), e.g. lightx2v/Wan2.2-Lightning's Wan2.2-I2V-A14B-4steps-lora-rank64-Seko-V1"
        )
    t2v = {e: found[("t2v", e)][0] for e in EXPERTS if ("t2v", e) in found}
    if len(t2v) == 1:
        raise LoraError(f"--preview {folder}: found only one T2V file ({next(iter(t2v.values())).name}); need both")
    for file in [*i2v.values(), *t2v.values()]:  # whole, before anything loads
        check_safetensors(file, "distilled LoRA weights", LoraError, PREVIEW_FETCH)
    return PreviewFiles(folder, i2v, t2v or None)


@contextlib.contextmanager
def _diffusers_quiet():
    """No diffusers warnings meanwhile: a file that does not fit gets our one line instead."""
    from diffusers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def load_preview_lora(model: torch.nn.Module, file: Path) -> None:
    """Load one distilled-LoRA file into one expert as the ``preview`` adapter (diffusers'
    conversion: alpha / rank folded into the weights)."""
    from diffusers.loaders import WanLoraLoaderMixin

    check_safetensors(file, "distilled LoRA weights", LoraError, PREVIEW_FETCH)
    try:
        check_finite(load_file(str(file)), file)
        state = WanLoraLoaderMixin.lora_state_dict(str(file))
        if PREVIEW_ADAPTER in getattr(model, "peft_config", {}):
            model.delete_adapters(PREVIEW_ADAPTER)
        with warnings.catch_warnings(), _diffusers_quiet():  # a second adapter beside StoryMem's is what we want
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            model.load_lora_adapter(state, prefix="transformer", adapter_name=PREVIEW_ADAPTER)
        if PREVIEW_ADAPTER not in getattr(model, "peft_config", {}):
            raise ValueError("none of its keys is a LoRA layer of a Wan transformer")
    except NumericalError:
        raise
    except Exception as e:  # a foreign or damaged file: say which, in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LoraError(f"{file}: cannot load it as a Wan2.2 distilled LoRA ({first[:300]})") from None
