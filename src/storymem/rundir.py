"""A run folder's life: its layout, who may use it, how it starts, and whether it can be resumed.

    OUT/.storymem.lock     the process using the folder (host PID); stale ones are taken over
    OUT/story.json         the normalised story
    OUT/state.json         settings, completed shots, memory bank (written atomically)
    OUT/shots/ memory/ tails/ story.mp4 storyboard.png

A folder is started only after every input was checked (the runner's job), so `--overwrite`
never deletes a run for a flag that turns out invalid. A first run killed before it wrote
state.json leaves only our skeleton; that is treated as empty, never as a dead end.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import InputError
from .files import FolderLock, read_json

STATE_KEYS = {"version": int, "settings": dict, "completed": list, "shots": dict, "memory": dict}
SKELETON = {"shots", "memory", "tails", "story.json", ".story.json.tmp", ".state.json.tmp"}


def enclosing_run(folder: Path) -> Path | None:
    """The run folder `folder` is inside of (not itself), if any."""
    for parent in Path(folder).resolve().parents:
        if (parent / "state.json").is_file() and (parent / "shots").is_dir():
            return parent
    return None


def runs_inside(folder: Path) -> list[Path]:
    """Run folders below `folder` (not itself)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(f.parent for f in folder.rglob("state.json") if f.parent != folder)


def check_not_nested(root: Path) -> None:
    """A folder is a run, a folder of runs, or empty: never two at once, so that deleting one
    run (--overwrite) can never delete another."""
    outer = enclosing_run(root)
    if outer is not None:
        raise InputError(
            f"{root}: is inside the run folder {outer}; a run cannot hold other runs: choose another --out"
        )
    inner = runs_inside(root)
    if inner:
        raise InputError(
            f"{root}: holds other runs ({inner[0]}{' and more' if len(inner) > 1 else ''}); a folder is one run or "
            "a folder of runs, never both: choose another --out"
        )


def check_folder_of_runs(folder: Path, option: str = "--out") -> None:
    """The folder of several runs (generate with several stories, bench) is not itself a run,
    nor inside one."""
    folder = Path(folder)
    if (folder / "state.json").is_file():
        raise InputError(
            f"{option} {folder}: is the run folder of one story; several runs need a folder of their own: "
            "choose another --out"
        )
    outer = enclosing_run(folder)
    if outer is not None:
        raise InputError(f"{option} {folder}: is inside the run folder {outer}; choose an --out outside it")


class RunDirectory:
    """The files of one run. Owns naming; knows nothing about models."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.shots, self.memory, self.tails = self.root / "shots", self.root / "memory", self.root / "tails"
        self.state_file, self.story_file = self.root / "state.json", self.root / "story.json"
        self.video, self.storyboard = self.root / "story.mp4", self.root / "storyboard.png"
        self.lock = FolderLock(self.root)

    # ------------------------------------------------------------------ starting
    def prepare(self, resume: bool, overwrite: bool) -> dict | None:
        """Lock the folder and make it ready; returns the saved state when resuming. Call
        `release` (or use `with run:`) when done."""
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{self.root}: exists and is not a folder")
        check_not_nested(self.root)
        existed = self.root.exists()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"{self.root}: cannot create the run folder ({e.strerror})") from None
        self.lock.acquire()
        try:
            return self._prepare_locked(resume, overwrite, existed)
        except BaseException:
            self.release()
            if not existed:
                shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _prepare_locked(self, resume: bool, overwrite: bool, existed: bool) -> dict | None:
        entries = [e for e in self.root.iterdir() if e.name != FolderLock.NAME]
        if not self.state_file.is_file() and entries and self._only_skeleton(entries):
            self._clear(entries)  # a first run that stopped before its state: nothing to keep
            entries, existed = [], True
        if resume:
            if not self.state_file.is_file():
                if existed and not entries:
                    self._make_folders()
                    return None  # nothing was done yet: start
                raise InputError(f"{self.root}: nothing to resume (no state.json)")
            return self.read_state()
        if entries:
            if not overwrite:
                raise InputError(f"{self.root}: output folder is not empty; use --resume to continue it or --overwrite")
            if not self.state_file.is_file():
                raise InputError(f"{self.root}: not a storymem run folder (no state.json); refusing to overwrite it")
            self._clear(entries)
        self._make_folders()
        return None

    def _only_skeleton(self, entries: list[Path]) -> bool:
        """Only what a run writes before its state: our three folders (always made first), maybe
        story.json and reference copies. A user's own story.json alone is not a skeleton."""
        if any(e.name not in SKELETON for e in entries):
            return False
        if not all(folder.is_dir() for folder in (self.shots, self.memory, self.tails)):
            return False
        if any(self.shots.glob("*")) or any(self.tails.glob("*")):
            return False
        return all(f.name.startswith("ref_") for f in self.memory.glob("*"))

    def _clear(self, entries: list[Path]) -> None:
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def _make_folders(self) -> None:
        try:
            for folder in (self.shots, self.memory, self.tails):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"{self.root}: cannot create the run folder ({e.strerror})") from None

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # ------------------------------------------------------------------ saved state
    def read_state(self) -> dict:
        """state.json, checked for the shape we write; one line if it is damaged."""
        fix = "restore it, or start again with --overwrite"
        state = read_json(self.state_file, "run state", fix)
        if not isinstance(state, dict):
            raise InputError(f"{self.state_file}: the run state is damaged (not a JSON object); {fix}")
        for key, kind in STATE_KEYS.items():
            if not isinstance(state.get(key), kind):
                raise InputError(f"{self.state_file}: the run state is damaged ('{key}' missing or wrong); {fix}")
        unknown = [name for name in state["completed"] if not isinstance(state["shots"].get(name), dict)]
        if unknown:
            raise InputError(f"{self.state_file}: the run state is damaged (no record of shot {unknown[0]}); {fix}")
        return state

    def check_files(self, state: dict, tail_indices: range) -> None:
        """Every file a resumed run reads: the completed shots' videos, the last frames the next
        shot may continue from (`tail_indices`), the memory images."""
        for name in state["completed"]:
            record = state["shots"][name]
            video = self.root / str(record.get("video", ""))
            if not video.is_file():
                self._missing(video, f"shot {name}'s video")
        if state["completed"]:
            last = state["completed"][-1]
            for i in tail_indices:
                if not self.tail_frame(last, i).is_file():
                    self._missing(self.tail_frame(last, i), f"shot {last}'s last frames")
        for keyframe in [*state["memory"].get("sink_keyframes", []), *state["memory"].get("window_keyframes", [])]:
            file = self.root / str(keyframe.get("file", ""))
            if not file.is_file():
                self._missing(file, "a memory keyframe")
        for edit in state.get("edits", []):
            file = self.root / str(edit.get("file", "")) if isinstance(edit, dict) else self.root
            if isinstance(edit, dict) and edit.get("op") in ("pin", "add") and not file.is_file():
                self._missing(file, f"an image {'pinned' if edit['op'] == 'pin' else 'added'} by hand")

    def _missing(self, file: Path, what: str) -> None:
        raise InputError(
            f"{file}: {what} is missing, so the run cannot continue exactly; restore it, or start again with --overwrite"
        )

    # ------------------------------------------------------------------ names
    def shot_video(self, shot) -> Path:
        return self.shots / f"{shot.name}.mp4"

    def tail_frame(self, shot_name: str, i: int) -> Path:
        return self.tails / f"{shot_name}_{i}.png"

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))
