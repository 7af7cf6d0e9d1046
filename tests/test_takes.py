"""Reshoot one shot of a run: the memory it had, its own seed, every take kept; later shots kept
(stale) or made again."""

import hashlib
import json

import numpy as np
import pytest

import storymem.runner
from conftest import run_story
from storymem import Run
from storymem.app.views import run_view
from storymem.errors import InputError
from storymem.files import FolderLock
from storymem.runner import reshoot
from storymem.story import parse_story
from storymem.video import read_video

STORY = {
    "characters": ["Pip"],
    "scenes": [
        {"scene_num": 1, "video_prompts": ["Pip walks.", "Pip jumps."], "cut": [True, False]},
        {"scene_num": 2, "video_prompts": ["Pip rests.", "Pip walks home."], "cut": [True, True]},
    ],
}
SETTINGS = dict(max_memory=3, sink=1, steps=2, seed=4)


def state_of(out):
    return json.loads((out / "state.json").read_text())


def contents(folder):
    """Content hash -> path of every file a reshoot must not lose (the joined story, the
    storyboard and the run's own records are made again)."""
    made_again = {"story.mp4", "storyboard.png", "state.json", "story.json", ".storymem.lock"}
    return {
        hashlib.sha256(p.read_bytes()).hexdigest(): p.relative_to(folder)
        for p in folder.rglob("*")
        if p.is_file() and p.name not in made_again
    }


@pytest.fixture
def made(tiny_pipe, tmp_path):
    out = tmp_path / "run"
    run_story(tiny_pipe, parse_story(STORY), out, **SETTINGS)
    return out


def test_the_recorded_seed_gives_the_same_take_and_a_new_one_another(tiny_pipe, made):
    before = contents(made)
    original = read_video(made / "story.mp4")
    seed = state_of(made)["shots"]["02_01"]["seed"]
    _, take = reshoot(tiny_pipe, made, "02_01", seed=seed, progress=False)
    state = state_of(made)
    assert take == 2 and state["shots"]["02_01"]["take"] == 2
    assert np.array_equal(read_video(made / "takes/02_01.take1.mp4"), read_video(made / "takes/02_01.take2.mp4"))
    assert state["stale"] == ["02_02"]  # made after take 1: kept as it was, marked
    assert np.array_equal(read_video(made / "story.mp4"), original)
    _, take = reshoot(tiny_pipe, made, "02_01", seed=seed + 1, progress=False)
    assert take == 3 and not np.array_equal(
        read_video(made / "shots/02_01.mp4"), read_video(made / "takes/02_01.take1.mp4")
    )
    assert state_of(made)["shots"]["02_01"]["memory"] == state["shots"]["02_01"]["memory"]  # the memory it had
    assert set(before) <= set(contents(made))  # nothing lost: every file, or its copy in takes/
    # take 1 back in use: the later shot is current again, the story as it was
    Run(made).use_take("02_01", 1)
    state = state_of(made)
    assert state["stale"] == [] and state["shots"]["02_01"]["take"] == 1
    assert np.array_equal(read_video(made / "story.mp4"), original)
    assert [t["in_use"] for t in Run(made).takes("02_01")] == [True, False, False]


def test_redo_equals_a_fresh_run_whose_shot_uses_the_new_take(tiny_pipe, made, tmp_path, monkeypatch):
    before = contents(made)
    reshoot(tiny_pipe, made, "01_02", seed=99, then="redo", progress=False)
    state = state_of(made)
    assert state["stale"] == [] and state["completed"] == ["01_01", "01_02", "02_01", "02_02"]
    assert [len(state["takes"][n]) for n in ("01_02", "02_01", "02_02")] == [2, 2, 2]  # the old ones kept
    assert set(before) <= set(contents(made))
    # a fresh run whose shot 01_02 has seed 99
    seeds = storymem.runner.shot_seed
    monkeypatch.setattr(storymem.runner, "shot_seed", lambda run_seed, i: 99 if i == 1 else seeds(run_seed, i))
    fresh = run_story(tiny_pipe, parse_story(STORY), tmp_path / "fresh", **SETTINGS)
    assert np.array_equal(read_video(made / "story.mp4"), read_video(fresh.video))
    # and the redone shots' memory is the fresh run's, file for file but for the take's names
    fresh_state = state_of(tmp_path / "fresh")
    for name in ("02_01", "02_02"):
        assert [f.replace(".take2", "") for f in state["shots"][name]["memory"]] == fresh_state["shots"][name]["memory"]


def test_a_new_prompt_goes_into_the_story_and_back_with_its_take(tiny_pipe, made, cli):
    code, stdout, err = cli("reshoot", made, "3", "--model", "tiny", "--prompt", "Pip sleeps.", "--seed", "7")
    assert code == 0, err
    assert stdout == f"shot 02_01: take 2 (seed 7) in use; the others are in {made / 'takes'}; stale: 02_02\n"
    story = json.loads((made / "story.json").read_text())
    assert story["scenes"][1]["video_prompts"][0] == "Pip sleeps."
    # eval and the app's Runs tab say which take each shot uses and which are stale
    code, stdout, err = cli("eval", made)
    assert code == 0 and stdout.splitlines()[-1] == "takes in use: 02_01 take 2; stale: 02_02", err
    captions = [caption for _, caption in run_view(made)["shots"]]
    assert captions[2:] == ["02_01 · M2V · take 2", "02_02 · M2V · stale"]
    code, stdout, err = cli("takes", made, "02_01", "--use", "1")
    assert code == 0, err
    assert stdout.splitlines()[0].startswith("* take 1") and stdout.splitlines()[1].endswith("Pip sleeps.")
    assert json.loads((made / "story.json").read_text())["scenes"][1]["video_prompts"][0] == "Pip rests."
    # the run resumes with its own story: nothing left to make
    assert Run(made).state()["finished"]


def test_bad_reshoots_are_one_line_and_change_nothing(tiny_pipe, made, cli, tmp_path):
    before = (made / "state.json").read_bytes()
    with pytest.raises(InputError, match=r"no shot '03_01' in this run; its shots are 01_01 to 02_02"):
        reshoot(tiny_pipe, made, "03_01", progress=False)
    with pytest.raises(InputError, match="--then must be keep or redo, got 'later'"):
        reshoot(tiny_pipe, made, "01_01", then="later", progress=False)
    with FolderLock(made), pytest.raises(InputError, match="another storymem process"):
        reshoot(tiny_pipe, made, "01_01", progress=False)
    assert cli("takes", made, "01_01", "--use", "1")[0] == 0  # its only take: already in use
    code, _, err = cli("takes", made, "01_01", "--use", "2")
    assert (code, err) == (1, f"error: {made}: shot 01_01 has one take; there is no take 2\n")
    code, _, err = cli("reshoot", tmp_path, "1", "--model", "tiny")
    assert (code, err) == (1, f"error: {tmp_path}: not a storymem run folder (no state.json)\n")
    assert (made / "state.json").read_bytes() == before and not (made / "takes").exists()


def test_a_stopped_run_stays_stopped_after_a_reshoot_that_keeps(tiny_pipe, tmp_path):
    from test_cast import StopAtShot

    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        run_story(tiny_pipe, parse_story(STORY), out, callback_on_step_end=StopAtShot(3, 2), **SETTINGS)
    result, take = reshoot(tiny_pipe, out, "01_01", seed=1, progress=False)
    state = state_of(out)
    assert (take, result.generated) == (2, 1)
    assert state["completed"] == ["01_01", "01_02"] and not state["finished"] and state["stale"] == ["01_02"]
    with pytest.raises(InputError, match="shot 02_01 has not been made yet; continue the run with --resume first"):
        reshoot(tiny_pipe, out, "02_01", progress=False)


def test_a_reshoot_stopped_midway_loses_nothing(tiny_pipe, made):
    """A reshoot killed after saving take 1 and writing the new video into shots/, before
    state.json recorded anything: the next reshoot puts take 1 back first, so it is never lost."""
    from storymem.rundir import RunDirectory
    from storymem.takes import keep_first_take

    original = read_video(made / "shots/02_01.mp4")
    keep_first_take(RunDirectory(made), state_of(made), "02_01", "Pip rests.")  # saved, not recorded
    (made / "shots/02_01.mp4").write_bytes((made / "shots/01_01.mp4").read_bytes())  # the new video, half-done
    reshoot(tiny_pipe, made, "02_01", seed=3, progress=False)
    assert np.array_equal(read_video(made / "takes/02_01.take1.mp4"), original)
    Run(made).use_take("02_01", 1)
    assert np.array_equal(read_video(made / "shots/02_01.mp4"), original)
