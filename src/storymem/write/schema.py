"""What a language model writes for `storymem write`, as a JSON schema its decoding is held to,
and how that becomes a story script in our format.

The model fills a draft: a title, an overview, each character's name and one-line look, and per
scene its shots (a prompt and a cut flag each). The schema fixes every count (scenes, shots per
scene, characters, their names), bounds every string and asks for a visible character in each,
so any draft it admits is a valid story: the first shot becomes a cut, scenes are numbered.
"""

from __future__ import annotations

from ..errors import InputError

# Longest strings, in characters: ST-Bench prompts are 150-350. The random `tiny` model writes
# strings to their limit, so it gets short ones (its prose is noise anyway).
LIMITS = {"prompt": 400, "look": 160, "overview": 600, "title": 80, "name": 40}
TINY_LIMITS = {"prompt": 40, "look": 20, "overview": 30, "title": 20, "name": 12}
VISIBLE = r"^[\p{L}\p{N}][^\n\r]*$"  # a letter or digit first (so never blank), one line
NAME = r"^\p{L}[\p{L}\p{N} '-]*$"


def shots_per_scene(shots: int, scenes: int) -> list[int]:
    """`shots` spread over `scenes` as evenly as possible, earlier scenes taking the extra ones."""
    if scenes < 1 or shots < scenes:
        raise InputError(f"--shots must be at least --scenes (one shot per scene), got {shots} shots, {scenes} scenes")
    return [shots // scenes + (1 if i < shots % scenes else 0) for i in range(scenes)]


def _text(max_length: int, pattern: str = VISIBLE) -> dict:
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": pattern}


def draft_schema(shots: int, scenes: int, names: list[str], characters: int, limits: dict = LIMITS) -> dict:
    """The JSON schema of a draft: `names` fixed when given, else `characters` names to invent."""
    counts = shots_per_scene(shots, scenes)

    def character(name: dict) -> dict:
        return {
            "type": "object",
            "properties": {"name": name, "look": _text(limits["look"])},
            "required": ["name", "look"],
            "additionalProperties": False,
        }

    # the names asked for, each in its place (so none twice); else as many names to invent
    people = (
        [character({"const": n}) for n in names] if names else [character(_text(limits["name"], NAME))] * characters
    )
    scene_items = [
        {
            "type": "object",
            "properties": {
                "shots": {
                    "type": "array",
                    "minItems": n,
                    "maxItems": n,
                    "items": {
                        "type": "object",
                        "properties": {"prompt": _text(limits["prompt"]), "cut": {"type": "boolean"}},
                        "required": ["prompt", "cut"],
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["shots"],
            "additionalProperties": False,
        }
        for n in counts
    ]
    return {
        "type": "object",
        "properties": {
            "story_name": _text(limits["title"]),
            "story_overview": _text(limits["overview"]),
            "characters": {
                "type": "array",
                "prefixItems": people,
                "minItems": len(people),
                "maxItems": len(people),
                "items": False,
            },
            "scenes": {
                "type": "array",
                "prefixItems": scene_items,
                "minItems": scenes,
                "maxItems": scenes,
                "items": False,
            },
        },
        "required": ["story_name", "story_overview", "characters", "scenes"],
        "additionalProperties": False,
    }


def draft_to_story(draft: dict) -> dict:
    """Our story format from a draft (already held to `draft_schema`): scenes numbered from 1, the
    story's first shot a cut, the characters with their looks."""
    scenes = []
    for number, scene in enumerate(draft["scenes"], start=1):
        prompts = [shot["prompt"].strip() for shot in scene["shots"]]
        cuts = [bool(shot["cut"]) for shot in scene["shots"]]
        scenes.append({"scene_num": number, "video_prompts": prompts, "cut": cuts})
    scenes[0]["cut"][0] = True  # nothing before the first shot to continue
    characters = [{"name": c["name"].strip(), "look": c["look"].strip()} for c in draft["characters"]]
    return {
        "story_name": draft["story_name"].strip(),
        "story_overview": draft["story_overview"].strip(),
        "scenes": scenes,
        "characters": characters,
    }


def check_draft(draft, shots: int, scenes: int, names: list[str], characters: int) -> str | None:
    """Where a draft from elsewhere (a server that ignored the schema) breaks it, or None."""
    from ..story import visible

    def text(value) -> bool:
        return isinstance(value, str) and visible(value)

    if not isinstance(draft, dict):
        return "the answer is not a JSON object"
    for key in ("story_name", "story_overview"):
        if not text(draft.get(key)):
            return f"{key}: missing or empty"
    people = draft.get("characters")
    count = len(names) if names else characters
    if not isinstance(people, list) or len(people) != count:
        return f"characters: expected {count}, got {len(people) if isinstance(people, list) else 'none'}"
    for i, person in enumerate(people):
        if not isinstance(person, dict) or not text(person.get("name")) or not isinstance(person.get("look"), str):
            return f"characters[{i}]: expected a name and a look"
        if names and person["name"].strip() != names[i]:
            return f"characters[{i}].name: expected {names[i]!r}, got {person['name']!r}"
    counts = shots_per_scene(shots, scenes)
    parts = draft.get("scenes")
    if not isinstance(parts, list) or len(parts) != scenes:
        return f"scenes: expected {scenes}"
    for s, (scene, n) in enumerate(zip(parts, counts, strict=True)):
        shots_of = scene.get("shots") if isinstance(scene, dict) else None
        if not isinstance(shots_of, list) or len(shots_of) != n:
            return f"scenes[{s}].shots: expected {n}"
        for i, shot in enumerate(shots_of):
            if not isinstance(shot, dict) or not text(shot.get("prompt")) or not isinstance(shot.get("cut"), bool):
                return f"scenes[{s}].shots[{i}]: expected a prompt and a cut flag"
    return None
