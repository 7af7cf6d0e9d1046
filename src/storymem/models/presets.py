"""Named model bundles. Every model-specific number lives here, nowhere else.

- ``wan2.2-a14b``: the real thing (diffusers-format Wan2.2 T2V-A14B + I2V-A14B, StoryMem LoRA).
- ``toy``: the built-in model: trained on the toy world (`storymem.toyworld`), runs on any CPU.
- ``tiny``: a random-weight miniature of the same architecture, built in code, for tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..sampling import Sampling

# The toy model's shipped weights (toyworld/model.py builds it; not imported here: the presets stay light).
TOY_WEIGHTS = Path(__file__).parents[1] / "toyworld" / "weights"
TOY_LORA = TOY_WEIGHTS / "lora"

# Wan2.2's default negative prompt (shared config of the official code).
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    height: int
    width: int
    num_frames: int
    fps: int
    t2v: Sampling  # first shot without references
    m2v: Sampling  # every memory-conditioned shot
    dtype: torch.dtype
    negative_prompt: str
    max_sequence_length: int  # text tokens
    # (height, width) pairs the weights were trained on; None = any multiple of 16.
    trained_resolutions: tuple[tuple[int, int], ...] | None = None
    max_trained_memory: int = 10  # memory frames seen in training
    rope_shift: int = 5  # S of the negative RoPE shift
    # Real weights: diffusers-format repos (hub ids or local folders) and the LoRA repo.
    t2v_source: str | None = None
    i2v_source: str | None = None
    lora_source: str | None = None
    lora_subfolders: dict[str, str] = field(default_factory=dict)
    # Keyframe selection: CLIP image embedder (hub id, or "tiny") and the default quality filter.
    keyframe_embedder: str = "openai/clip-vit-base-patch32"
    quality: str = "hpsv3"
    # Preview mode (a step-distilled LoRA on top): its sampler for T2V and memory shots; None = no preview.
    preview_t2v: Sampling | None = None
    preview_m2v: Sampling | None = None
    # Presets built in code instead (tiny, toy): "module:function" returning the pipeline's
    # components, imported only when the preset is built (the toy lives in storymem.toyworld).
    build: str | None = None
    takes_weights: bool = False  # a built-in model whose weights a folder can replace (--weights)
    weights_folder: str | None = None  # its shipped weights


# The Wan2.2-Lightning / LightX2V recipe (their configs and code): Euler, 4 steps, shift 5,
# no CFG, the stock expert boundaries, sigmas linspace(1, 0, 5)[:-1] before the shift.
LIGHTNING_T2V = Sampling(
    steps=4, shift=5.0, boundary=0.875, guidance=1.0, guidance_2=1.0, solver="euler", grid="lightning"
)
LIGHTNING_I2V = Sampling(
    steps=4, shift=5.0, boundary=0.9, guidance=1.0, guidance_2=1.0, solver="euler", grid="lightning"
)


PRESETS: dict[str, Preset] = {
    "wan2.2-a14b": Preset(
        name="wan2.2-a14b",
        description="Wan2.2 T2V-A14B (first shot) + I2V-A14B with the StoryMem LoRA; CUDA GPU, ~250 GB of weights",
        height=480,
        width=832,
        num_frames=81,
        fps=16,
        t2v=Sampling(steps=40, shift=12.0, boundary=0.875, guidance=3.5, guidance_2=3.5),
        m2v=Sampling(steps=40, shift=4.0, boundary=0.9, guidance=3.5, guidance_2=3.5),
        preview_t2v=LIGHTNING_T2V,
        preview_m2v=LIGHTNING_I2V,
        dtype=torch.bfloat16,
        negative_prompt=WAN_NEGATIVE_PROMPT,
        max_sequence_length=512,
        trained_resolutions=((480, 832), (832, 480)),
        t2v_source="Wan-AI/Wan2.2-T2V-A14B-Diffusers",
        i2v_source="Wan-AI/Wan2.2-I2V-A14B-Diffusers",
        lora_source="Kevin-thu/StoryMem",
        lora_subfolders={"mi2v": "Wan2.2-MI2V-A14B", "mm2v": "Wan2.2-MM2V-A14B"},
    ),
    "toy": Preset(
        name="toy",
        description="built-in model trained on the toy world (shapes in places); runs on any CPU in seconds",
        height=32,
        width=32,
        num_frames=5,
        fps=4,
        # One trained network for all noise levels: boundary 0 sends every step to the first expert.
        # Trained and benchmarked with diffusers' sigma grid.
        t2v=Sampling(steps=20, shift=3.0, boundary=0.0, guidance=3.0, guidance_2=3.0, grid="diffusers"),
        m2v=Sampling(steps=20, shift=3.0, boundary=0.0, guidance=3.0, guidance_2=3.0, grid="diffusers"),
        dtype=torch.float32,
        negative_prompt="",
        max_sequence_length=24,
        trained_resolutions=((32, 32),),
        max_trained_memory=8,
        lora_source=str(TOY_LORA),  # shipped in the package
        keyframe_embedder="tiny",
        quality="none",
        build="storymem.toyworld.model:build_toy_components",
        takes_weights=True,
        weights_folder=str(TOY_WEIGHTS),
    ),
    "tiny": Preset(
        name="tiny",
        description="random-weight miniature of the Wan2.2 architecture for tests (output is noise)",
        height=32,
        width=32,
        num_frames=13,  # MM2V keeps 8, enough to hand 5 on to a continuation
        fps=8,
        # Same shifts and boundaries as the real preset so both experts are exercised.
        t2v=Sampling(steps=4, shift=12.0, boundary=0.875, guidance=3.5, guidance_2=3.5),
        m2v=Sampling(steps=4, shift=4.0, boundary=0.9, guidance=3.5, guidance_2=3.5),
        preview_t2v=LIGHTNING_T2V,
        preview_m2v=LIGHTNING_I2V,
        dtype=torch.float32,
        negative_prompt=WAN_NEGATIVE_PROMPT,
        max_sequence_length=32,
        keyframe_embedder="tiny",
        quality="none",
        build="storymem.models.tiny:build_tiny_components",
    ),
}


def get_preset(name: str) -> Preset:
    from ..errors import InputError

    if name not in PRESETS:
        raise InputError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]
