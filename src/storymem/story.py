"""Story scripts in the ST-Bench format: schema, validation, and the flat list of shots.

    {"story_name": str, "story_overview": str,
     "scenes": [{"scene_num": int, "video_prompts": [str], "first_frame_prompt": [str],
                 "cut": [bool]}],
     "references": [str],          # ours, optional: image paths relative to the script (MR2V)
     "characters": [str | {"name": str, "look": str, "references": [str]}]}   # ours, optional

Every problem is reported as one `StoryError(file, where, problem)`, where `where` is a JSON path
such as ``scenes[1].cut[0]``.
"""

from __future__ import annotations

import json
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from .errors import StoryError

MAX_STORY_BYTES = 10_000_000  # ST-Bench scripts are a few KB


def _parse_cut(value: Any) -> bool:
    """JSON booleans, or the strings "true"/"false" in any case (a published template writes
    "True"/"False"); anything else is refused rather than read by truthiness."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise PydanticCustomError("cut_value", "must be true or false, got {value}", {"value": json.dumps(value)})


Cut = Annotated[bool, BeforeValidator(_parse_cut)]


class Scene(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    scene_num: int
    video_prompts: list[str]
    first_frame_prompt: list[str] | None = None
    cut: list[Cut]


class Character(BaseModel):
    """A character of the story: its look in words (what `storymem write` gives each) and its
    own reference images (paths relative to the script): with the entity memory policy, a shot
    that names the character is conditioned on them (a cast)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    look: str = ""
    references: list[str] = []


class Story(BaseModel):
    """A validated story. Build it with `load_story` (file) or `parse_story` (dict)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    story_name: str = ""
    story_overview: str = ""
    scenes: list[Scene] = Field(min_length=1)
    references: list[str] = []
    # The story's characters (ours, optional): names, or {"name", "look"} objects. A shot shows
    # those its prompt names, which the entity-aware memory policy uses.
    characters: list[str | Character] = []

    @property
    def character_names(self) -> list[str]:
        return [c if isinstance(c, str) else c.name for c in self.characters]

    @property
    def cast(self) -> dict[str, list[str]]:
        """Normalised character name -> its own reference images, for those that have some."""
        return {
            normalise_name(c.name): list(c.references)
            for c in self.characters
            if isinstance(c, Character) and c.references
        }

    def with_prompt(self, shot_name: str, prompt: str) -> Story:
        """The same story with one shot's prompt changed (a reshoot with a new prompt), checked."""
        data = self.model_dump()
        place = [s.name for s in self.shots].index(shot_name)
        for scene in data["scenes"]:
            if place < len(scene["video_prompts"]):
                scene["video_prompts"][place] = prompt
                break
            place -= len(scene["video_prompts"])
        return parse_story(data, file="the story")

    @property
    def shots(self) -> list[Shot]:
        """All shots in order; memory carries across scenes, so this is the generation order."""
        out: list[Shot] = []
        for scene in self.scenes:
            for i, prompt in enumerate(scene.video_prompts):
                first = scene.first_frame_prompt[i] if scene.first_frame_prompt else None
                out.append(Shot(scene.scene_num, i, len(out), prompt, scene.cut[i], first))
        return out

    def summary(self) -> str:
        shots = self.shots
        cuts = sum(s.cut for s in shots)
        refs = f", {len(self.references)} reference images" if self.references else ""
        cast = self.cast
        if cast:
            refs += f", {sum(map(len, cast.values()))} character references ({len(cast)} characters)"
        return (
            f"{self.story_name or 'untitled'}: {len(self.scenes)} scenes, {len(shots)} shots, "
            f"{cuts} cuts, {len(shots) - cuts} continuations{refs}"
        )


@dataclass(frozen=True)
class Shot:
    scene_num: int
    index: int  # 0-based within the scene
    global_index: int  # 0-based within the story
    prompt: str
    cut: bool
    first_frame_prompt: str | None = None

    @property
    def name(self) -> str:
        """Stable file stem, e.g. ``01_03`` for scene 1, shot 3 (1-based)."""
        return f"{self.scene_num:02d}_{self.index + 1:02d}"


_TYPE_PROBLEMS = {
    "int_type": "must be an integer",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "dict_type": "must be an object",
    "missing": "is required",
    "too_short": "must not be empty",
}


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _first_problem(error: ValidationError) -> tuple[str, str]:
    errors = error.errors()
    err = errors[0]
    if err["loc"][:1] == ("characters",) and len(err["loc"]) > 2:  # a name or an object: say which went wrong
        given_object = isinstance(err.get("input"), dict) or err["loc"][2] == "Character"
        err = next((e for e in errors if (e["loc"][2:3] == ("Character",)) == given_object), err)
        if not given_object and err["type"] == "string_type":
            return _where(err["loc"][:2]), 'must be a name or an object {"name": ..., "look": ..., "references": [...]}'
    loc = tuple(part for part in err["loc"] if part not in ("str", "Character"))
    kind = err["type"]
    if kind == "extra_forbidden":
        model = Scene if "scenes" in loc[:-1] else Character if loc[:1] == ("characters",) else Story
        allowed = ", ".join(model.model_fields)
        return _where(loc), f"unknown field (allowed: {allowed})"
    return _where(loc), _TYPE_PROBLEMS.get(kind, err["msg"])


def _check_semantics(story: Story) -> tuple[str, str] | None:
    """Rules a type checker cannot see. Returns (where, problem) of the first violation."""
    seen: dict[int, int] = {}
    for s, scene in enumerate(story.scenes):
        at = f"scenes[{s}]"
        if scene.scene_num < 1:
            return f"{at}.scene_num", f"must be a positive integer, got {scene.scene_num}"
        if scene.scene_num in seen:
            return f"{at}.scene_num", f"{scene.scene_num} is already used by scenes[{seen[scene.scene_num]}]"
        seen[scene.scene_num] = s
        if not scene.video_prompts:
            return f"{at}.video_prompts", "must not be empty"
        n = len(scene.video_prompts)
        if len(scene.cut) != n:
            return f"{at}.cut", f"has {len(scene.cut)} entries but video_prompts has {n}"
        if scene.first_frame_prompt is not None and len(scene.first_frame_prompt) != n:
            return (
                f"{at}.first_frame_prompt",
                f"has {len(scene.first_frame_prompt)} entries but video_prompts has {n}",
            )
        for i, prompt in enumerate(scene.video_prompts):
            if not visible(prompt):
                return f"{at}.video_prompts[{i}]", "must not be empty (it has no visible characters)"
    names = [normalise_name(c) for c in story.character_names]
    for i, name in enumerate(names):
        where = f"characters[{i}]" if isinstance(story.characters[i], str) else f"characters[{i}].name"
        if not name or not visible(name):
            return where, "must not be empty"
        if name in names[:i]:
            return where, f"{story.character_names[i]!r} is listed twice"
    if not story.scenes[0].cut[0]:
        return (
            "scenes[0].cut[0]",
            "the first shot of a story must be a cut (true): there is no earlier shot to continue",
        )
    return None


def normalise_name(text: str) -> str:
    """How names are compared, in validation and in matching them to prompts alike: Unicode NFC
    (an accent typed as a combining mark equals the composed letter), no surrounding spaces,
    case-folded."""
    return unicodedata.normalize("NFC", text).strip().casefold()


def visible(text: str) -> bool:
    """Whether any character is a letter, digit, punctuation or symbol (not only spaces,
    zero-width or control characters)."""
    return any(unicodedata.category(c)[0] in "LNPS" for c in text)


def _lone_surrogate(value: Any, where: str = "") -> str | None:
    """The JSON path of the first string holding a lone UTF-16 surrogate (unencodable text)."""
    if isinstance(value, str):
        return where if any("\ud800" <= c <= "\udfff" for c in value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _lone_surrogate(item, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}".lstrip("."))
        if found is not None:
            return found
    return None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


class _DuplicateKey(ValueError):
    pass


def parse_story(data: Any, file: str = "<story>", base_dir: Path | None = None, check_images: bool = True) -> Story:
    """Validate a decoded JSON object. Reference paths are resolved against `base_dir` and, with
    check_images, must exist (a resume reads the run folder's copies instead)."""
    if not isinstance(data, dict):
        raise StoryError(file, "", "the top level must be a JSON object with a 'scenes' list")
    surrogate = _lone_surrogate(data)
    if surrogate is not None:
        raise StoryError(file, surrogate, "holds a lone UTF-16 surrogate (a broken \\u escape), not text")
    try:
        story = Story.model_validate(data)
    except ValidationError as e:
        raise StoryError(file, *_first_problem(e)) from None
    problem = _check_semantics(story)
    if problem:
        raise StoryError(file, *problem)
    if base_dir is not None:
        story = _resolve_references(story, file, Path(base_dir), check_images)
    return story


def _resolve_references(story: Story, file: str, base_dir: Path, check_images: bool) -> Story:
    """Every reference image (the story's and each character's) as an absolute path, checked to
    exist; one StoryError naming the first that does not."""

    def resolve(paths: list[str], where: str) -> list[str]:
        resolved = []
        for i, ref in enumerate(paths):
            path = (base_dir / ref).resolve()
            if check_images and not path.is_file():
                raise StoryError(file, f"{where}[{i}]", f"image not found: {path}")
            resolved.append(str(path))
        return resolved

    characters = [
        c.model_copy(update={"references": resolve(c.references, f"characters[{i}].references")})
        if isinstance(c, Character) and c.references
        else c
        for i, c in enumerate(story.characters)
    ]
    return story.model_copy(update={"references": resolve(story.references, "references"), "characters": characters})


def load_story(path: str | Path, check_images: bool = True) -> Story:
    """Read and validate a story script; raises `StoryError` with one clear sentence.
    check_images=False: reference images may be missing (a resume uses the run folder's copies)."""
    path = Path(path)
    file = str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise StoryError(file, "", "file not found") from None
    except OSError as e:
        raise StoryError(file, "", f"cannot read it ({e.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise StoryError(file, "", "is a directory, expected a .json story script")
    if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block or never end
        raise StoryError(file, "", "is not a regular file, expected a .json story script")
    if info.st_size > MAX_STORY_BYTES:
        raise StoryError(
            file, "", f"is {info.st_size / 1e6:.1f} MB; a story script is at most {MAX_STORY_BYTES // 10**6} MB"
        )
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StoryError(file, "", "file not found") from None
    except IsADirectoryError:
        raise StoryError(file, "", "is a directory, expected a .json story script") from None
    except PermissionError:
        raise StoryError(file, "", "permission denied") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise StoryError(file, "", f"not UTF-8 text (bad byte at offset {e.start})") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as e:
        raise StoryError(file, f"line {e.lineno} column {e.colno}", f"not valid JSON ({e.msg})") from None
    except _DuplicateKey as e:
        raise StoryError(file, "", f"the key {str(e)!r} appears twice in one object; keep one") from None
    except RecursionError:
        raise StoryError(file, "", "nested too deeply to be a story script") from None
    return parse_story(data, file=file, base_dir=path.parent, check_images=check_images)
