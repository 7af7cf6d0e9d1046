"""Load a preset's components: diffusers-format Wan2.2 folders or hub repos, or a built-in model.

A hub id is looked up in the local Hugging Face cache first and loaded from there without
touching the network. Only when it is not cached do we go online: with HF_HUB_OFFLINE set, or
when the hub cannot be reached, that is one line at once (no retries); otherwise the repo is
downloaded. Folders are checked before any weights are read: the right kind of pipeline (I2V
for --i2v, T2V for --t2v) with the subfolders we load.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from diffusers import AutoencoderKLWan

from .. import hub
from ..errors import WeightsNotFoundError
from ..sampling import flow_scheduler
from ..weights import check_weights_folder
from .transformer import StoryMemWanTransformer3DModel

if TYPE_CHECKING:  # a type only: presets builds its models lazily through this module's users
    from .presets import Preset


# What each kind of folder must hold: model_index class, subfolders, transformer input channels.
KINDS = {
    "i2v": ("WanImageToVideoPipeline", ("transformer", "transformer_2", "text_encoder", "tokenizer", "vae"), 36),
    "t2v": ("WanPipeline", ("transformer", "transformer_2"), 16),
}
NAMES = {"i2v": "Wan2.2 I2V-A14B (--i2v)", "t2v": "Wan2.2 T2V-A14B (--t2v)"}


REPOS = {"i2v": "Wan-AI/Wan2.2-I2V-A14B-Diffusers", "t2v": "Wan-AI/Wan2.2-T2V-A14B-Diffusers"}


def fetch_command(kind: str, folder: Path | str) -> str:
    return f"hf download {REPOS[kind]} --local-dir {folder}"


def locate_weights(source: str, kind: str) -> Path:
    """A local diffusers-format folder for `source` (folder or hub id), checked (every file we load
    is there and whole), or one line saying why not."""
    what = NAMES[kind]
    path = Path(source).expanduser()
    if path.exists():
        check_folder(path, kind)
        return path
    if not hub.is_hub_id(source):
        raise WeightsNotFoundError(f"{what} weights not found: no folder {path}")
    hint = (
        f"download them with: hf download {source} --local-dir ./models/{source.split('/')[-1]}, then pass that folder"
    )
    folder = hub.snapshot(source, f"{what} weights", hint)
    check_folder(folder, kind)
    return folder


def check_folder(path: Path, kind: str) -> None:
    """A diffusers-format folder of the right pipeline, with every subfolder we load."""
    what = NAMES[kind]
    cls, subfolders, channels = KINDS[kind]
    index = path / "model_index.json"
    if not index.is_file():
        raise WeightsNotFoundError(
            f"{what} weights not found: {path} is not a diffusers-format folder (no model_index.json); "
            f"use the '-Diffusers' repos, e.g. Wan-AI/Wan2.2-{kind.upper()}-A14B-Diffusers"
        )
    try:
        found = json.loads(index.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        found = None
    if found != cls:
        other = next((k for k, v in KINDS.items() if v[0] == found), None)
        swap = f" (that is the --{other} folder)" if other else ""
        raise WeightsNotFoundError(f"{path}: holds a {found or 'unknown'} pipeline{swap}; {what} needs a {cls} folder")
    missing = [s for s in subfolders if not (path / s).is_dir()]
    if missing:
        raise WeightsNotFoundError(f"{path}: incomplete {what} folder, missing {', '.join(missing)}/")
    try:
        in_channels = json.loads((path / "transformer" / "config.json").read_text()).get("in_channels")
    except (OSError, ValueError, AttributeError):
        raise WeightsNotFoundError(f"{path}: transformer/config.json is missing or unreadable") from None
    if in_channels != channels:
        raise WeightsNotFoundError(
            f"{path}: its transformer takes {in_channels} input channels; {what} has {channels} "
            "(a Wan2.2 A14B folder of the other kind, or another model?)"
        )
    for sub in subfolders:  # a download cut short is found now, not minutes into loading
        if sub != "tokenizer" and not (path / sub / "config.json").is_file():
            raise WeightsNotFoundError(
                f"{path / sub}: config.json is missing (an incomplete download?); fetch it again with: "
                f"{fetch_command(kind, path)}"
            )
        check_weights_folder(path / sub, f"{what} weights", WeightsNotFoundError, fetch_command(kind, path))


def _from_pretrained(cls, folder: Path, subfolder: str, kind: str = "i2v", **kwargs):
    try:
        return cls.from_pretrained(str(folder), subfolder=subfolder, **kwargs)
    except Exception as e:  # damaged or foreign files: which folder, and how to get it again
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise WeightsNotFoundError(
            f"{folder / subfolder}: cannot load it ({first}); an incomplete download? Fetch it again with: "
            f"{fetch_command(kind, folder)}"
        ) from None


def load_wan_components(preset: Preset, i2v: str | None = None, torch_dtype: torch.dtype | None = None) -> dict:
    """The I2V experts with the shared text encoder, tokenizer and VAE (taken from the I2V folder)."""
    from transformers import AutoTokenizer, UMT5EncoderModel

    dtype = torch_dtype or preset.dtype
    folder = locate_weights(i2v or preset.i2v_source, "i2v")

    def expert(subfolder):
        return _from_pretrained(StoryMemWanTransformer3DModel, folder, subfolder, torch_dtype=dtype).eval()

    return dict(
        tokenizer=_from_pretrained(AutoTokenizer, folder, "tokenizer"),
        text_encoder=_from_pretrained(UMT5EncoderModel, folder, "text_encoder", torch_dtype=dtype).eval(),
        # The VAE stays in fp32: it is small and bf16 visibly degrades decoding.
        vae=_from_pretrained(AutoencoderKLWan, folder, "vae", torch_dtype=torch.float32).eval(),
        scheduler=flow_scheduler(preset.m2v.shift),
        transformer=expert("transformer"),
        transformer_2=expert("transformer_2"),
    )


def t2v_loader(preset: Preset, t2v: str | None = None, torch_dtype: torch.dtype | None = None) -> Callable[[], tuple]:
    """A function that loads the T2V experts when a shot first needs them. The folder is located
    (and checked) now, so a missing one fails before any work."""
    folder = locate_weights(t2v or preset.t2v_source, "t2v")
    dtype = torch_dtype or preset.dtype

    def load():
        return tuple(
            _from_pretrained(StoryMemWanTransformer3DModel, folder, sub, "t2v", torch_dtype=dtype).eval()
            for sub in ("transformer", "transformer_2")
        )

    load.folder = folder  # which weights it loads (a resume checks they are the same)
    return load


def load_components(preset: Preset, weights: str | None = None, **kwargs) -> dict:
    """The components of a preset: built in code (tiny, toy; `weights`: a folder of the toy's
    own weights) or loaded from Wan2.2 folders (`load_wan_components`' arguments)."""
    if preset.build is not None:
        module, function = preset.build.split(":")
        build = getattr(importlib.import_module(module), function)
        return build(weights=weights) if weights else build()
    return load_wan_components(preset, **kwargs)
