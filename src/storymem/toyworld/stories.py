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
from pathlib import Path

import numpy as np

from .world import ACTIONS, ALL_LOOKS, COLOURS, NAMES, PATTERNS, PLACES, SHAPES, SHOTS, Look, render_clip


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


def parse_look(text: str) -> Look | None:
    """The look 'a red striped circle' describes, or None."""
    m = re.fullmatch(_LOOK, text.strip())
    return Look(m["shape"], m["colour"], m["pattern"] or "plain") if m else None


def parse_caption(text: str) -> ToyShot | None:
    """The toy shot a caption describes, or None if it is not a toy caption."""
    m = _CAPTION.match(text.strip())
    if not m:
        return None
    look = Look(m["shape"], m["colour"], m["pattern"] or "plain") if m["shape"] else None
    return ToyShot(m["name"], m["action"], m["place"], "close-up" if m["closeup"] else "wide", look)


def make_story(
    seed: int, num_shots: int = 6, p_continue: float = 0.3, characters: int = 1, references: bool = False
) -> tuple[dict, Look]:
    """(an ST-Bench story dict, the first character's look). Two scenes; continuations (cut
    false) keep the place (and character) of the shot they continue. With several characters,
    the first shots introduce one each (distinct names, and looks that differ in colour), later
    shots name one of them at random, and the story lists them under "characters".

    references: a cast story. No prompt spells a look out; the story lists each character as
    {"name", "look", "references": ["refs/<story>-<name>.png"]} (`reference_image` draws it), so
    only the reference images can tell the model the looks. The shots are the same otherwise."""
    if characters > 1:
        shots, cuts, names, looks = _shots_with_characters(seed, num_shots, p_continue, characters)
        overview = f"A day in the lives of {', '.join(names[:-1])} and {names[-1]}."
    else:
        shots, cuts, names, looks = _shots_of_one(seed, num_shots, p_continue)
        overview = f"A day in the life of {names[0]}."
    if references:
        shots = [ToyShot(s.name, s.action, s.place, s.shot) for s in shots]
    story = _as_story(seed, shots, cuts, overview)
    if references:
        story["characters"] = [
            {"name": n, "look": look.describe(), "references": [reference_file(story["story_name"], n)]}
            for n, look in zip(names, looks, strict=True)
        ]
    elif characters > 1:
        story["characters"] = names
    return story, looks[0]


def reference_file(story_name: str, character: str) -> str:
    """Where a cast story's reference image of a character lies, relative to the story."""
    return f"refs/{story_name}-{character.lower()}.png"


def reference_place(seed: int) -> str:
    """Where a cast story's reference pictures are drawn (its own generator, so cast stories keep
    the shots of the plain ones)."""
    return list(PLACES)[np.random.default_rng([seed, 1]).integers(len(PLACES))]


def reference_image(look: Look, seed: int, size: int = 32) -> np.ndarray:
    """uint8 [size, size, 3]: the character at rest, wide, in the story's `reference_place`."""
    return render_clip(look, reference_place(seed), "rests", "wide", frames=1, size=size)[0]


def _shots_of_one(seed: int, num_shots: int, p_continue: float):
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
    return shots, cuts, [name], [look]


def _shots_with_characters(seed: int, num_shots: int, p_continue: float, count: int):
    if not 2 <= count <= min(len(COLOURS), len(NAMES)) or num_shots < count + 1:
        raise ValueError(f"need 2 to {min(len(COLOURS), len(NAMES))} characters and more shots than characters")
    rng = np.random.default_rng(seed)
    colours = [list(COLOURS)[i] for i in rng.permutation(len(COLOURS))[:count]]
    looks = [
        Look(SHAPES[rng.integers(len(SHAPES))], colour, PATTERNS[rng.integers(len(PATTERNS))]) for colour in colours
    ]
    names = [NAMES[i] for i in rng.permutation(len(NAMES))[:count]]
    shots, cuts = [], []
    for i in range(num_shots):
        cut = i < count or i == num_shots // 2 or rng.random() >= p_continue
        who = i if i < count else (names.index(shots[-1].name) if not cut else int(rng.integers(count)))
        place = shots[-1].place if not cut else list(PLACES)[rng.integers(len(PLACES))]
        look = looks[who] if i < count else None
        shots.append(
            ToyShot(names[who], ACTIONS[rng.integers(len(ACTIONS))], place, SHOTS[rng.integers(len(SHOTS))], look)
        )
        cuts.append(bool(cut))
    return shots, cuts, names, looks


def _as_story(seed: int, shots: list[ToyShot], cuts: list[bool], overview: str) -> dict:
    half = len(shots) // 2
    scenes = [
        {"scene_num": n + 1, "video_prompts": [s.caption() for s in part], "cut": c}
        for n, (part, c) in enumerate(((shots[:half], cuts[:half]), (shots[half:], cuts[half:])))
    ]
    return {"story_name": f"toy-{seed:04d}", "story_overview": overview, "scenes": scenes}


def write_stories(
    folder: Path,
    count: int,
    shots: int = 6,
    seed: int = 0,
    characters: int = 1,
    overwrite: bool = False,
    references: bool = False,
) -> int:
    """Story i (seed + i) as folder/<story_name>.json: the set `storymem toy-stories` writes and
    the toy benchmark runs. The folder must exist. A file already there with other contents (a
    story you edited) is never replaced unless `overwrite`: then nothing is written. Returns how
    many files were written (the same story already there is left as it is). references: cast
    stories (see `make_story`), with their reference images under folder/refs/."""
    import json

    import PIL.Image

    from ..errors import InputError
    from ..files import write_json

    stories = [make_story(seed + i, shots, characters=characters, references=references)[0] for i in range(count)]
    todo = []
    for story in stories:
        file = Path(folder) / f"{story['story_name']}.json"
        if file.exists():
            try:
                same = json.loads(file.read_text()) == story
            except (OSError, ValueError):
                same = False
            if same:
                continue
            if not overwrite:
                raise InputError(
                    f"{file}: exists with other contents (a story you edited?); nothing was written: "
                    "choose another --out, or replace it with --overwrite"
                )
        todo.append((file, story))
    for i, story in enumerate(stories):
        for character in story.get("characters", []):
            for ref in character["references"] if isinstance(character, dict) else []:
                image = Path(folder) / ref
                if not image.is_file():
                    image.parent.mkdir(exist_ok=True)
                    PIL.Image.fromarray(reference_image(parse_look(character["look"]), seed + i)).save(image)
    for file, story in todo:
        write_json(file, story)
    return len(todo)
