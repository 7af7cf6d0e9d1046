"""The toy world: characters with fixed looks, places, actions and shot types, rendered as small
clips. Everything is deterministic from its arguments.

A look is (shape, colour, pattern): 3 x 6 x 2 = 36 looks. Names carry no look: stories and
training groups pair names with looks at random, so only memory (or a caption that spells the
look out) can tell the model what a character looks like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (220, 40, 40),
    "yellow": (240, 210, 40),
    "blue": (60, 100, 240),
    "purple": (160, 60, 210),
    "orange": (250, 140, 30),
    "cyan": (40, 220, 220),
}
PATTERNS = ("plain", "striped")
STRIPE_DARKNESS = 0.6  # striped looks darken every other pair of rows to this fraction

# (sky, ground): at least 60 apart (RGB distance) from every character colour, bright or striped-dark
PLACES = {
    "forest": ((30, 90, 45), (20, 55, 25)),
    "desert": ((205, 180, 130), (170, 140, 90)),
    "sea": ((15, 95, 85), (10, 60, 55)),
    "snow": ((225, 230, 240), (200, 205, 215)),
    "night": ((25, 25, 40), (45, 40, 50)),
}
ACTIONS = ("walks", "jumps", "grows", "rests")
SHOTS = ("wide", "close-up")
NAMES = ("Pip", "Bo", "Kai", "Zu", "Mo", "Lu", "Tam", "Rex", "Ada", "Nim", "Oli", "Fen")


@dataclass(frozen=True)
class Look:
    shape: str
    colour: str
    pattern: str

    def describe(self) -> str:
        """'a red striped circle' / 'an orange square' (plain is not said)."""
        pattern = "striped " if self.pattern == "striped" else ""
        article = "an" if self.colour[0] in "aeiou" else "a"
        return f"{article} {self.colour} {pattern}{self.shape}"


ALL_LOOKS = tuple(Look(s, c, p) for s in SHAPES for c in COLOURS for p in PATTERNS)


# each shape's area in units of r^2 (shape_mask's geometry: circle of radius r, square of side
# 1.8 r, triangle of height 2 r and base 2.2 r); the identity reader sizes its templates by it
SHAPE_AREA_PER_R2 = {"circle": np.pi, "square": 1.8**2, "triangle": 0.5 * 2.2 * 2}


def shape_mask(shape: str, size: int, cx: float, cy, r) -> np.ndarray:
    """bool [size, size]; `cy` and `r` may be arrays shaped [n, 1, 1] for n masks at once."""
    y, x = np.mgrid[0:size, 0:size] + 0.5
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= r**2
    if shape == "square":
        return (np.abs(x - cx) <= r * 0.9) & (np.abs(y - cy) <= r * 0.9)
    if shape == "triangle":  # apex up, base at cy + r
        top, bottom = cy - r, cy + r
        half_width = (y - top) / (bottom - top) * r * 1.1
        return (y >= top) & (y <= bottom) & (np.abs(x - cx) <= half_width)
    raise ValueError(f"unknown shape {shape!r}")


def background(place: str, size: int) -> np.ndarray:
    sky, ground = PLACES[place]
    frame = np.empty((size, size, 3), np.uint8)
    horizon = int(size * 0.72)
    frame[:horizon] = sky
    frame[horizon:] = ground
    return frame


def render_clip(
    look: Look, place: str, action: str, shot: str = "wide", frames: int = 13, size: int = 32
) -> np.ndarray:
    """uint8 [frames, size, size, 3]: the character doing `action` in `place`."""
    base = background(place, size)
    radius = size * (0.22 if shot == "wide" else 0.3)
    colour = np.array(COLOURS[look.colour], np.float32)
    rows = np.arange(size)[:, None]
    stripes = ((rows // 2) % 2 == 1) if look.pattern == "striped" else np.zeros((size, 1), bool)
    out = np.empty((frames, size, size, 3), np.uint8)
    for f in range(frames):
        t = f / max(frames - 1, 1)
        cx, cy, r = size / 2, size * 0.72 - radius, radius
        if action == "walks":
            cx = size * (0.28 + 0.44 * t)
        elif action == "jumps":
            cy -= size * 0.25 * 4 * t * (1 - t)
        elif action == "grows":
            r = radius * (0.75 + 0.5 * t)
            cy = size * 0.72 - r
        elif action == "rests":
            cy += size * 0.02 * np.sin(2 * np.pi * t)
        else:
            raise ValueError(f"unknown action {action!r}")
        mask = shape_mask(look.shape, size, cx, cy, r)
        shade = np.where(stripes, STRIPE_DARKNESS, 1.0)[..., None] * colour
        frame = base.copy()
        frame[mask] = np.broadcast_to(shade, (size, size, 3))[mask].round().astype(np.uint8)
        out[f] = frame
    return out
