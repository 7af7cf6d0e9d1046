"""Memory steered by hand: the edits a person makes to a run's memory between shots.

The bank itself stays automatic (the sink, the window and the archive of every keyframe); the
edits are applied on top of the memory a shot would get, so a resumed run, and a run replayed
from its state, give every shot the same memory. Each edit applies to every shot made after
it (each shot's record in state.json counts the edits made before it; `start`, the shot that
was next when the edit was made, is kept for the listing):

    pin KEYFRAME     the keyframe is in every shot's memory (kept, as the sink keeps its own)
    unpin KEYFRAME   it goes back to the automatic memory
    drop KEYFRAME    never in a shot's memory again (nor compared with new frames)
    add IMAGE        an image of the user's, kept like a reference; with a character, only the
                     shots naming that character get it (under either memory policy)

A shot's memory is then: the added images, the pinned keyframes, then the automatic memory
without the pinned and dropped ones; when that is more than max_memory, the automatic part
gives way, its oldest window keyframes first (sink keyframes and references last).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .bank import Keyframe

OPERATIONS = ("pin", "unpin", "drop", "add")


@dataclass(frozen=True)
class Edit:
    op: str  # one of OPERATIONS
    file: str  # the keyframe or added image, relative to the run folder
    start: int  # the shot that was next when it was made (its place in the story)
    character: str | None = None  # add: the character the image shows (normalised name)

    def record(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict) -> Edit:
        return cls(**record)


@dataclass(frozen=True)
class Steering:
    """The edits in force for one shot."""

    pinned: tuple[str, ...] = ()
    dropped: frozenset[str] = frozenset()
    added: tuple[tuple[str, str | None], ...] = ()  # (file, character or None)

    def __bool__(self) -> bool:
        return bool(self.pinned or self.dropped or self.added)


def in_force(edits: list[Edit]) -> Steering:
    """What `edits` (those made before a shot, in the order they were made) say together."""
    pinned: list[str] = []
    dropped: set[str] = set()
    added: list[tuple[str, str | None]] = []
    for edit in edits:
        if edit.op == "pin" and edit.file not in pinned:
            pinned.append(edit.file)
        elif edit.op in ("unpin", "drop") and edit.file in pinned:
            pinned.remove(edit.file)
        if edit.op == "drop":
            dropped.add(edit.file)
        elif edit.op == "add":
            added.append((edit.file, edit.character))
    return Steering(tuple(pinned), frozenset(dropped), tuple(added))


def steer(
    memory: list[Keyframe],
    archive: list[Keyframe],
    sink: list[Keyframe],
    steering: Steering,
    max_memory: int,
    wanted: frozenset[str] | None = None,
) -> list[Keyframe]:
    """A shot's memory after the edits. memory: what the policy chose; archive, sink: the bank's;
    wanted: the characters the shot names (None: every added image)."""
    if not steering:
        return memory
    added = [
        Keyframe(file, "added", i)
        for i, (file, character) in enumerate(steering.added)
        if character is None or wanted is None or character in wanted
    ]
    by_file = {k.file: k for k in archive}
    pinned = [by_file[f] for f in steering.pinned if f in by_file]
    taken = set(steering.pinned) | steering.dropped
    rest = [k for k in memory if k.file not in taken]
    room = max(0, max_memory - len(added) - len(pinned))
    if len(rest) > room:  # the window gives way first, its oldest first
        kept_first = [k for k in rest if k in sink or k.shot == "ref"][:room]
        window = [k for k in rest if k not in kept_first and not (k in sink or k.shot == "ref")]
        recent = window[len(window) - (room - len(kept_first)) :] if room > len(kept_first) else []
        rest = [k for k in rest if k in kept_first or k in recent]
    return added + pinned + rest
