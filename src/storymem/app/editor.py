"""The story editor's table: one row per shot (scene, prompt, cut) <-> the story script format.

Pure functions, so the page and the tests share them. Errors come from the same validator as
the CLI (`parse_story`), renamed from JSON paths to what the page shows: "shot 3, prompt".
"""

from __future__ import annotations

import re

from ..errors import StoryError
from ..story import Story, parse_story

COLUMNS = ["scene", "prompt", "cut"]


def story_to_rows(story: Story) -> list[list]:
    return [
        [scene.scene_num, prompt, bool(cut)]
        for scene in story.scenes
        for prompt, cut in zip(scene.video_prompts, scene.cut, strict=True)
    ]


def _as_bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "cut")
    return bool(value)


def characters_to_text(story: Story) -> str:
    """One line per character: "Name: look" (or the name alone)."""
    lines = []
    for c in story.characters:
        lines.append(c if isinstance(c, str) else (f"{c.name}: {c.look}" if c.look else c.name))
    return "\n".join(lines)


def text_to_characters(text: str) -> list:
    """The characters field back to the story's list (names, or {"name", "look"} objects)."""
    out = []
    for line in (text or "").splitlines():
        name, _, look = line.partition(":")
        if name.strip():
            out.append({"name": name.strip(), "look": look.strip()} if look.strip() else name.strip())
    return out


def rows_to_data(rows: list[list], overview: str = "", name: str = "", characters: str = "") -> dict:
    """Consecutive rows with the same scene number form one scene (story order is row order)."""
    scenes: list[dict] = []
    for scene, prompt, cut in rows:
        number = int(float(scene)) if str(scene).strip() not in ("", "nan", "None") else 0
        if not scenes or scenes[-1]["scene_num"] != number:
            scenes.append({"scene_num": number, "video_prompts": [], "cut": []})
        scenes[-1]["video_prompts"].append("" if prompt is None else str(prompt))
        scenes[-1]["cut"].append(_as_bool(cut))
    data: dict = {"scenes": scenes}
    if overview.strip():
        data["story_overview"] = overview.strip()
    if name.strip():
        data["story_name"] = name.strip()
    if text_to_characters(characters):
        data["characters"] = text_to_characters(characters)
    return data


def _row_of(where: str, data: dict) -> str:
    """'scenes[1].video_prompts[0]' -> 'shot 4, prompt' (rows counted from 1, as on the page)."""
    match = re.match(r"scenes\[(\d+)\](?:\.(video_prompts|cut|scene_num)(?:\[(\d+)\])?)?", where)
    if not match:
        return where
    scene, field, index = int(match[1]), match[2], match[3]
    first = sum(len(s["video_prompts"]) for s in data["scenes"][:scene]) + 1
    column = {"video_prompts": "prompt", "cut": "cut", "scene_num": "scene"}.get(field, "scene")
    if index is None:
        return f"shot {first}, {column}"
    return f"shot {first + int(index)}, {column}"


def check_rows(rows: list[list], overview: str = "", characters: str = "") -> tuple[Story | None, str]:
    """(the story, "") or (None, one line naming the shot and field)."""
    if not rows:
        return None, "the story has no shots; add one"
    data = rows_to_data(rows, overview, characters=characters)
    try:
        return parse_story(data, file="story"), ""
    except StoryError as e:
        return None, f"{_row_of(e.where, data)}: {e.problem}" if e.where else e.problem
    except (ValueError, TypeError) as e:  # a scene number that is not a number
        return None, f"scene numbers must be whole numbers ({e})"
