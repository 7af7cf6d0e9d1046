"""storymem: multi-shot long video storytelling with memory (StoryMem on Wan2.2, via diffusers)."""

from .errors import InputError, LoraError, NumericalError, StoryError, StoryMemError, WeightsNotFoundError
from .story import Shot, Story, load_story, parse_story

__version__ = "0.1.0"

__all__ = [
    "InputError",
    "LoraError",
    "NumericalError",
    "Shot",
    "Story",
    "StoryError",
    "StoryMemError",
    "StoryMemPipeline",
    "WeightsNotFoundError",
    "load_story",
    "parse_story",
]


def __getattr__(name):
    # The pipeline pulls in torch/diffusers; import it only when asked, so `storymem validate`
    # starts fast.
    if name in ("StoryMemPipeline", "StoryMemWarning"):
        from . import pipelines

        return getattr(pipelines, name)
    raise AttributeError(name)
