"""A procedural toy world: characters with known looks, rendered clips, stories in the ST-Bench
format, and an identity metric that reads the look back from generated frames."""

from .identity import identity_metrics, video_look
from .stories import ToyShot, make_story, parse_caption, write_stories
from .world import ACTIONS, ALL_LOOKS, COLOURS, NAMES, PATTERNS, PLACES, SHAPES, SHOTS, Look, render_clip

__all__ = [
    "ACTIONS",
    "ALL_LOOKS",
    "COLOURS",
    "NAMES",
    "PATTERNS",
    "PLACES",
    "SHAPES",
    "SHOTS",
    "Look",
    "ToyShot",
    "identity_metrics",
    "make_story",
    "parse_caption",
    "render_clip",
    "video_look",
    "write_stories",
]
