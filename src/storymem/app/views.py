"""What the page shows of a run folder, read from the folder itself (so CLI and app runs are the
same thing, and a run started in a closed tab is still seen when reopened)."""

from __future__ import annotations

import json
from pathlib import Path

from ..memory.bank import MemoryBank


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def shot_count(run: Path) -> int:
    story = _read(run / "story.json") or {}
    return sum(len(scene.get("video_prompts", [])) for scene in story.get("scenes", []))


def run_view(run: Path) -> dict:
    """shots: [(video, caption)], memory: [(image, caption)] (the bank now: sink, then window),
    storyboard / video: paths once made, completed / total shots, finished, settings."""
    run = Path(run)
    state = _read(run / "state.json")
    view = {"shots": [], "memory": [], "storyboard": None, "video": None, "completed": 0,
            "total": shot_count(run), "finished": False, "settings": {}}  # fmt: skip
    if state is None:
        return view
    for name in state.get("completed", []):
        record = state["shots"].get(name, {})
        video = run / record.get("video", f"shots/{name}.mp4")
        if video.is_file():
            take = f" · take {record['take']}" if name in state.get("takes", {}) else ""
            stale = " · stale" if name in state.get("stale", []) else ""
            view["shots"].append((str(video), f"{name} · {record.get('mode', '?').upper()}{take}{stale}"))
    try:
        bank = MemoryBank.from_state(state["memory"])
    except (KeyError, TypeError, ValueError):
        bank = None
    if bank is not None:
        for part, keyframes in (("sink", bank.sink), ("window", bank.window)):
            for k in keyframes:
                source = "reference" if k.shot == "ref" else f"shot {k.shot}, frame {k.frame}"
                if (run / k.file).is_file():
                    view["memory"].append((str(run / k.file), f"{part} · {source}"))
    view["completed"] = len(state.get("completed", []))
    view["finished"] = bool(state.get("finished"))
    view["settings"] = state.get("settings", {})
    if view["finished"]:
        view["storyboard"] = str(run / "storyboard.png") if (run / "storyboard.png").is_file() else None
        view["video"] = str(run / "story.mp4") if (run / "story.mp4").is_file() else None
    return view


def list_runs(root: Path) -> list[str]:
    """Run folders under `root` (any depth: bench runs too), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p.parent for p in root.rglob("state.json")]
    runs.sort(key=lambda p: (p / "state.json").stat().st_mtime, reverse=True)
    return [str(p.relative_to(root)) for p in runs]
