"""The memory bank: a sink of the first keyframes ever stored plus a sliding window of the most
recent ones (reference section 5). Order given to the model: sink, then window, oldest first."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Keyframe:
    file: str  # image path relative to the run directory
    shot: str  # name of the shot it came from ("ref" for reference images)
    frame: int  # frame index within that shot (or reference index)


class MemoryBank:
    def __init__(self, max_memory: int, sink: int):
        """max_memory: keyframes in all; sink: the first ones, kept forever (a run's RunSettings)."""
        if max_memory < 1 or not 0 <= sink <= max_memory:
            raise ValueError(f"need max_memory >= 1 and 0 <= sink <= max_memory, got {max_memory}, {sink}")
        self.max_memory, self.sink_size = max_memory, sink
        self.sink: list[Keyframe] = []
        self.window: list[Keyframe] = []
        self.archive: list[Keyframe] = []  # every keyframe ever added (the entity policy chooses from it)

    def add(self, keyframe: Keyframe) -> None:
        self.archive.append(keyframe)
        if len(self.sink) < self.sink_size:
            self.sink.append(keyframe)
            return
        self.window.append(keyframe)
        room = self.max_memory - self.sink_size
        del self.window[: max(0, len(self.window) - room)]

    def extend(self, keyframes) -> None:
        for keyframe in keyframes:
            self.add(keyframe)

    @property
    def keyframes(self) -> list[Keyframe]:
        return self.sink + self.window

    def __len__(self) -> int:
        return len(self.sink) + len(self.window)

    def state(self) -> dict:
        return {
            "max_memory": self.max_memory,
            "sink": self.sink_size,
            "sink_keyframes": [asdict(k) for k in self.sink],
            "window_keyframes": [asdict(k) for k in self.window],
            "archive_keyframes": [asdict(k) for k in self.archive],
        }

    @classmethod
    def from_state(cls, state: dict) -> MemoryBank:
        bank = cls(state["max_memory"], state["sink"])
        bank.sink = [Keyframe(**k) for k in state["sink_keyframes"]]
        bank.window = [Keyframe(**k) for k in state["window_keyframes"]]
        # runs saved before the archive existed: what the bank still holds
        archive = state.get("archive_keyframes")
        bank.archive = [Keyframe(**k) for k in archive] if archive is not None else bank.sink + bank.window
        return bank
