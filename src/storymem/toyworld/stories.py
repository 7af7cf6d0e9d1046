"""Toy stories in the ST-Bench format, and the caption templates (written and parsed here).

The first shot introduces the character with its look; later shots name it only:

    "Pip, a red striped circle, walks in the forest."      (introduction)
    "Pip jumps in the desert."  /  "Pip rests in the snow, close-up."

The name-to-look pairing is drawn at random per story, so the text of a later shot says nothing
about the look: only memory can carry it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .world import ACTIONS, ALL_LOOKS, COLOURS, NAMES, PATTERNS, PLACES, SHAPES, SHOTS, Look


@dataclass(frozen=True)
class ToyShot:
    name: str
    action: str
    place: str
    shot: str = "wide"
    look: Look | None = None  # given only when the caption introduces the character

    def caption(self) -> str:
        who = f"{self.name}, {self.look.describe()}," if self.look else self.name
        framing = ", close-up" if self.shot == "close-up" else ""
        return f"{who} {self.action} in the {self.place}{framing}."


_LOOK = rf"an? (?P<colour>{'|'.join(COLOURS)}) (?:(?P<pattern>{'|'.join(p for p in PATTERNS if p != 'plain')}) )?(?P<shape>{'|'.join(SHAPES)})"
_CAPTION = re.compile(
    rf"^(?P<name>[A-Z][a-z]+)(?:, {_LOOK},)? (?P<action>{'|'.join(ACTIONS)}) in the (?P<place>{'|'.join(PLACES)})"
    rf"(?P<closeup>, close-up)?\.$"
)


def parse_caption(text: str) -> ToyShot | None:
    """The toy shot a caption describes, or None if it is not a toy caption."""
    m = _CAPTION.match(text.strip())
    if not m:
        return None
    look = Look(m["shape"], m["colour"], m["pattern"] or "plain") if m["shape"] else None
    return ToyShot(m["name"], m["action"], m["place"], "close-up" if m["closeup"] else "wide", look)


def make_story(seed: int, num_shots: int = 6, p_continue: float = 0.3) -> tuple[dict, Look]:
    """(an ST-Bench story dict, the character's look). Two scenes; continuations (cut false)
    keep the place of the shot they continue."""
    rng = np.random.default_rng(seed)
    look = ALL_LOOKS[rng.integers(len(ALL_LOOKS))]
    name = NAMES[rng.integers(len(NAMES))]
    shots, cuts = [], []
    for i in range(num_shots):
        cut = i == 0 or i == num_shots // 2 or rng.random() >= p_continue
        place = shots[-1].place if not cut else list(PLACES)[rng.integers(len(PLACES))]
        shot = ToyShot(
            name,
            ACTIONS[rng.integers(len(ACTIONS))],
            place,
            SHOTS[rng.integers(len(SHOTS))],
            look if i == 0 else None,
        )
        shots.append(shot)
        cuts.append(bool(cut))
    half = num_shots // 2
    scenes = [
        {"scene_num": n + 1, "video_prompts": [s.caption() for s in part], "cut": c}
        for n, (part, c) in enumerate(((shots[:half], cuts[:half]), (shots[half:], cuts[half:])))
    ]
    story = {"story_name": f"toy-{seed:04d}", "story_overview": f"A day in the life of {name}.", "scenes": scenes}
    return story, look
