"""Directing a run by hand: the memory steered between shots (pin, unpin, drop, add), recorded
in state.json so that a resume and a replay of the state give every shot the same memory."""

import json

import numpy as np
import PIL.Image
import pytest

from conftest import run_story
from storymem import Run
from storymem.files import FolderLock
from storymem.memory import Keyframe, MemoryBank
from storymem.memory.choose import shot_memory
from storymem.memory.steer import Edit, in_force, steer
from storymem.story import parse_story
from storymem.video import read_video
from test_cast import StopAtShot

STORY = {
    "characters": ["Pip", "Bo"],
    "scenes": [
        {
            "scene_num": 1,
            "video_prompts": ["Pip walks in the forest.", "Bo jumps.", "Pip rests.", "Bo walks.", "Pip and Bo meet."],
            "cut": [True, True, True, False, True],
        }
    ],
}
SETTINGS = dict(max_memory=3, sink=1, steps=2, seed=5, memory_policy="entity")


def k(shot, frame=0):
    return Keyframe(f"memory/{shot}_f{frame:03d}.png", shot, frame)


def test_edits_say_together_what_was_made_last():
    a, b, c = k("01_01").file, k("01_02").file, "memory/added_00.png"
    edits = [Edit("pin", a, 2), Edit("drop", b, 2), Edit("add", c, 3, "pip"), Edit("unpin", a, 4)]
    assert not in_force([])
    assert in_force(edits[:2]).pinned == (a,) and in_force(edits[:2]).dropped == {b}
    assert in_force(edits[:3]).added == ((c, "pip"),)
    assert in_force(edits).pinned == () and in_force(edits).dropped == {b}
    assert in_force([Edit("pin", a, 0), Edit("drop", a, 1)]).pinned == ()  # a dropped keyframe is unpinned


def test_steered_memory_keeps_pins_and_additions_and_gives_way_oldest_window_first():
    bank = MemoryBank(max_memory=4, sink=1)
    bank.extend(k(s) for s in ("s1", "s2", "s3", "s4", "s5", "s6"))  # sink s1; window s4 s5 s6
    steering = in_force([Edit("pin", k("s2").file, 0), Edit("drop", k("s5").file, 0)])
    assert steer(bank.keyframes, bank.archive, bank.sink, steering, 4) == [k("s2"), k("s1"), k("s4"), k("s6")]
    added = Edit("add", "memory/added_00.png", 0, "bo")
    steering = in_force([Edit("pin", k("s2").file, 0), added])
    steered = steer(bank.keyframes, bank.archive, bank.sink, steering, 4)
    # 4 in all: the added image and the pin first; the window's oldest gave way, the sink stays
    assert steered == [Keyframe("memory/added_00.png", "added", 0), k("s2"), k("s1"), k("s6")]
    # an image added for Bo goes only to shots that name Bo
    pip_only = steer(bank.keyframes, bank.archive, bank.sink, steering, 4, wanted=frozenset({"pip"}))
    assert pip_only == [k("s2"), k("s1"), k("s5"), k("s6")]
    # the same under the official policy: an image added for a character goes to its shots only
    tags = {"s7": frozenset({"pip"}), "s8": frozenset({"bo"})}
    edits = [Edit("pin", k("s2").file, 0), added]
    assert shot_memory(bank, "s7", "official", tags, {}, edits) == pip_only
    assert shot_memory(bank, "s8", "official", tags, {}, edits) == steered


def picture(path, grey=200):
    PIL.Image.fromarray(np.full((32, 32, 3), grey, np.uint8)).save(path)
    return path


def steer_by_hand(run_dir, image):
    """Pin Pip's first keyframe, drop Bo's, add an image of Bo: the edits of the tests below."""
    run = Run(run_dir)
    state = run.state()
    pip, bo = state["shots"]["01_01"]["keyframes"][0], state["shots"]["01_02"]["keyframes"][0]
    run.memory.pin(pip.split("/")[1].removesuffix(".png"))
    run.memory.drop(bo)  # a path works as well as a name
    run.memory.add(image, character="bo")
    return pip, bo


def test_a_steered_run_resumed_equals_one_not_stopped_and_its_state_replays(tiny_pipe, tmp_path):
    story, image = parse_story(STORY), picture(tmp_path / "bo.png")
    states = {}
    for name, stops in (("once", 1), ("twice", 2)):
        out = tmp_path / name
        with pytest.raises(KeyboardInterrupt):  # stopped in shot 3, then steered by hand
            run_story(tiny_pipe, story, out, callback_on_step_end=StopAtShot(3, 2), **SETTINGS)
        pip, bo = steer_by_hand(out, image)
        if stops == 2:  # stopped once more, in shot 4 (the resumed run's second)
            with pytest.raises(KeyboardInterrupt):
                run_story(tiny_pipe, story, out, resume=True, callback_on_step_end=StopAtShot(2, 2), **SETTINGS)
            assert len(json.loads((out / "state.json").read_text())["completed"]) == 3
        run_story(tiny_pipe, story, out, resume=True, **SETTINGS)
        states[name] = json.loads((out / "state.json").read_text())
    once, twice = states["once"], states["twice"]
    assert [(e["op"], e["start"]) for e in once["edits"]] == [("pin", 2), ("drop", 2), ("add", 2)]
    assert (tmp_path / "once" / "memory" / "added_00.png").is_file()
    assert [once["shots"][s]["edits"] for s in once["completed"]] == [0, 0, 3, 3, 3]  # made before each
    for shot in ("01_01", "01_02"):
        assert "memory/added_00.png" not in once["shots"][shot]["memory"]  # edits never reach back
    for shot in ("01_03", "01_04", "01_05"):  # Pip's pinned keyframe, never Bo's dropped one
        memory = once["shots"][shot]["memory"]
        assert pip in memory and bo not in memory
        assert ("memory/added_00.png" in memory) == (shot in ("01_04", "01_05"))  # only shots naming Bo
    assert without_timings(once["shots"]) == without_timings(twice["shots"])
    assert (once["memory"], once["edits"]) == (twice["memory"], twice["edits"])
    assert np.array_equal(read_video(tmp_path / "once" / "story.mp4"), read_video(tmp_path / "twice" / "story.mp4"))
    replayed = Run(tmp_path / "once").memory.replay()
    assert replayed == {s: r["memory"] for s, r in once["shots"].items()}


def without_timings(shots: dict) -> dict:
    """Shot records without what says how, not what, was made (times; where the CLI placed the weights)."""
    skip = ("timings", "memory_mode")
    return {s: {f: v for f, v in r.items() if not f.endswith("_s") and f not in skip} for s, r in shots.items()}


def test_bad_edits_are_one_line_and_change_nothing(tiny_pipe, tmp_path, cli):
    out = tmp_path / "run"
    run_story(tiny_pipe, parse_story(STORY), out, **SETTINGS)
    before = (out / "state.json").read_bytes()
    keyframe = json.loads(before)["shots"]["01_01"]["keyframes"][0].split("/")[1].removesuffix(".png")
    (tmp_path / "note.png").write_text("not an image")
    cases = {
        ("pin", "01_09_f000"): f"{out}: no keyframe '01_09_f000' in this run; `storymem memory {out}` lists them",
        ("unpin", keyframe): f"{out}: keyframe {keyframe} is not pinned",
        ("add", str(tmp_path / "note.png")): f"{tmp_path / 'note.png'}: not a readable image (UnidentifiedImageError)",
        ("add", str(tmp_path / "gone.png")): f"{tmp_path / 'gone.png'}: image not found",
        ("jump", keyframe): "memory: the action must be one of pin, unpin, drop, add, got 'jump'",
        ("pin",): "memory pin: give the KEYFRAME (storymem memory RUN pin KEYFRAME)",
    }
    for args, message in cases.items():
        code, _, err = cli("memory", out, *args)
        assert (code, err.splitlines()[0]) == (1, f"error: {message}"), args
    code, _, err = cli("memory", out, "add", str(picture(tmp_path / "ok.png")), "--character", "Zed")
    assert err == "error: --character 'Zed': not a character of the story (its characters: Pip, Bo)\n"
    code, _, err = cli("memory", tmp_path, "pin", keyframe)
    assert err == f"error: {tmp_path}: not a storymem run folder (no state.json)\n"
    with FolderLock(out):  # a process is writing the run
        code, _, err = cli("memory", out, "pin", keyframe)
    assert code == 1 and "another storymem process" in err and "is using this folder" in err
    assert (out / "state.json").read_bytes() == before
    assert not list((out / "memory").glob("added_*"))
    # a dropped keyframe cannot be pinned; too many pins for the memory are refused
    assert cli("memory", out, "drop", keyframe)[0] == 0
    assert (
        cli("memory", out, "pin", keyframe)[2]
        == f"error: {out}: keyframe {keyframe} was dropped: it is never used again\n"
    )


def test_the_memory_command_lists_the_bank_and_draws_a_sheet(tiny_pipe, tmp_path, cli):
    out = tmp_path / "run"
    run_story(tiny_pipe, parse_story(STORY), out, **SETTINGS)
    state = json.loads((out / "state.json").read_text())
    first = state["memory"]["sink_keyframes"][0]["file"].split("/")[1].removesuffix(".png")
    code, stdout, err = cli("memory", out, "pin", first)
    assert (code, stdout) == (0, f"pin {first}: applies from the shots made from now on\n"), err
    code, stdout, err = cli("memory", out, "add", str(picture(tmp_path / "pip.png")), "--character", " pip ")
    assert code == 0, err
    code, stdout, err = cli("memory", out)
    lines = stdout.splitlines()
    assert code == 0 and lines[-1] == f"contact sheet: {out / 'memory-sheet.png'}"
    rows = {line.split()[0]: line for line in lines[:-1]}
    assert rows[first].split()[1] == "sink" and rows[first].endswith("pinned")
    assert "pip" in rows[first] and rows["added_00"].split()[1] == "added"
    assert len(rows) == len(state["memory"]["sink_keyframes"]) + len(state["memory"]["window_keyframes"]) + 1
    sheet = PIL.Image.open(out / "memory-sheet.png")
    assert sheet.width > 96 and sheet.height > 96


def test_a_steered_run_killed_and_resumed_equals_one_never_killed(tiny_pipe, tmp_path):
    """The acceptance case with a real SIGKILL: steered after two shots, then resumed by the CLI
    and killed inside shot 4, then resumed again; equal to the same steered run never killed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    settings = dict(SETTINGS, steps=30)  # shots long enough for the kill to land inside one
    file = tmp_path / "story.json"
    file.write_text(json.dumps(STORY))
    image = picture(tmp_path / "bo.png")
    for name in ("whole", "killed"):
        with pytest.raises(KeyboardInterrupt):
            run_story(
                tiny_pipe, parse_story(STORY), tmp_path / name, callback_on_step_end=StopAtShot(3, 30), **settings
            )
        steer_by_hand(tmp_path / name, image)
    run_story(tiny_pipe, parse_story(STORY), tmp_path / "whole", resume=True, **settings)

    out = tmp_path / "killed"
    options = ["--model", "tiny", "--steps", "30", "--seed", "5", "--max-memory", "3", "--sink", "1"]
    args = ["generate", file, "--out", out, *options, "--memory-policy", "entity", "--resume"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "storymem.cli", *map(str, args)],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and len(json.loads((out / "state.json").read_text())["completed"]) < 3:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(json.loads((out / "state.json").read_text())["completed"]) == 3, "the kill should land in shot 4"
    run_story(tiny_pipe, parse_story(STORY), out, resume=True, **settings)

    whole, killed = (json.loads((tmp_path / n / "state.json").read_text()) for n in ("whole", "killed"))
    assert without_timings(whole["shots"]) == without_timings(killed["shots"])
    assert (whole["memory"], whole["edits"]) == (killed["memory"], killed["edits"])
    assert np.array_equal(read_video(tmp_path / "whole" / "story.mp4"), read_video(out / "story.mp4"))
    assert Run(out).memory.replay() == {s: r["memory"] for s, r in killed["shots"].items()}
