"""The identity metric: which look does the character have in generated frames?

Per frame: the character is every pixel at least FOREGROUND_DISTANCE (RGB) from both colours of
the shot's place (known from the caption). Its colour is the palette colour nearest to the
median of its bright pixels (stripes are darker copies of the colour); it is striped when a
large share of it is much darker than that; its shape comes from its outline: a triangle is
narrow at the top, a square fills its bounding box's corners, a circle does not. A shot's look
is the per-attribute majority over its frames.

Per story: the share of later shots (those that name the character without describing it) whose
look equals the one introduced in its first shot.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .stories import parse_caption
from .world import COLOURS, PLACES, Look

FOREGROUND_DISTANCE = 30.0
MIN_PIXELS = 8


def foreground(frame: np.ndarray, place: str) -> np.ndarray:
    pixels = frame.astype(np.float32)
    distances = [np.linalg.norm(pixels - np.array(c, np.float32), axis=-1) for c in PLACES[place]]
    return np.minimum(*distances) >= FOREGROUND_DISTANCE


def _shape(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(mask)
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    box = mask[top : bottom + 1, left : right + 1]
    h, w = box.shape
    third = max(1, h // 3)
    widths_top, widths_bottom = box[:third].sum(1).mean(), box[-third:].sum(1).mean()
    if widths_top < 0.6 * widths_bottom:
        return "triangle"
    k = max(1, round(min(h, w) * 0.2))
    corners = np.concatenate([box[:k, :k].ravel(), box[:k, -k:].ravel(), box[-k:, :k].ravel(), box[-k:, -k:].ravel()])
    return "square" if corners.mean() > 0.6 else "circle"


def frame_look(frame: np.ndarray, place: str) -> Look | None:
    mask = foreground(frame, place)
    if mask.sum() < MIN_PIXELS:
        return None
    # colour and pattern from the inside of the shape: its edge pixels are mixed with the place
    # (and smeared further by the video codec's chroma subsampling)
    inside = mask.copy()
    inside[1:] &= mask[:-1]
    inside[:-1] &= mask[1:]
    inside[:, 1:] &= mask[:, :-1]
    inside[:, :-1] &= mask[:, 1:]
    pixels = frame[inside if inside.sum() >= MIN_PIXELS else mask].astype(np.float32)
    luminance = pixels.mean(-1)
    bright = pixels[luminance >= np.percentile(luminance, 60)]
    reference = np.median(bright, axis=0)
    colour = min(COLOURS, key=lambda c: np.linalg.norm(reference - np.array(COLOURS[c])))
    dark_share = float((luminance < 0.8 * reference.mean()).mean())
    pattern = "striped" if dark_share > 0.25 else "plain"
    return Look(_shape(mask), colour, pattern)


def video_look(frames: np.ndarray, place: str) -> Look | None:
    looks = [look for look in (frame_look(f, place) for f in frames) if look is not None]
    if not looks:
        return None

    def vote(attribute: str) -> str:
        return Counter(getattr(look, attribute) for look in looks).most_common(1)[0][0]

    return Look(vote("shape"), vote("colour"), vote("pattern"))


def identity_metrics(prompts: list[str], videos: list[np.ndarray]) -> dict | None:
    """{"identity": share of later shots with the introduced look (shape, colour and pattern),
    "identity_colour": the same for the colour alone, "identity_intro": 1.0 if the first shot
    shows the look its caption describes, per-shot looks}; None if the prompts are not toy
    captions or nothing introduces a character."""
    shots = [parse_caption(p) for p in prompts]
    if any(s is None for s in shots):
        return None
    introduced = {s.name: (i, s.look) for i, s in reversed(list(enumerate(shots))) if s.look is not None}
    if not introduced:
        return None
    found = [video_look(v, s.place) for v, s in zip(videos, shots, strict=True)]
    later = [
        found[i] == introduced[s.name][1]
        for i, s in enumerate(shots)
        if s.name in introduced and i > introduced[s.name][0]
    ]
    later_colour = [
        found[i] is not None and found[i].colour == introduced[s.name][1].colour
        for i, s in enumerate(shots)
        if s.name in introduced and i > introduced[s.name][0]
    ]
    intro = [found[i] == look for i, look in introduced.values()]
    return {
        "identity": float(np.mean(later)) if later else None,
        "identity_colour": float(np.mean(later_colour)) if later_colour else None,
        "identity_intro": float(np.mean(intro)),
        "identity_shots": [
            {
                "look": None if look is None else look.describe(),
                "matches": bool(look == introduced.get(s.name, (0, None))[1]),
            }
            for look, s in zip(found, shots, strict=True)
        ],
    }
