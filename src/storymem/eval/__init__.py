"""ST-Bench evaluation: metrics of a run, baselines, the benchmark runner and its reports."""

from __future__ import annotations

from ..errors import InputError
from .aesthetic import VBENCH_HEAD_URL, LaionAesthetic
from .extractors import CLIP_L14, ClipVideoText, ViClipVideoText
from .metrics import KEYS, consistency, evaluate_run, similarity_matrix
from .viclip import VICLIP_URL, ViClip, ViClipConfig, load_viclip

EXTRACTORS = ("auto", "clip", "viclip", "tiny")

__all__ = [
    "CLIP_L14",
    "EXTRACTORS",
    "KEYS",
    "VBENCH_HEAD_URL",
    "VICLIP_URL",
    "ClipVideoText",
    "LaionAesthetic",
    "ViClip",
    "ViClipConfig",
    "ViClipVideoText",
    "consistency",
    "evaluate_run",
    "load_evaluators",
    "load_viclip",
    "similarity_matrix",
]


def load_evaluators(
    extractor: str = "auto",
    model: str | None = None,
    viclip: str | None = None,
    aesthetic_head: str | None = "auto",
    device="cpu",
    clip_model: str = CLIP_L14,
):
    """(video-text extractor, aesthetic scorer or None), each loaded once.

    extractor: clip (CLIP ViT-L/14), viclip (needs `viclip`, the checkpoint path), tiny (random
    weights, no download) or auto (tiny for the built-in models' runs, tiny and toy, which work
    offline and whose meaningful measure is the toy identity metric; else clip). aesthetic_head: a
    path or URL of the LAION head, "none" to skip, or "auto" (VBench's head; random for tiny).
    """
    if extractor not in EXTRACTORS:
        raise InputError(f"extractor must be one of {', '.join(EXTRACTORS)}, got {extractor!r}")
    if extractor == "auto":
        from ..models.presets import PRESETS

        extractor = "tiny" if model in PRESETS and PRESETS[model].build is not None else "clip"
    if extractor == "viclip" and not viclip:
        raise InputError(f"--extractor viclip needs --viclip PATH (ViClip-InternVid-10M-FLT.pth, from {VICLIP_URL})")
    if extractor == "tiny":
        clip = ClipVideoText.tiny()
    elif extractor == "clip" or aesthetic_head != "none":
        clip = ClipVideoText.from_pretrained(clip_model, device=device)
    else:
        clip = None
    video_text = ViClipVideoText.from_checkpoint(viclip, device=device) if extractor == "viclip" else clip
    if aesthetic_head in (None, "none"):
        return video_text, None
    if aesthetic_head == "auto":
        if extractor == "tiny":
            return video_text, LaionAesthetic.tiny(clip)
        aesthetic_head = VBENCH_HEAD_URL
    return video_text, LaionAesthetic.from_source(clip, aesthetic_head)
