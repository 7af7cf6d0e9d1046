"""Latents of a training set, computed once with the inference pipeline's own encoders.

Per clip (its first `frames` frames at height x width):
    video      [16, T, h, w]  the target latents (VAE mode, normalised as the pipeline's)
    keyframes  [K, 16, h, w]  K evenly spaced frames, each encoded alone: the memory candidates
                              other clips of the group draw from (pipe.encode_keyframes)
    given      [16, T, h, w]  the video condition with the clip's own first 1 (MI2V) or 5 (MM2V)
                              frames (pipe.encode_video_condition)
    text       [L, D]         the caption's embeddings (pipe.encode_prompt)
plus, once, the zero-video condition of plain M2V. `storymem train cache` writes them to a
folder (safetensors + index.json) so training never runs the VAE or text encoder; without a
cache the trainer computes the same tensors in memory at start.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import PIL.Image
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..errors import InputError
from ..files import write_json
from ..pixels import image_to_tensor
from ..storyboard import evenly_spaced
from ..video import read_video
from .data import GIVEN, Clip

INDEX = "index.json"


@dataclass(frozen=True)
class EncodeSettings:
    model: str
    height: int
    width: int
    frames: int
    keyframes_per_clip: int
    variant: str


def clip_frames(clip: Clip, frames: int) -> list[PIL.Image.Image]:
    video = read_video(clip.video)
    if len(video) < frames:
        raise InputError(
            f"{clip.video}: {len(video)} frames; training at {frames} frames needs clips at least that long"
        )
    return [PIL.Image.fromarray(f) for f in video[:frames]]


@torch.no_grad()
def encode_clip(pipe, clip: Clip, s: EncodeSettings) -> dict[str, torch.Tensor]:
    frames = clip_frames(clip, s.frames)
    pixels = torch.stack([image_to_tensor(f, s.height, s.width)[0] for f in frames], dim=1)[None]
    keyframes = [frames[i] for i in evenly_spaced(s.keyframes_per_clip, s.frames)]
    if len(keyframes) < s.keyframes_per_clip:
        raise InputError(f"{clip.video}: fewer frames than --keyframes-per-clip {s.keyframes_per_clip}")
    tensors = {
        "video": pipe.vae_encode(pixels)[0],
        "keyframes": pipe.encode_keyframes(keyframes, s.height, s.width)[0].transpose(0, 1),
        "given": pipe.encode_video_condition(frames[: GIVEN[s.variant]], s.frames, s.height, s.width)[0],
        "text": pipe.encode_prompt(clip.caption)[0].float(),
    }
    return {k: v.cpu().contiguous() for k, v in tensors.items()}


@torch.no_grad()
def zero_video(pipe, s: EncodeSettings) -> torch.Tensor:
    return pipe.encode_video_condition([], s.frames, s.height, s.width)[0].cpu()


def encode_dataset(
    pipe, clips: list[Clip], s: EncodeSettings, progress: bool = True
) -> tuple[list[dict], torch.Tensor]:
    encoded = [encode_clip(pipe, c, s) for c in tqdm(clips, desc="encode", unit="clip", disable=not progress)]
    return encoded, zero_video(pipe, s)


def write_cache(pipe, clips: list[Clip], s: EncodeSettings, out: Path, progress: bool = True) -> Path:
    """Encode every clip into `out` (resumable: clips already written are kept)."""
    out.mkdir(parents=True, exist_ok=True)
    index = out / INDEX
    if index.is_file() and json.loads(index.read_text())["settings"] != asdict(s):
        raise InputError(f"{out}: holds a cache made with other settings; choose another folder")
    entries = []
    for i, clip in enumerate(tqdm(clips, desc="cache", unit="clip", disable=not progress)):
        file = out / f"clip_{i:06d}.safetensors"
        if not file.is_file():
            tmp = file.with_suffix(".tmp")
            save_file(encode_clip(pipe, clip, s), str(tmp))
            tmp.replace(file)
        entries.append({"video": str(clip.video), "caption": clip.caption, "group": clip.group, "file": file.name})
    save_file({"zero_video": zero_video(pipe, s).contiguous()}, str(out / "zero_video.safetensors"))
    write_json(index, {"settings": asdict(s), "clips": entries})
    return index


def read_cache(cache: Path, clips: list[Clip], s: EncodeSettings) -> tuple[list[dict], torch.Tensor]:
    index_file = cache / INDEX
    if not index_file.is_file():
        raise InputError(f"{cache}: not a latent cache (no {INDEX}); make one with storymem train cache")
    index = json.loads(index_file.read_text())
    if index["settings"] != asdict(s):
        changed = [f"{k}: cache {v!r}, now {asdict(s)[k]!r}" for k, v in index["settings"].items() if asdict(s)[k] != v]
        raise InputError(f"{cache}: made with other settings ({'; '.join(changed)})")
    listed = [(e["video"], e["caption"], e["group"]) for e in index["clips"]]
    if listed != [(str(c.video), c.caption, c.group) for c in clips]:
        raise InputError(f"{cache}: made from another metadata.jsonl; rebuild it with storymem train cache")
    encoded = [load_file(str(cache / e["file"])) for e in index["clips"]]
    return encoded, load_file(str(cache / "zero_video.safetensors"))["zero_video"]
