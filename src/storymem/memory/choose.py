"""The memory one shot gets: the policy's choice from the bank (official: sink + window; entity:
its characters' keyframes, after their own pictures), then the edits made by hand. One function,
so that the runner, a resume and a replay of a run's state (`storymem.direct`) agree."""

from __future__ import annotations

from .bank import Keyframe, MemoryBank
from .entity import cast_memory, entity_memory
from .steer import Edit, in_force, steer


def shot_memory(
    bank: MemoryBank,
    shot_name: str,
    policy: str,
    tags: dict[str, frozenset[str]],
    cast: dict[str, list[str]],
    edits: list[Edit],
) -> list[Keyframe]:
    """tags: shot name -> the characters it names; cast: character -> its pictures (entity
    policy); edits: the edits made by hand before the shot, in order."""
    wanted = tags[shot_name]  # an image added by hand for a character goes to the shots naming it
    if policy == "entity":
        references = cast_memory(cast, wanted)
        memory = references + entity_memory(bank, wanted, tags, budget=bank.max_memory - len(references))
    else:
        memory = bank.keyframes
    return steer(memory, bank.archive, bank.sink, in_force(edits), bank.max_memory, wanted)
