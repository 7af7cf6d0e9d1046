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
    """shots: [(video, caption)], memory: [(image, caption)] (the bank now: sink, window, and what
    was pinned, dropped or added by hand; memory_names: their names, for the edits),
    storyboard / video: paths once made, completed / total shots, finished, settings."""
    run = Path(run)
    state = _read(run / "state.json")
    view = {"shots": [], "memory": [], "memory_names": [], "storyboard": None, "video": None, "completed": 0,
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
    for entry in memory_entries(run):
        source = {"reference": "reference", "added": "added by hand"}.get(
            entry.place, f"shot {entry.shot}, frame {entry.frame}"
        )
        flags = "".join(f" · {f}" for f, on in (("pinned", entry.pinned), ("dropped", entry.dropped)) if on)
        if (run / entry.file).is_file():
            view["memory"].append((str(run / entry.file), f"{entry.place} · {source}{flags} · {entry.name}"))
            view["memory_names"].append(entry.name)
    view["completed"] = len(state.get("completed", []))
    view["finished"] = bool(state.get("finished"))
    view["settings"] = state.get("settings", {})
    if view["finished"]:
        view["storyboard"] = str(run / "storyboard.png") if (run / "storyboard.png").is_file() else None
        view["video"] = str(run / "story.mp4") if (run / "story.mp4").is_file() else None
    return view


def memory_entries(run: Path) -> list:
    """The run's memory as `storymem memory RUN` lists it, or the bank alone (sink, window) when
    the run's story cannot be read."""
    from ..direct import MemoryEntry, Run
    from ..errors import StoryMemError

    try:
        return [e for e in Run(run).memory.entries() if e.place != "archive" or e.pinned or e.dropped]
    except (StoryMemError, OSError, ValueError, KeyError, TypeError):
        pass
    try:
        bank = MemoryBank.from_state(json.loads((Path(run) / "state.json").read_text())["memory"])
    except (OSError, KeyError, TypeError, ValueError):
        return []
    return [
        MemoryEntry(Path(k.file).stem, k.file, k.shot, k.frame, "reference" if k.shot == "ref" else part, ())
        for part, keyframes in (("sink", bank.sink), ("window", bank.window))
        for k in keyframes
    ]


def list_runs(root: Path) -> list[str]:
    """Run folders under `root` (any depth: bench runs too), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p.parent for p in root.rglob("state.json")]
    runs.sort(key=lambda p: (p / "state.json").stat().st_mtime, reverse=True)
    return [str(p.relative_to(root)) for p in runs]
