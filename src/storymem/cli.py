"""`storymem` command line.

Every user-fixable problem is a `StoryMemError`, printed as one line ``error: ...`` on stderr
with exit status 1; no traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import StoryMemError
from .story import load_story

app = typer.Typer(
    name="storymem",
    help="Multi-shot long video storytelling with memory (StoryMem on Wan2.2).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def validate(
    stories: Annotated[list[Path], typer.Argument(help="Story script(s) in the ST-Bench JSON format.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the normalised story (cut as booleans).")] = False,
) -> None:
    """Check story scripts; print a one-line summary of each (or the normalised JSON)."""
    failed = 0
    for path in stories:
        try:
            story = load_story(path)
        except StoryMemError as e:
            _error(e)
            failed += 1
            continue
        if as_json:
            print(json.dumps(story.model_dump(exclude_none=True), ensure_ascii=False, indent=2))
        else:
            print(f"{path}: ok: {story.summary()}")
    if failed:
        raise typer.Exit(1)


@app.command()
def presets() -> None:
    """List the model presets."""
    from .models.presets import PRESETS

    for preset in PRESETS.values():
        print(f"{preset.name:12s} {preset.width}x{preset.height}, {preset.num_frames} frames: {preset.description}")


def _error(e: BaseException) -> None:
    # Plain stderr, not rich: a long path must not be wrapped onto several lines.
    sys.stderr.write(f"error: {e}\n")


def main() -> None:
    try:
        app()
    except StoryMemError as e:
        _error(e)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
