"""The command line's shared options, declared once: the pipeline options (`--model --lora ...`)
and the run settings (`--seed --steps ...`). A command decorated with `@pipeline_options` gets
them as one `options: PipelineOptions`; with `@run_settings(...)`, the named ones as one
`settings: RunSettings`. Their defaults are the dataclasses' own (storymem/options.py).
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated, get_type_hints

import typer

from .errors import InputError
from .options import PipelineOptions, RunSettings


def _option(kind, help: str, *names: str):
    return Annotated[kind, typer.Option(*names, help=help)]


PIPELINE_OPTIONS = {
    "model": _option(str, "Model preset (see `storymem presets`)."),
    "weights": _option(Path | None, "Toy weights folder from scripts/train_toy_model.py (default: the shipped ones)."),
    "lora": _option(str | None, "StoryMem LoRA folder, file or hub id (default: the preset's)."),
    "variant": _option(str, "mi2v or mm2v: the LoRA variant, and how cut=false shots continue."),
    "i2v": _option(
        str | None, "Wan2.2 I2V-A14B weights: diffusers-format folder or hub id (default: the preset's).", "--i2v"
    ),
    "t2v": _option(
        str | None, "Wan2.2 T2V-A14B weights, for a first shot without references (folder or hub id).", "--t2v"
    ),
    "memory_mode": _option(
        str,
        "Where the weights live on the GPU: auto (from free memory), resident, fp8, group-offload or model-offload.",
    ),
    "compile": _option(bool, "Compile the experts' blocks (torch.compile, regional).", "--compile"),
    "attention": _option(str | None, "diffusers attention backend, e.g. flash, _flash_3, sage (default: native SDPA)."),
    "preview": _option(Path | None, "Folder of step-distilled Wan2.2 LoRAs (Lightning): a 4-step preview."),
    "sigma_grid": _option(str | None, "Noise-level grid: official, diffusers or lightning (default: the preset's)."),
}

RUN_SETTINGS = {
    "references": _option(list[Path] | None, "Reference image(s): the initial memory (MR2V); repeat."),
    "max_memory": _option(int | None, "Memory capacity in keyframes (default: what the model was trained with)."),
    "sink": _option(int, "Keyframes kept forever (memory sink)."),
    "seed": _option(int, "Seed (each shot gets its own, derived from it)."),
    "steps": _option(int | None, "Denoising steps (default: the preset's)."),
    "frames": _option(int | None, "Frames per shot, 4k+1 (default: the preset's)."),
    "height": _option(int | None, "Height in pixels (default: the preset's)."),
    "width": _option(int | None, "Width in pixels (default: the preset's)."),
    "quality": _option(str | None, "Keyframe quality filter: hpsv3, aesthetic or none (default: the preset's)."),
    "method": _option(str, "storymem (ours); baselines: independent (T2V per shot), chain (I2V from the last frame)."),
    "keyframe_clip": _option(str | None, "CLIP for keyframe selection: folder or hub id (default: the preset's)."),
    "memory_policy": _option(
        str,
        "official (sink + latest keyframes) or entity (sink + the keyframes of the characters a shot names; "
        "needs the story's characters list).",
    ),
}


def _references(paths: list[Path] | None) -> list[str] | None:
    """Absolute paths of existing images (the story's own references when none are given)."""
    if not paths:
        return None
    resolved = [str(Path(p).resolve()) for p in paths]
    for ref in resolved:
        if not Path(ref).is_file():
            raise InputError(f"{ref}: reference image not found")
    return resolved


def _add_parameters(command, name: str, declared: dict, defaults, make):
    """`command` with the `declared` options in place of its parameter `name`, which receives
    `make(values)`. `defaults`: the dataclass, whose class attributes are its fields' defaults."""
    hints = get_type_hints(command, include_extras=True)
    own = [
        p.replace(annotation=hints[p.name]) for p in inspect.signature(command).parameters.values() if p.name != name
    ]
    added = [
        inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=getattr(defaults, key), annotation=kind)
        for key, kind in declared.items()
    ]

    @functools.wraps(command)
    def wrapper(**kwargs):
        values = {key: kwargs.pop(key) for key in declared}
        return command(**kwargs, **{name: make(values)})

    wrapper.__signature__ = inspect.Signature(own + added)
    wrapper.__annotations__ = {p.name: p.annotation for p in own + added}
    del wrapper.__wrapped__  # typer reads the signature above, not the command's
    return wrapper


def pipeline_options(command):
    """Adds every pipeline option; the command receives them as `options: PipelineOptions`."""

    def make(values: dict) -> PipelineOptions:
        values = {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}
        return PipelineOptions(**values)

    return _add_parameters(command, "options", PIPELINE_OPTIONS, PipelineOptions, make)


def run_settings(*names: str):
    """Adds the named run settings; the command receives them as `settings: RunSettings`."""
    declared = {name: RUN_SETTINGS[name] for name in names}

    def make(values: dict) -> RunSettings:
        if "references" in values:
            values["references"] = _references(values["references"])
        return RunSettings(**values)

    return lambda command: _add_parameters(command, "settings", declared, RunSettings, make)
