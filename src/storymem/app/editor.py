"""The story editor's table: one row per shot (scene, prompt, cut) <-> the story script format.

Pure functions, so the page and the tests share them. Errors come from the same validator as
the CLI (`parse_story`), renamed from JSON paths to what the page shows: "shot 3, prompt".
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import StoryError
from ..story import Story, normalise_name, parse_story

COLUMNS = ["scene", "prompt", "cut"]
CHARACTER_COLUMNS = ["name", "look", "references"]
REFERENCE_SEPARATOR = "; "  # between a character's image paths in its table cell


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


def characters_to_rows(story: Story) -> list[list[str]]:
    """The Characters table: one row per character (name, look, its reference images joined by
    REFERENCE_SEPARATOR)."""
    return [
        [c, "", ""] if isinstance(c, str) else [c.name, c.look, REFERENCE_SEPARATOR.join(c.references)]
        for c in story.characters
    ]


def rows_to_characters(rows: list[list] | None) -> list:
    """The Characters table back to the story's list: a name alone stays a name; with a look or
    references, a {"name", "look", "references"} object. Rows without a name are skipped."""
    out = []
    for name, look, refs in map(_character_row, rows or []):
        if name and (look or refs):
            out.append(
                {"name": name} | ({"look": look} if look else {}) | ({"references": _paths(refs)} if refs else {})
            )
        elif name:
            out.append(name)
    return out


def add_references(rows: list[list] | None, name: str, files: list[str]) -> list[list]:
    """Uploaded images appended to a character's references (a new row for a new name)."""
    rows = [_character_row(r) for r in rows or []]
    name = (name or "").strip()
    if not name or not files:
        return rows
    row = next((r for r in rows if normalise_name(r[0]) == normalise_name(name)), None)
    if row is None:
        row = [name, "", ""]
        rows.append(row)
    row[2] = REFERENCE_SEPARATOR.join(_paths(row[2]) + [str(f) for f in files])
    return rows


def _character_row(row) -> list[str]:
    cells = ["" if v is None or str(v) in ("nan", "None") else str(v).strip() for v in row]
    return (cells + ["", "", ""])[:3]


def _paths(cell: str) -> list[str]:
    return [p.strip() for p in cell.split(";") if p.strip()]


def rows_to_data(rows: list[list], overview: str = "", name: str = "", characters: list[list] | None = None) -> dict:
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
    if rows_to_characters(characters):
        data["characters"] = rows_to_characters(characters)
    return data


def _row_of(where: str, data: dict) -> str:
    """'scenes[1].video_prompts[0]' -> 'shot 4, prompt', 'characters[1].look' -> 'character 2,
    look' (rows counted from 1, as on the page)."""
    character = re.match(r"characters\[(\d+)\](?:\.(name|look|references))?", where)
    if character:
        return f"character {int(character[1]) + 1}, {character[2] or 'name'}"
    match = re.match(r"scenes\[(\d+)\](?:\.(video_prompts|cut|scene_num)(?:\[(\d+)\])?)?", where)
    if not match:
        return where
    scene, field, index = int(match[1]), match[2], match[3]
    first = sum(len(s["video_prompts"]) for s in data["scenes"][:scene]) + 1
    column = {"video_prompts": "prompt", "cut": "cut", "scene_num": "scene"}.get(field, "scene")
    if index is None:
        return f"shot {first}, {column}"
    return f"shot {first + int(index)}, {column}"


def check_rows(rows: list[list], overview: str = "", characters: list[list] | None = None) -> tuple[Story | None, str]:
    """(the story, "") or (None, one line naming the shot and field)."""
    if not rows:
        return None, "the story has no shots; add one"
    data = rows_to_data(rows, overview, characters=characters)
    try:
        # a character's images must exist (paths from an upload are absolute; others are the app's folder's)
        return parse_story(data, file="story", base_dir=Path.cwd()), ""
    except StoryError as e:
        return None, f"{_row_of(e.where, data)}: {e.problem}" if e.where else e.problem
    except (ValueError, TypeError) as e:  # a scene number that is not a number
        return None, f"scene numbers must be whole numbers ({e})"
