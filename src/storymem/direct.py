"""Directing a run by hand: its memory, steered between shots (`storymem memory RUN ...`).

    from storymem import Run
    run = Run("run")
    run.memory.entries()                  # the bank: sink, window, pinned, dropped, added
    run.memory.pin("01_01_f000")          # in every later shot's memory
    run.memory.drop("01_02_f004")         # never used again
    run.memory.add("tam.png", character="Tam")
    run.memory.sheet()                    # run/memory-sheet.png

Each edit takes the run folder's lock (so never while a process writes the run), is checked in
full before anything changes, and is recorded in state.json with the shot it applies from (see
`storymem.memory.steer`); `storymem generate ... --resume` then continues with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .files import write_json
from .memory import Keyframe, MemoryBank
from .memory.choose import shot_memory
from .memory.entity import named_characters
from .memory.steer import Edit, in_force
from .rundir import RunDirectory
from .story import load_story, normalise_name
from .takes import bank_of, current_take, stale_shots, use_take
from .video import load_image


@dataclass(frozen=True)
class MemoryEntry:
    """One picture of a run's memory, as `storymem memory RUN` lists it."""

    name: str  # its name in the run folder (the file's stem), what pin/unpin/drop take
    file: str  # relative to the run folder
    shot: str  # the shot it came from ("ref": a reference image, "added": added by hand)
    frame: int
    place: str  # sink, window, archive (displaced by the window), reference or added
    characters: tuple[str, ...]  # those its shot names (an added image: its character)
    pinned: bool = False
    dropped: bool = False


class Run:
    """A run folder (made by `storymem generate`), to look at and direct."""

    def __init__(self, folder: str | Path):
        self.dir = RunDirectory(folder)
        if not self.dir.state_file.is_file():
            raise InputError(f"{self.dir.root}: not a storymem run folder (no state.json)")
        self.memory = RunMemory(self)

    @property
    def root(self) -> Path:
        return self.dir.root

    def state(self) -> dict:
        return self.dir.read_state()

    def story(self):
        return load_story(self.dir.story_file, check_images=False)

    def shot_name(self, shot: str | int) -> str:
        """A shot's name ("01_03") from its name or its number in the story (1-based)."""
        names = [s.name for s in self.story().shots]
        if isinstance(shot, int) and 1 <= shot <= len(names):
            return names[shot - 1]
        if shot in names:
            return shot
        raise InputError(
            f"{self.root}: no shot {shot!r} in this run; its shots are {names[0]} to {names[-1]} (1 to {len(names)})"
        )

    # ------------------------------------------------------------------ takes
    def reshoot(
        self,
        pipe,
        shot: str | int,
        prompt: str | None = None,
        seed: int | None = None,
        then: str = "keep",
        progress: bool = True,
    ) -> int:
        """Make a shot again (see `storymem.runner.reshoot`); returns the new take's number."""
        from .runner import reshoot

        return reshoot(pipe, self.root, self.shot_name(shot), prompt, seed, then, progress=progress)[1]

    def takes(self, shot: str | int) -> list[dict]:
        """The takes of a shot: [{"take", "seed", "prompt", "video", "in_use"}], oldest first."""
        name, state = self.shot_name(shot), self.state()
        if name not in state["completed"]:
            return []
        records = state.get("takes", {}).get(name) or [{**state["shots"][name], "take": 1}]
        prompt = {s.name: s.prompt for s in self.story().shots}[name]
        using = current_take(state, name)
        return [
            {"take": r["take"], "seed": r.get("seed"), "prompt": r.get("prompt", prompt), "video": r["video"],
             "in_use": r["take"] == using}
            for r in records
        ]  # fmt: skip

    def use_take(self, shot: str | int, number: int) -> None:
        """Put a kept take of a shot back in use: story.mp4 and the storyboard are made again,
        and the later shots made after another take are marked stale (or current again)."""
        from .runner import render_run_storyboard
        from .video import concat_videos

        name = self.shot_name(shot)
        with self.dir.lock:
            state, story = self.dir.read_state(), self.story()
            names = [s.name for s in story.shots]
            if name not in state["completed"]:
                raise InputError(f"{self.root}: shot {name} has not been made yet; it has no takes")
            if number == 1 and name not in state.get("takes", {}):
                return  # its only take is in use
            use_take(self.dir, state, name, number)
            take_prompt = state["takes"][name][number - 1].get("prompt")
            if take_prompt and take_prompt != {s.name: s.prompt for s in story.shots}[name]:
                from .runner import story_sha

                story = story.with_prompt(name, take_prompt)  # the story says what the take shows
                write_json(self.dir.story_file, story.model_dump())
                state["settings"]["story_sha"] = story_sha(story)
            state["stale"] = stale_shots(state, names)
            state["memory"] = bank_of(state, names).state()
            if len(state["completed"]) == len(names):
                concat_videos([self.dir.shots / f"{n}.mp4" for n in names], self.dir.video)
                render_run_storyboard(self.dir, story.shots, state)
            write_json(self.dir.state_file, state)


class RunMemory:
    """The memory of a run: what is in it, and the edits made by hand."""

    def __init__(self, run: Run):
        self.run = run

    def entries(self) -> list[MemoryEntry]:
        state, story = self.run.state(), self.run.story()
        bank = MemoryBank.from_state(state["memory"])
        steering = in_force(_edits(state))
        prompts = {s.name: s.prompt for s in story.shots}
        names = story.character_names
        sink, window = set(bank.sink), set(bank.window)

        def place(k: Keyframe) -> str:
            if k.shot == "ref":
                return "reference"
            return "sink" if k in sink else "window" if k in window else "archive"

        shown = [k for k in bank.archive if k in sink or k in window or k.file in steering.pinned]
        shown += [k for k in bank.archive if k.file in steering.dropped and k not in shown]
        entries = [
            MemoryEntry(
                Path(k.file).stem,
                k.file,
                k.shot,
                k.frame,
                place(k),
                tuple(sorted(named_characters(prompts.get(k.shot, ""), names))),
                k.file in steering.pinned,
                k.file in steering.dropped,
            )  # fmt: skip
            for k in shown
        ]
        for i, (file, character) in enumerate(steering.added):
            entries.append(MemoryEntry(Path(file).stem, file, "added", i, "added", (character,) if character else ()))
        return entries

    def replay(self) -> dict[str, list[str]]:
        """The memory of every completed shot, worked out again from state.json alone (the bank
        rebuilt shot by shot from the keyframes each one added, then the policy and the edits):
        equal to what the shots were given, for a run made in one go, resumed or steered."""
        state, story = self.run.state(), self.run.story()
        names = [s.name for s in story.shots]
        tags = {s.name: named_characters(s.prompt, story.character_names) for s in story.shots}
        policy = state["settings"].get("memory_policy", "official")
        cast, edits = state.get("cast", {}), _edits(state)
        memory = {}
        for i, name in enumerate(names):
            if name not in state["completed"]:
                break
            if state["settings"].get("method", "storymem") != "storymem":
                memory[name] = []  # the baselines have no memory
                continue
            made_before = edits[: state["shots"][name].get("edits", 0)]
            chosen = shot_memory(bank_of(state, names[:i]), name, policy, tags, cast, made_before)
            memory[name] = [k.file for k in chosen]
        return memory

    # ------------------------------------------------------------------ edits
    def pin(self, name: str) -> Edit:
        """Keep the keyframe in every later shot's memory."""
        return self._edit("pin", name)

    def unpin(self, name: str) -> Edit:
        return self._edit("unpin", name)

    def drop(self, name: str) -> Edit:
        """Never use the keyframe again."""
        return self._edit("drop", name)

    def add(self, image: str | Path, character: str | None = None) -> Edit:
        """An image of your own, kept like a reference from the next shot on; with a character,
        only the shots naming it get it."""
        return self._edit("add", str(image), character)

    def _edit(self, op: str, target: str, character: str | None = None) -> Edit:
        run = self.run.dir
        with run.lock:  # never while a process writes the run
            state, story = run.read_state(), self.run.story()
            edits = _edits(state)
            start = len(state["completed"])
            steering = in_force(edits)
            bank = MemoryBank.from_state(state["memory"])
            if op == "add":
                edit = self._added(run, state, story, target, character, start, len(steering.added))
            else:
                file = self._keyframe_file(bank, target)
                problem = {
                    "pin": "was dropped: it is never used again" if file in steering.dropped else
                    "is pinned already" if file in steering.pinned else None,
                    "unpin": None if file in steering.pinned else "is not pinned",
                    "drop": "is dropped already" if file in steering.dropped else None,
                }[op]  # fmt: skip
                if problem:
                    raise InputError(f"{run.root}: keyframe {target} {problem}")
                edit = Edit(op, file, start)
            kept = len(steering.pinned) + len(steering.added) + (op in ("pin", "add"))
            if kept > bank.max_memory:
                raise InputError(
                    f"{run.root}: {kept} pinned and added images would be more than the memory holds "
                    f"(max_memory {bank.max_memory}); unpin or drop one first"
                )
            if op == "add":  # a copy in the run folder, as PNG: a resume never needs the original
                load_image(target).save(run.root / edit.file)
            state["edits"] = [e.record() for e in edits] + [edit.record()]
            write_json(run.state_file, state)
        return edit

    def _keyframe_file(self, bank: MemoryBank, name: str) -> str:
        wanted = Path(name).stem
        for k in bank.archive:
            if Path(k.file).stem == wanted:
                return k.file
        raise InputError(
            f"{self.run.root}: no keyframe {name!r} in this run; `storymem memory {self.run.root}` lists them"
        )

    def _added(self, run, state, story, image: str, character: str | None, start: int, count: int) -> Edit:
        load_image(image)  # one line if it is missing or not an image
        if character is not None:
            known = {normalise_name(n): n for n in story.character_names}
            if normalise_name(character) not in known:
                listed = ", ".join(story.character_names) or "none"
                raise InputError(f"--character {character!r}: not a character of the story (its characters: {listed})")
            character = normalise_name(character)
        taken = {e.file for e in _edits(state)}
        index = count
        while f"memory/added_{index:02d}.png" in taken:
            index += 1
        return Edit("add", f"memory/added_{index:02d}.png", start, character)

    # ------------------------------------------------------------------ pictures
    def sheet(self, path: str | Path | None = None) -> Path:
        """A contact sheet of `entries()` (default: RUN/memory-sheet.png)."""
        from .storyboard import render_contact_sheet

        items = []
        for e in self.entries():
            flags = " ".join(f for f, on in (("pinned", e.pinned), ("dropped", e.dropped)) if on)
            who = ", ".join(e.characters)
            caption = "\n".join(x for x in (e.name, f"{e.place} {flags}".strip(), who) if x)
            items.append((load_image(self.run.root / e.file), caption))
        return render_contact_sheet(items, path or self.run.root / "memory-sheet.png")


def _edits(state: dict) -> list[Edit]:
    try:
        return [Edit.from_record(e) for e in state.get("edits", [])]
    except TypeError:
        raise InputError("state.json: the memory edits are damaged; restore the file") from None
