"""One exception family for every problem a user can fix.

The CLI prints ``error: <message>`` for these and exits non-zero; anything else is a bug and
keeps its traceback.
"""


class StoryMemError(Exception):
    """A problem with the user's input or environment, stated in one sentence."""


class StoryError(StoryMemError):
    """A story script that cannot be used: ``<file>: <where>: <problem>``."""

    def __init__(self, file: str, where: str, problem: str):
        self.file, self.where, self.problem = file, where, problem
        super().__init__(f"{file}: {where}: {problem}" if where else f"{file}: {problem}")


class LoraError(StoryMemError):
    """A LoRA file that does not fit the model."""


class WeightsNotFoundError(StoryMemError):
    """Model weights that are neither on disk nor reachable."""


class InputError(StoryMemError):
    """An argument (image, resolution, frame count...) the model cannot use."""


class NumericalError(StoryMemError):
    """Weights or a generated shot holding NaN or infinite values."""


class StoryMemWarning(UserWarning):
    """Settings that work but leave what the weights were trained for."""
