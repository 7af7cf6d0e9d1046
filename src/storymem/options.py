"""The two sets of settings every front end (CLI, app, bench, Ray, Python) builds and hands down
whole: `PipelineOptions` (which model, where it lives, how it samples) and `RunSettings` (what
decides a story's output). Every default is stated here and nowhere else; each set is checked
once, when it is made, so a bad value is one line before any weights are read.

A field left None means "the preset's" (or, for the run record fields, "the pipeline's and the
story's"): `runner.resolve_settings` fills those in when a run starts, and the filled-in
settings are what state.json records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import InputError

DEFAULT_MODEL = "toy"  # the built-in model: runs anywhere, no download
VARIANTS = ("mi2v", "mm2v")  # how a cut=false shot continues: its previous shot's last 1 or 5 frames
CONTINUATION_FRAMES = {"mi2v": 1, "mm2v": 5}
MEMORY_MODES = ("resident", "fp8", "group-offload", "model-offload")
MODE_CHOICES = ("auto", *MEMORY_MODES)
# storymem: ours. independent: T2V per shot, no memory. chain: each shot I2V from the previous
# shot's last frame (the first shot T2V), no memory, no LoRA -- the usual "keep going" baseline.
METHODS = ("storymem", "independent", "chain")
POLICIES = ("official", "entity")
QUALITY_FILTERS = ("hpsv3", "aesthetic", "none")


def _whole(name: str, value, minimum: int = 1) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise InputError(f"{name} must be a whole number of at least {minimum}, got {value!r}")


def _one_of(name: str, value, allowed) -> None:
    if value is not None and value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


@dataclass(frozen=True)
class PipelineOptions:
    """Which pipeline to build and how to place it (`storymem.build_pipeline`)."""

    model: str = DEFAULT_MODEL  # a preset: toy, tiny or wan2.2-a14b (`storymem presets`)
    weights: str | None = None  # toy: a weights folder from scripts/train_toy_model.py (None: the shipped ones)
    i2v: str | None = None  # wan2.2-a14b: Wan2.2 I2V-A14B, diffusers-format folder or hub id (None: the preset's)
    t2v: str | None = None  # wan2.2-a14b: Wan2.2 T2V-A14B, for a first shot without references
    load_t2v: bool = True  # whether a T2V shot can be made (loaded when a shot first needs them)
    lora: str | bool | None = None  # StoryMem LoRA: folder, file or hub id; None: the preset's; False: none
    variant: str = "mi2v"  # which StoryMem LoRA (mi2v or mm2v): how cut=false shots continue
    preview: str | None = None  # folder of step-distilled Wan2.2 LoRAs: a 4-step preview
    memory_mode: str = "auto"  # auto, resident, fp8, group-offload or model-offload (acceleration.py)
    compile: bool = False  # torch.compile the experts' blocks
    attention: str | None = None  # a diffusers attention backend (None: native SDPA)
    sigma_grid: str | None = None  # official, diffusers or lightning (None: the preset's)
    device: str | None = None  # None: cuda when there is one, else cpu

    def __post_init__(self) -> None:
        # imported here: this module stays light (the CLI reads the defaults before torch loads)
        from .models.presets import get_preset
        from .sampling import check_sigma_grid

        get_preset(self.model)  # one line for an unknown preset
        _one_of("variant", self.variant, VARIANTS)
        _one_of("--memory-mode", self.memory_mode, MODE_CHOICES)
        check_sigma_grid(self.sigma_grid)
        for name in ("weights", "i2v", "t2v", "preview"):  # a Path is kept as its text
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, str(value))
        if self.lora is not None and not isinstance(self.lora, bool | str):
            object.__setattr__(self, "lora", str(self.lora))
        if self.lora is True:
            object.__setattr__(self, "lora", None)  # True: the preset's, as None

    def replace(self, **changes) -> PipelineOptions:
        return PipelineOptions(**{**asdict(self), **changes})


@dataclass(frozen=True)
class RunSettings:
    """Everything that decides a run's output; state.json records it, and a resume with other
    settings is refused. None: the preset's (max_memory, steps, frames, height, width, quality),
    the pipeline's (model, lora, variant, preview, sigma_grid) or the story's (story_sha,
    references); `runner.resolve_settings` fills them in."""

    model: str | None = None
    story_sha: str | None = None
    lora: str | None = None  # the StoryMem LoRA option the pipeline was built with (None: the preset's)
    variant: str | None = None
    references: list[str] | None = None  # reference images: the first memory (MR2V); None: the story's
    max_memory: int | None = None  # memory capacity in keyframes; None: what the model was trained with
    sink: int = 3  # keyframes kept forever (the memory sink)
    seed: int = 0
    steps: int | None = None
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    method: str = "storymem"  # or a baseline: independent, chain
    quality: str | None = None  # keyframe quality filter: hpsv3, aesthetic or none
    preview: str | None = None  # the pipeline's preview LoRA folder (preview mode)
    sigma_grid: str | None = None
    keyframe_clip: str | None = None  # keyframe-selection CLIP (folder or hub id); None: the preset's
    memory_policy: str = "official"  # or "entity": the keyframes of the characters a shot names

    def __post_init__(self) -> None:
        for name in ("steps", "frames", "height", "width", "max_memory"):
            _whole(name.replace("_", "-"), getattr(self, name))
        if isinstance(self.sink, bool) or not isinstance(self.sink, int) or self.sink < 0:
            raise InputError(f"sink must be a whole number from 0 to max-memory, got {self.sink!r}")
        if self.max_memory is not None and self.sink > self.max_memory:
            raise InputError(f"sink must be a whole number from 0 to max-memory ({self.max_memory}), got {self.sink!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InputError(f"seed must be a whole number, got {self.seed!r}")
        _one_of("variant", self.variant, VARIANTS)
        _one_of("method", self.method, METHODS)
        _one_of("memory policy", self.memory_policy, POLICIES)
        if self.quality is not None and self.quality not in QUALITY_FILTERS:
            raise InputError(f"quality filter must be hpsv3, aesthetic or none, got {self.quality!r}")
        if self.sigma_grid is not None:
            from .sampling import check_sigma_grid

            check_sigma_grid(self.sigma_grid)
        if self.references is not None:
            object.__setattr__(self, "references", [str(r) for r in self.references])
        if self.references and self.method != "storymem":
            raise InputError(f"reference images need memory; they cannot be used with the {self.method} baseline")

    def replace(self, **changes) -> RunSettings:
        return RunSettings(**{**asdict(self), **changes})

    @classmethod
    def from_dict(cls, values: dict) -> RunSettings:
        """Settings from a mapping (a saved state, a request): one line for a name that is not a setting."""
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise InputError(f"unknown setting {unknown[0]!r}; the settings are {', '.join(cls.__dataclass_fields__)}")
        return cls(**values)

    def record(self) -> dict:
        """What state.json keeps (every field, in this order)."""
        return asdict(self)

    def differences(self, saved: dict, ignore=()) -> list[str]:
        """'field: saved X, now Y' for each field (but those in `ignore`) that differs from a
        saved record. Runs saved before a field existed hold its default."""
        mine, defaults = self.record(), asdict(RunSettings())
        return [
            f"{k}: saved {saved.get(k, defaults[k])!r}, now {mine[k]!r}"
            for k in mine
            if k not in ignore and saved.get(k, defaults[k]) != mine[k]
        ]
