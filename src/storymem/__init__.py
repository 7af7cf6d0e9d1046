"""storymem: multi-shot long video storytelling with memory (StoryMem on Wan2.2, via diffusers).

A story in four lines:

    import storymem
    pipe = storymem.build_pipeline(storymem.PipelineOptions(model="toy"))
    story = storymem.load_story("examples/toy-tam.json")
    result = storymem.generate_story(pipe, story, "run", storymem.RunSettings(seed=0))
"""

from .errors import (
    InputError,
    LoraError,
    NumericalError,
    StoryError,
    StoryMemError,
    StoryMemWarning,
    WeightsNotFoundError,
)
from .story import Shot, Story, load_story, parse_story

__version__ = "0.1.0"

__all__ = [
    "InputError",
    "LoraError",
    "NumericalError",
    "PipelineOptions",
    "Run",
    "RunSettings",
    "Shot",
    "Story",
    "StoryError",
    "StoryMemError",
    "StoryMemPipeline",
    "StoryMemWarning",
    "WeightsNotFoundError",
    "build_pipeline",
    "generate_story",
    "load_story",
    "parse_story",
]

# These pull in torch and diffusers: imported only when asked, so `storymem validate` starts fast.
_LAZY = {
    "StoryMemPipeline": "storymem.pipelines",
    "PipelineOptions": "storymem.options",
    "RunSettings": "storymem.options",
    "Run": "storymem.direct",
    "build_pipeline": "storymem.build",
    "generate_story": "storymem.runner",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
