"""Training data: a folder of short clips plus `metadata.jsonl`, and the memory sampler.

    metadata.jsonl, one line per clip:  {"video": "clips/0001.mp4", "caption": "...", "group": "fox"}

`video` is relative to the folder. Clips of one group share a subject (StoryMem groups its 400k
clips by visual similarity); memory frames for a target clip are single frames drawn from
OTHER clips of the same group, as at inference where memory keyframes come from earlier shots.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

METADATA = "metadata.jsonl"
GIVEN = {"mi2v": 1, "mm2v": 5}


@dataclass(frozen=True)
class Clip:
    video: Path
    caption: str
    group: str


def load_metadata(data_dir: str | Path) -> list[Clip]:
    """Every clip of the dataset, checked: a bad line, a missing file or a group with a single
    clip (it could never get memory) is one clear error."""
    data_dir = Path(data_dir)
    path = data_dir / METADATA
    if not path.is_file():
        raise InputError(f"{data_dir}: no {METADATA} (one JSON line per clip: video, caption, group)")
    clips = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected an object with video, caption, group")
        missing = [k for k in ("video", "caption", "group") if not isinstance(row.get(k), str) or not row[k].strip()]
        if missing:
            raise InputError(f"{where}: {', '.join(missing)} must be non-empty strings")
        video = (data_dir / row["video"]).resolve()
        if not video.is_file():
            raise InputError(f"{where}: video {row['video']} not found")
        clips.append(Clip(video, row["caption"], row["group"]))
    if not clips:
        raise InputError(f"{path}: no clips listed")
    sizes = {}
    for clip in clips:
        sizes[clip.group] = sizes.get(clip.group, 0) + 1
    lonely = sorted(g for g, n in sizes.items() if n < 2)
    if lonely:
        raise InputError(
            f"{path}: group(s) {', '.join(lonely)} have one clip; memory comes from other clips of the same group, so every group needs at least 2"
        )
    return clips


@dataclass(frozen=True)
class Draw:
    """One training example: the target clip, its memory (clip, keyframe slot) pairs, and how
    many of the target's own first frames are given (0 = M2V, 1 = MI2V, 5 = MM2V)."""

    target: int
    memory: tuple[tuple[int, int], ...]
    given: int


class MemorySampler:
    """Draws (target, memory, given) examples.

    groups: clip indices per group; keyframes_per_clip: the candidate memory frames each clip
    offers (its evenly spaced keyframe slots); p_first: probability of conditioning the target
    on its own first frame(s) as well (MI2V or MM2V by `variant`).
    """

    def __init__(
        self,
        groups: dict[str, list[int]],
        keyframes_per_clip: int,
        max_memory: int = 10,
        p_first: float = 0.5,
        variant: str = "mi2v",
    ):
        if max_memory < 1:
            raise InputError(f"max memory must be at least 1, got {max_memory}")
        if not 0 <= p_first <= 1:
            raise InputError(f"p_first must be between 0 and 1, got {p_first}")
        if variant not in GIVEN:
            raise InputError(f"variant must be mi2v or mm2v, got {variant!r}")
        self.groups = {g: list(c) for g, c in groups.items() if len(c) >= 2}
        self.group_of = {c: g for g, clips in self.groups.items() for c in clips}
        self.targets = sorted(self.group_of)
        self.keyframes_per_clip = keyframes_per_clip
        self.max_memory, self.p_first, self.given = max_memory, p_first, GIVEN[variant]

    def pool(self, target: int) -> list[tuple[int, int]]:
        """Every memory candidate for `target`: the keyframe slots of the other clips of its group."""
        others = [c for c in self.groups[self.group_of[target]] if c != target]
        return [(c, k) for c in others for k in range(self.keyframes_per_clip)]

    def draw_batch(self, rng: np.random.Generator, batch_size: int) -> list[Draw]:
        """`batch_size` examples sharing one memory length (so they stack): 1..max_memory, at most
        what the smallest group offers."""
        targets = [self.targets[i] for i in rng.integers(0, len(self.targets), batch_size)]
        pools = [self.pool(t) for t in targets]
        count = min(int(rng.integers(1, self.max_memory + 1)), *(len(p) for p in pools))
        draws = []
        for target, pool in zip(targets, pools, strict=True):
            picked = rng.choice(len(pool), size=count, replace=False)
            given = self.given if rng.random() < self.p_first else 0
            draws.append(Draw(target, tuple(pool[i] for i in picked), given))
        return draws


def group_indices(clips: list[Clip]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, clip in enumerate(clips):
        groups.setdefault(clip.group, []).append(i)
    return groups
