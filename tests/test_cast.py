"""A cast: characters with their own reference images. Under the entity memory policy a shot gets
the references of the characters it names, and only theirs; the official policy takes them as
global references. Every image is checked before a run starts and copied into the run folder."""

import json

import numpy as np
import PIL.Image
import pytest

from conftest import run_story
from storymem.errors import InputError, StoryError
from storymem.story import load_story, parse_story
from storymem.video import read_video

SETTINGS = dict(max_memory=3, sink=1, steps=2)
PIP = ["memory/cast_00_00.png", "memory/cast_00_01.png"]
BO = ["memory/cast_01_00.png"]


def write_cast_story(
    folder, prompts=("Pip walks in the forest.", "Bo jumps in the sea.", "Pip rests.", "Pip and Bo meet.")
):
    """A story file whose Pip has two reference images and Bo one (paths relative to the file)."""
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    for name, grey in (("pip-front", 60), ("pip-side", 90), ("bo", 200)):
        PIL.Image.fromarray(np.full((40, 24, 3), grey, np.uint8)).save(folder / "refs" / f"{name}.png")
    story = {
        "story_name": "cast",
        "characters": [
            {"name": "Pip", "look": "a grey square", "references": ["refs/pip-front.png", "refs/pip-side.png"]},
            {"name": "Bo", "references": ["refs/bo.png"]},
            "Ada",  # a plain name stays valid
        ],
        "scenes": [{"scene_num": 1, "video_prompts": list(prompts), "cut": [True] * len(prompts)}],
    }
    file = folder / "story.json"
    file.write_text(json.dumps(story))
    return file


def shots_of(run_dir):
    return json.loads((run_dir / "state.json").read_text())


def test_a_cast_is_parsed_resolved_against_the_file_and_checked(tmp_path):
    file = write_cast_story(tmp_path)
    story = load_story(file)
    assert story.cast == {
        "pip": [str(tmp_path / "refs/pip-front.png"), str(tmp_path / "refs/pip-side.png")],
        "bo": [str(tmp_path / "refs/bo.png")],
    }
    assert story.character_names == ["Pip", "Bo", "Ada"]
    assert story.summary().endswith("3 character references (2 characters)")
    (tmp_path / "refs/pip-side.png").unlink()
    with pytest.raises(StoryError) as error:
        load_story(file)
    assert str(error.value) == (
        f"{file}: characters[0].references[1]: image not found: {tmp_path / 'refs/pip-side.png'}"
    )
    assert load_story(file, check_images=False).cast["pip"][1] == str(tmp_path / "refs/pip-side.png")
    base = {"scenes": [{"scene_num": 1, "video_prompts": ["Pip walks."], "cut": [True]}]}
    with pytest.raises(StoryError, match=r'characters\[0\]: must be a name or an object .*"references": \[\.\.\.\]'):
        parse_story({**base, "characters": [3]})
    with pytest.raises(StoryError, match=r"characters\[0\]\.references\[0\]: must be a string"):
        parse_story({**base, "characters": [{"name": "Pip", "references": [1]}]})


def test_under_entity_memory_a_shot_gets_only_its_characters_references(tiny_pipe, tmp_path):
    story = load_story(write_cast_story(tmp_path / "story"))
    run = run_story(tiny_pipe, story, tmp_path / "run", memory_policy="entity", **SETTINGS)
    state = shots_of(run.run_dir)
    assert state["cast"] == {"pip": PIP, "bo": BO}
    assert all((run.run_dir / f).is_file() for f in PIP + BO)
    shots = state["shots"]
    # a character's first shot is M2V from its own pictures, not T2V
    assert (shots["01_01"]["mode"], shots["01_01"]["memory"]) == ("m2v", PIP)
    assert (shots["01_02"]["mode"], shots["01_02"]["memory"]) == ("m2v", BO)  # none of Pip's
    # Pip again: its pictures, then its own keyframes within what is left of max_memory 3
    pip_keyframes = shots["01_01"]["keyframes"]
    assert pip_keyframes and shots["01_03"]["memory"] == PIP + pip_keyframes[:1]  # the sink first
    assert shots["01_04"]["memory"] == PIP + BO  # both named: both casts fill the memory
    # the references are never in the bank: no window can displace them
    assert not any(k["shot"] == "ref" for k in state["memory"]["archive_keyframes"])


def test_the_official_policy_takes_a_cast_as_global_references(tiny_pipe, tmp_path):
    story = load_story(write_cast_story(tmp_path / "story"))
    run = run_story(tiny_pipe, story, tmp_path / "run", **SETTINGS)
    state = shots_of(run.run_dir)
    assert state["cast"] == {}
    assert (state["shots"]["01_01"]["mode"], state["shots"]["01_01"]["memory"]) == ("m2v", PIP + BO)
    assert [k["file"] for k in state["memory"]["archive_keyframes"][:3]] == PIP + BO


def test_too_many_references_are_refused_before_the_run_folder_exists(tiny_pipe, tmp_path):
    story = load_story(write_cast_story(tmp_path / "story"))
    with pytest.raises(InputError) as error:
        run_story(tiny_pipe, story, tmp_path / "official", max_memory=2, sink=1, steps=2)
    assert str(error.value) == (
        "the story's 3 reference images (its own and its characters') exceed max_memory 2; give fewer, or use "
        "--memory-policy entity (each shot then gets only its characters' references)"
    )
    with pytest.raises(InputError) as error:
        run_story(tiny_pipe, story, tmp_path / "entity", memory_policy="entity", max_memory=2, sink=1, steps=2)
    assert str(error.value) == (
        "shot 01_04 names characters with 3 reference images in all, more than max_memory 2; give them fewer, "
        "or raise --max-memory"
    )
    assert not (tmp_path / "official").exists() and not (tmp_path / "entity").exists()
    # a damaged picture is one line too, before the run
    (tmp_path / "story/refs/bo.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="bo.png"):
        run_story(tiny_pipe, story, tmp_path / "damaged", memory_policy="entity", **SETTINGS)
    assert not (tmp_path / "damaged").exists()


class StopAtShot:
    """A step callback that interrupts the run during shot `shot` (1-based)."""

    def __init__(self, shot, steps):
        self.calls, self.limit = 0, (shot - 1) * steps + 1

    def __call__(self, pipe, step, timestep, kwargs):
        self.calls += 1
        if self.calls == self.limit:
            raise KeyboardInterrupt
        return kwargs


def test_a_resume_uses_the_run_folders_copies_of_the_references(tiny_pipe, tmp_path, cli):
    file = write_cast_story(tmp_path / "story")
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_story(
            tiny_pipe, load_story(file), out, memory_policy="entity", seed=3,
            callback_on_step_end=StopAtShot(3, SETTINGS["steps"]), **SETTINGS,
        )  # fmt: skip
    assert shots_of(out)["completed"] == ["01_01", "01_02"]
    whole = run_story(tiny_pipe, load_story(file), tmp_path / "whole", memory_policy="entity", seed=3, **SETTINGS)
    for image in (tmp_path / "story/refs").iterdir():
        image.unlink()  # the originals are gone
    options = ("--model", "tiny", "--memory-policy", "entity", "--seed", "3", "--max-memory", "3", "--sink", "1")
    code, stdout, stderr = cli("generate", file, "--out", out, "--steps", "2", *options, "--resume")
    assert code == 0, stderr
    assert stdout.startswith("4 shots (2 generated)")
    assert np.array_equal(read_video(out / "story.mp4"), read_video(whole.video))
    # a new run without the originals is refused in one line, naming the picture
    code, _, stderr = cli("generate", file, "--out", tmp_path / "new", "--steps", "2", *options)
    assert code == 1 and "characters[0].references[0]: image not found" in stderr


def test_toy_cast_stories_name_their_characters_and_draw_them_in_pictures(cli, tmp_path):
    from storymem.toyworld import identity_metrics, make_story, parse_caption, render_clip, video_look
    from storymem.toyworld.stories import parse_look, reference_place

    code, out, err = cli("toy-stories", "--out", tmp_path, "--count", "2", "--characters", "2", "--references")
    assert code == 0, err
    assert out.strip().endswith("--memory-policy entity")
    for seed in range(2):
        plain = [parse_caption(p) for p in make_story(seed, characters=2)[0]["scenes"][0]["video_prompts"]]
        data = make_story(seed, characters=2, references=True)[0]
        story = load_story(tmp_path / f"{data['story_name']}.json")
        shots = [parse_caption(s.prompt) for s in story.shots[: len(plain)]]
        # the same shots as the plain story, but no prompt gives a look: only the pictures do
        assert [(s.name, s.action, s.place, s.shot) for s in shots] == [
            (s.name, s.action, s.place, s.shot) for s in plain
        ]
        assert all(s.look is None for s in shots)
        for character in story.characters:
            look = parse_look(character.look)
            assert look == next(s.look for s in plain if s.name == character.name)  # its intro's look
            (picture,) = story.cast[character.name.lower()]
            assert video_look(np.asarray(PIL.Image.open(picture))[None], reference_place(seed)) == look
        # identity: every shot of a character counts, its first is the intro
        looks = {c.name: parse_look(c.look) for c in story.characters}
        shots = [parse_caption(s.prompt) for s in story.shots]
        videos = [render_clip(looks[s.name], s.place, s.action, s.shot) for s in shots]
        prompts = [s.prompt for s in story.shots]
        assert identity_metrics(prompts, videos) is None  # no look in any caption, none given
        metrics = identity_metrics(prompts, videos, looks)
        assert (metrics["identity"], metrics["identity_intro"]) == (1.0, 1.0)
        other = next(look for look in looks.values() if look != looks[shots[0].name])
        videos[0] = render_clip(other, shots[0].place, shots[0].action, shots[0].shot)
        metrics = identity_metrics(prompts, videos, looks)
        assert metrics["identity_intro"] == 0.5 and metrics["identity"] == pytest.approx(1 - 1 / len(shots))
