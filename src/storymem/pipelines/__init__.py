from ..errors import StoryMemWarning
from .storymem import ShotOutput, StoryMemPipeline

__all__ = ["ShotOutput", "StoryMemPipeline", "StoryMemWarning"]
