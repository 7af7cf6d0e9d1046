"""What a LoRA training run is told (`storymem train`'s options, with their defaults stated here
once), and the check that every value can train before any data or model is read. Light: the
command line reads the defaults without loading torch."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..options import DEFAULT_MODEL


@dataclass
class TrainConfig:
    data: str
    out: str
    model: str = DEFAULT_MODEL
    expert: str = "high"
    steps: int = 1000
    lr: float = 1e-5
    rank: int = 128
    alpha: float | None = None  # default: rank (the released weights: r = alpha = 128, rsLoRA)
    dropout: float = 0.05
    max_memory: int = 10
    p_first: float = 0.5
    variant: str = "mi2v"
    batch_size: int = 1
    grad_accum: int = 1
    mixed_precision: str = "no"  # no | bf16 | fp16
    gradient_checkpointing: bool = False
    keyframes_per_clip: int = 4
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    cache: str | None = None
    checkpoint_every: int = 500
    seed: int = 0
    init_lora: str | None = None  # start from existing StoryMem LoRA weights (this expert's file)
    i2v: str | None = None  # real weights: the I2V-A14B folder or hub id (default: the preset's)


def check_config(c: TrainConfig) -> None:
    """One line for a setting that cannot train, before any data or model is read."""
    import math

    for name in ("steps", "batch_size", "grad_accum", "rank", "max_memory", "keyframes_per_clip", "checkpoint_every"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be a whole number of at least 1, got {value!r}")
    for name in ("frames", "height", "width"):
        value = getattr(c, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"--{name} must be a whole number of at least 1, got {value!r}")
    if not (isinstance(c.lr, int | float) and math.isfinite(c.lr) and c.lr > 0):
        raise InputError(f"--lr must be a positive number, got {c.lr!r}")
    if not 0 <= c.p_first <= 1:
        raise InputError(f"--p-first is a probability from 0 to 1, got {c.p_first!r}")
    if not 0 <= c.dropout < 1:
        raise InputError(f"dropout must be from 0 to below 1, got {c.dropout!r}")
    if c.alpha is not None and not c.alpha > 0:
        raise InputError(f"alpha must be positive, got {c.alpha!r}")
    if c.variant not in ("mi2v", "mm2v"):
        raise InputError(f"--variant must be mi2v or mm2v, got {c.variant!r}")
    if c.mixed_precision not in ("no", "bf16", "fp16"):
        raise InputError(f"--mixed-precision must be no, bf16 or fp16, got {c.mixed_precision!r}")
