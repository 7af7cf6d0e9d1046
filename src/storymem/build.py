"""The one builder every front end uses: `PipelineOptions` in, a placed pipeline out.

    pipe = build_pipeline(PipelineOptions(model="toy"))
    pipe = build_pipeline(PipelineOptions(model="wan2.2-a14b", i2v="./Wan2.2-I2V-A14B-Diffusers",
                                          memory_mode="fp8", compile=True))

Every option is checked before any weights are read. Under torchrun (`split_shots=True`: the
commands that make shots) this process joins the others and each shot is split over all of them.
"""

from __future__ import annotations

import os
import sys

import torch

from .acceleration import check_attention_backend, check_memory_mode, default_device
from .distributed import context_parallel
from .errors import InputError
from .models.presets import get_preset
from .options import PipelineOptions
from .pipelines import StoryMemPipeline


def build_pipeline(options: PipelineOptions, *, split_shots: bool = False) -> StoryMemPipeline:
    """A pipeline built from `options` and placed on its device (its memory mode, compilation and
    attention backend applied). Real weights say on stderr which memory mode they got."""
    launch = context_parallel.launched()
    if launch and not split_shots:
        raise InputError(
            "only generate and shot split a shot over torchrun's processes; run this command as one process "
            "(bench: one process per GPU with --workers)"
        )
    device = context_parallel.start(launch) if launch else torch.device(options.device or default_device())
    try:
        choose_cpu_threads(options.model, device)
        check_placement(options, device)
        pipe = StoryMemPipeline.from_options(options)
        if launch:
            pipe.enable_context_parallel(launch.world_size)
        chosen = pipe.enable_memory_mode(
            options.memory_mode, device, compile=options.compile, attention=options.attention
        )
    except BaseException:
        context_parallel.stop()
        raise
    if pipe.preset.build is None and not context_parallel.is_follower():  # real weights: say where they went
        sys.stderr.write(f"memory mode: {chosen}" + (" (auto)\n" if options.memory_mode == "auto" else "\n"))
    return pipe


def check_placement(options: PipelineOptions, device=None) -> None:
    """The memory mode and attention backend can run on this device (one line if not)."""
    device = torch.device(device or options.device or default_device())
    check_memory_mode(options.memory_mode, device)
    if options.attention is not None:
        check_attention_backend(options.attention, device)


def check_inputs(options: PipelineOptions, keyframe_clip: str | None = None, uses_memory: bool = True) -> None:
    """Everything a run will read, checked before anything loads, cheapest first: where the
    models live, every weight file (there and whole), then the keyframe-selection CLIP (if the
    run selects keyframes; `keyframe_clip`: its folder or hub id, else the preset's)."""
    check_placement(options)
    StoryMemPipeline.locate(options)
    if uses_memory:
        check_keyframe_clip(keyframe_clip, options.model)


def check_keyframe_clip(name: str | None, model: str) -> None:
    """The keyframe-selection CLIP (`name`, else the preset's) is there and whole: checked before
    the experts load, so a broken folder is not found minutes later."""
    from .models.presets import get_preset
    from .scoring.clip import CLIP_B32, locate_clip

    name = name or get_preset(model).keyframe_embedder
    if name != "tiny":
        locate_clip(name, CLIP_B32)


def choose_cpu_threads(model: str, device) -> None:
    """The built-in models are too small for several CPU threads to pay: on a 2-core machine
    one thread was 1.25x slower when idle but 2.2x faster when another process used a core
    (identical output; see docs/toy-model.md). OMP_NUM_THREADS, if set, wins."""
    if (
        torch.device(device).type == "cpu"
        and get_preset(model).build is not None
        and "OMP_NUM_THREADS" not in os.environ
    ):
        torch.set_num_threads(1)
