"""Entity-aware memory (ours; `--memory-policy entity`): condition a shot on the keyframes of the
characters it names, not simply on the latest ones.

StoryMem's memory holds frames with no idea whom they show, so in a story with several
characters a shot can copy the wrong one's look. Here every keyframe is tagged with the
characters its shot names (the story's `characters` list, matched as whole words in each
prompt). A shot that names characters is conditioned on the sink plus the most recent keyframes
whose shot names any of them, within the same budget (max_memory), oldest first as always; the
sink alone if they have none yet (a character's first shot is not shown anyone else's latest
frames). A shot that names nobody gets the official memory (sink + window). Needs no retraining:
the model sees the same kind of memory, chosen differently.
"""

from __future__ import annotations

import re

from .bank import Keyframe, MemoryBank

POLICIES = ("official", "entity")


def named_characters(prompt: str, characters: list[str]) -> frozenset[str]:
    """The characters (lower case) a prompt names, as whole words, case-insensitively."""
    return frozenset(
        name.lower() for name in characters if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", prompt, re.IGNORECASE)
    )


def entity_memory(bank: MemoryBank, wanted: frozenset[str], tags: dict[str, frozenset[str]]) -> list[Keyframe]:
    """The memory for a shot naming `wanted`; tags: shot name -> the characters it names."""
    if not wanted:
        return bank.keyframes
    sink = set(bank.sink)
    relevant = [k for k in bank.archive if k not in sink and tags.get(k.shot, frozenset()) & wanted]
    room = bank.max_memory - len(bank.sink)
    chosen = set(relevant[-room:]) if room > 0 else set()  # the most recent ones
    return bank.sink + [k for k in bank.archive if k in chosen]  # oldest first
