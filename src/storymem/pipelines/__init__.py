from .storymem import StoryMemPipeline, StoryMemWarning

__all__ = ["StoryMemPipeline", "StoryMemWarning"]
