from .bank import Keyframe, MemoryBank
from .select import select_keyframes

__all__ = ["Keyframe", "MemoryBank", "select_keyframes"]
