"""Takes: every version of a shot a run has made, kept, never deleted.

    RUN/takes/01_03.take1.mp4      a take's video
    RUN/takes/01_03.take1/         its last frames (what a continuation starts from)
    RUN/memory/01_03.take2_f004.png   a later take's keyframes (take 1's keep their plain names)

state.json's `shots[NAME]` is the take in use (its `take` number; shots/NAME.mp4 and tails/ hold
its files), `takes[NAME]` the records of all takes of a shot that has more than one. A shot made
while an earlier shot used another take than it uses now is *stale*: its record keeps the takes
it was made after (`upstream`), so switching back makes it current again.
"""

from __future__ import annotations

import re
import shutil

from .errors import InputError
from .memory import Keyframe, MemoryBank
from .rundir import RunDirectory


def take_paths(run: RunDirectory, name: str, take: int):
    """(video, folder of last frames) of a take."""
    return run.root / "takes" / f"{name}.take{take}.mp4", run.root / "takes" / f"{name}.take{take}"


def keyframe_prefix(state: dict, name: str) -> str:
    """The file stem of the next take's keyframes: take 1's are NAME_fNNN, later ones NAME.takeN_fNNN."""
    takes = state.get("takes", {}).get(name)
    return f"{name}.take{len(takes) + 1}" if takes else name


def current_take(state: dict, name: str) -> int:
    return state["shots"][name].get("take", 1)


def upstream(state: dict, names_before: list[str]) -> dict[str, int]:
    """The takes in use of the earlier shots that have more than one (what a new shot is made after)."""
    return {n: current_take(state, n) for n in names_before if n in state.get("takes", {})}


def stale_shots(state: dict, names: list[str]) -> list[str]:
    """Completed shots made after other takes of earlier shots than those in use now."""
    stale = []
    for i, name in enumerate(names):
        if name not in state["completed"]:
            continue
        made_after = state["shots"][name].get("upstream", {})
        if any(current_take(state, n) != made_after.get(n, 1) for n in names[:i] if n in state["completed"]):
            stale.append(name)
    return stale


def keep_take(run: RunDirectory, state: dict, name: str, record: dict, prompt: str) -> int:
    """Saves the shot's files now in shots/ and tails/ (made from `record`) as its next take, and
    makes it the one in use; returns its number."""
    takes = state.setdefault("takes", {}).setdefault(name, [])
    number = len(takes) + 1
    video, tails = take_paths(run, name, number)
    tails.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run.root / record["video"], video)
    for frame in run.tails.glob(f"{name}_*.png"):
        shutil.copyfile(frame, tails / frame.name)
    takes.append({**record, "take": number, "prompt": prompt, "video": run.relative(video)})
    state["shots"][name] = {**record, "take": number}
    return number


def keep_first_take(run: RunDirectory, state: dict, name: str, prompt: str) -> None:
    """A shot about to be made again: its only take so far goes to takes/ first. If a reshoot
    stopped after saving it (before state.json said so), that saved copy is the take in use:
    it is put back, since the stopped reshoot may have written over shots/ and tails/."""
    if name in state.get("takes", {}):
        return
    video, tails = take_paths(run, name, 1)
    if video.is_file():
        shutil.copyfile(video, run.root / state["shots"][name]["video"])
        for frame in tails.glob("*.png"):
            shutil.copyfile(frame, run.tails / frame.name)
    keep_take(run, state, name, state["shots"][name], prompt)


def use_take(run: RunDirectory, state: dict, name: str, number: int) -> None:
    """Puts a kept take back in use (its video in shots/, its last frames in tails/)."""
    takes = state.get("takes", {}).get(name, [])
    if not 1 <= number <= len(takes):
        have = f"takes 1 to {len(takes)}" if takes else "one take"
        raise InputError(f"{run.root}: shot {name} has {have}; there is no take {number}")
    take = takes[number - 1]
    video, tails = take_paths(run, name, number)
    shutil.copyfile(video, run.root / "shots" / f"{name}.mp4")
    for frame in tails.glob("*.png"):
        shutil.copyfile(frame, run.tails / frame.name)
    state["shots"][name] = {k: v for k, v in take.items() if k != "prompt"} | {"video": f"shots/{name}.mp4"}


def bank_of(state: dict, names: list[str]) -> MemoryBank:
    """The bank after the completed shots among `names` (in order), with the takes in use: the
    references, then each shot's keyframes."""
    saved = MemoryBank.from_state(state["memory"])
    bank = MemoryBank(saved.max_memory, saved.sink_size)
    bank.extend(k for k in saved.archive if k.shot == "ref")
    for name in names:
        if name in state["completed"]:
            bank.extend(keyframe(file, name) for file in state["shots"][name]["keyframes"])
    return bank


def keyframe(file: str, shot: str) -> Keyframe:
    """The keyframe a file holds (its frame from the name: ..._f012.png)."""
    match = re.search(r"_f(\d+)\.png$", file)
    return Keyframe(file, shot, int(match[1]) if match else 0)
