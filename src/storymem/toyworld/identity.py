"""The identity metric: which look does the character have in generated frames?

Per frame: the character is every pixel at least FOREGROUND_DISTANCE (RGB) from both colours of
the shot's place (known from the caption). Its colour is the palette colour nearest to the
median of its bright pixels (stripes are darker copies of the colour); it is striped when a
large share of it is much darker than that; its shape is the circle, square or triangle template
that overlaps its outline best. A shot's look is the per-attribute majority over its frames.

Per story: the share of later shots (those that name the character without describing it) whose
look equals the one introduced in its first shot.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .stories import parse_caption
from .world import COLOURS, PLACES, SHAPE_AREA_PER_R2, SHAPES, Look, shape_mask

FOREGROUND_DISTANCE = 30.0
MIN_PIXELS = 8


def foreground(frame: np.ndarray, place: str) -> np.ndarray:
    pixels = frame.astype(np.float32)
    distances = [np.linalg.norm(pixels - np.array(c, np.float32), axis=-1) for c in PLACES[place]]
    return np.minimum(*distances) >= FOREGROUND_DISTANCE


def _shape(mask: np.ndarray) -> str:
    """The shape whose template best overlaps the mask (IoU): each shape is drawn at the mask's
    centroid with the radii its area implies (+-20%). Matching whole templates, not corners or
    widths, keeps generated shapes with ragged edges readable."""
    ys, xs = np.nonzero(mask)
    cx, cy, area = xs.mean() + 0.5, ys.mean() + 0.5, mask.sum()

    def best_iou(shape: str) -> float:
        r = np.linspace(0.8, 1.2, 9)[:, None, None] * np.sqrt(area / SHAPE_AREA_PER_R2[shape])
        # all nine sizes at once; a triangle's centroid lies r/3 below the centre of its box
        templates = shape_mask(shape, mask.shape[0], cx, cy - r / 3 if shape == "triangle" else cy, r)
        return float(((templates & mask).sum((1, 2)) / (templates | mask).sum((1, 2))).max())

    return max(SHAPES, key=best_iou)


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


def identity_metrics(prompts: list[str], videos: list[np.ndarray], looks: dict[str, Look] | None = None) -> dict | None:
    """{"identity": share of later shots with the introduced look (shape, colour and pattern),
    "identity_colour": the same for the colour alone, "identity_intro": 1.0 if the first shot
    shows the look its caption describes, per-shot looks}; None if the prompts are not toy
    captions or nothing introduces a character.

    looks: the characters' looks when no caption spells them out (a cast story: the looks come
    from reference images); then every shot of a character counts, and its first is the intro."""
    shots = [parse_caption(p) for p in prompts]
    if any(s is None for s in shots):
        return None
    introduced = {s.name: (i, s.look) for i, s in reversed(list(enumerate(shots))) if s.look is not None}
    firsts = dict(introduced)
    if not introduced and looks:
        firsts = {s.name: (i, looks[s.name]) for i, s in reversed(list(enumerate(shots))) if s.name in looks}
        introduced = {name: (-1, look) for name, (_, look) in firsts.items()}
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
    intro = [found[i] == look for i, look in firsts.values()]
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
