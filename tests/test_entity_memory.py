"""Entity-aware memory (`--memory-policy entity`): keyframes tagged by the characters their shot
names; a shot is conditioned on the sink plus its characters' most recent keyframes."""

import json

import pytest
import torch

from conftest import run_story
from storymem.errors import InputError, StoryError
from storymem.memory import Keyframe, MemoryBank
from storymem.memory.entity import entity_memory, named_characters
from storymem.story import parse_story
from storymem.toyworld import make_story, parse_caption


def k(shot, frame=0):
    return Keyframe(f"memory/{shot}_f{frame:03d}.png", shot, frame)


def test_names_are_whole_words_in_any_case():
    names = ["Pip", "Bo", "Ada Lee"]
    assert named_characters("pip and BO meet.", names) == {"pip", "bo"}
    assert named_characters("Pipo bows to Bob.", names) == frozenset()
    assert named_characters("Ada Lee waves; Pip's hat.", names) == {"ada lee", "pip"}


def test_a_shot_gets_its_characters_keyframes_sink_first_then_latest():
    bank = MemoryBank(max_memory=4, sink=2)
    shots = ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"]
    tags = {"s1": {"a"}, "s2": {"b"}, "s3": {"a"}, "s4": {"b"}, "s5": {"a", "b"}, "s6": {"b"}, "s7": {"b"}, "s8": set()}
    tags = {s: frozenset(t) for s, t in tags.items()}
    bank.extend(k(s) for s in shots[:7])
    assert bank.keyframes == [k("s1"), k("s2"), k("s6"), k("s7")]  # official: sink + window
    # "a": its sink keyframe s1, then its others (s3, s5), even s3, which the window has dropped
    assert entity_memory(bank, frozenset({"a"}), tags) == [k("s1"), k("s3"), k("s5")]
    # "b": its sink keyframe s2, then the 3 most recent of s4, s5, s6, s7
    assert entity_memory(bank, frozenset({"b"}), tags) == [k("s2"), k("s5"), k("s6"), k("s7")]
    # nobody named: the official memory; a character with no keyframes yet: nothing of the others
    assert entity_memory(bank, frozenset(), tags) == bank.keyframes
    assert entity_memory(bank, frozenset({"c"}), tags) == []
    # a sink keyframe of a shot that names nobody (the world, a reference) stays for everyone
    world = MemoryBank(max_memory=3, sink=2)
    world.extend([k("s8"), k("s1"), k("s3"), k("s2")])
    assert entity_memory(world, frozenset({"b"}), tags) == [k("s8"), k("s2")]
    assert entity_memory(world, frozenset({"a"}), tags) == [k("s8"), k("s1"), k("s3")]


def test_the_archive_survives_a_resume_and_old_states_still_load():
    bank = MemoryBank(max_memory=2, sink=1)
    bank.extend(k(s) for s in ("s1", "s2", "s3", "s4"))
    again = MemoryBank.from_state(json.loads(json.dumps(bank.state())))
    assert again.archive == bank.archive == [k("s1"), k("s2"), k("s3"), k("s4")]
    old = {key: v for key, v in bank.state().items() if key != "archive_keyframes"}
    assert MemoryBank.from_state(old).archive == [k("s1"), k("s4")]


def test_story_characters_are_checked():
    base = {"scenes": [{"scene_num": 1, "video_prompts": ["Pip walks."], "cut": [True]}]}
    assert parse_story({**base, "characters": ["Pip", "Bo"]}).characters == ["Pip", "Bo"]
    with pytest.raises(StoryError, match=r"characters\[1\]: 'pip' is listed twice"):
        parse_story({**base, "characters": ["Pip", "pip"]})
    with pytest.raises(StoryError, match=r"characters\[0\]: must not be empty"):
        parse_story({**base, "characters": [" "]})


STORY = {
    "characters": ["Pip", "Bo"],
    "scenes": [
        {
            "scene_num": 1,
            "video_prompts": [
                "Pip walks in the forest.",
                "Bo jumps in the sea.",
                "Pip rests.",
                "Bo walks.",
                "Bo rests.",
            ],
            "cut": [True, True, True, True, True],
        }
    ],
}


def test_runs_condition_each_shot_on_its_characters(tiny_pipe, tmp_path):
    pipe = tiny_pipe
    settings = dict(max_memory=3, sink=1, steps=2)
    run = run_story(pipe, parse_story(STORY), tmp_path / "entity", progress=False, memory_policy="entity", **settings)
    state = json.loads((run.run_dir / "state.json").read_text())
    assert state["settings"]["memory_policy"] == "entity"
    tag = {"01_01": "pip", "01_02": "bo", "01_03": "pip", "01_04": "bo", "01_05": "bo"}
    for shot in ("01_02", "01_03", "01_04", "01_05"):
        memory = state["shots"][shot]["memory"]
        others = [f for f in memory if tag[f.split("/")[1][:5]] != tag[shot]]
        assert others == [], f"{shot} ({tag[shot]}) was given another character's keyframes: {others}"
    assert state["shots"]["01_03"]["memory"] == state["shots"]["01_01"]["keyframes"]  # Pip's own
    official = run_story(pipe, parse_story(STORY), tmp_path / "official", progress=False, **settings)
    official_state = json.loads((official.run_dir / "state.json").read_text())
    # the official memory hands Bo's shots Pip's keyframes
    pip = official_state["shots"]["01_01"]["keyframes"]
    assert pip and set(pip) <= set(official_state["shots"]["01_04"]["memory"])


def test_entity_policy_needs_characters_and_a_known_name(tiny_pipe, tmp_path):
    pipe = tiny_pipe
    story = {key: v for key, v in STORY.items() if key != "characters"}
    with pytest.raises(InputError, match="the entity memory policy needs the story's characters"):
        run_story(pipe, parse_story(story), tmp_path / "a", progress=False, memory_policy="entity")
    with pytest.raises(InputError, match="memory policy must be one of official, entity, got 'nearest'"):
        run_story(pipe, parse_story(STORY), tmp_path / "b", progress=False, memory_policy="nearest")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_toy_stories_with_several_characters(cli, tmp_path):
    code, out, err = cli("toy-stories", "--out", tmp_path, "--count", "3", "--shots", "8", "--characters", "3")
    assert code == 0, err
    for file in sorted(tmp_path.glob("*.json")):
        story = parse_story(json.loads(file.read_text()))
        shots = [parse_caption(s.prompt) for s in story.shots]
        assert len(story.characters) == 3 and [s.name for s in shots[:3]] == story.characters
        assert len({s.look.colour for s in shots[:3]}) == 3  # told apart by colour at least
        assert all(s.look is None and s.name in story.characters for s in shots[3:])
        for before, shot, after in zip(story.shots, story.shots[1:], shots[1:], strict=False):
            if not shot.cut:  # a continuation keeps its character and place
                assert parse_caption(before.prompt).name == after.name
    # one character: the single-character stories of the toy benchmark, unchanged
    assert "characters" not in make_story(5)[0]
    code, _, err = cli("toy-stories", "--out", tmp_path, "--characters", "7")
    assert (code, err) == (1, "error: --characters must be 1 to 6, with more --shots than characters\n")


class SameForEveryImage:
    """A keyframe embedder that sees every image as the same: each new frame duplicates memory."""

    def embed(self, images):
        return torch.nn.functional.normalize(torch.ones(len(images), 8), dim=-1)


def test_a_character_looking_like_another_still_gets_its_own_keyframes(tiny_pipe, tmp_path, monkeypatch):
    """New keyframes are compared with the memory that conditioned the shot. Officially that is
    the whole bank, so a frame like any earlier one is dropped; under the entity policy only the
    shot's own characters' keyframes count, so Bo's first shot adds Bo's keyframe."""
    import storymem.runner

    monkeypatch.setattr(storymem.runner, "load_keyframe_embedder", lambda name, device: SameForEveryImage())
    settings = dict(max_memory=3, sink=1, steps=2)
    states = {}
    for policy in ("official", "entity"):
        run = run_story(
            tiny_pipe, parse_story(STORY), tmp_path / policy, progress=False, memory_policy=policy, **settings
        )
        states[policy] = json.loads((run.run_dir / "state.json").read_text())["shots"]
    official, entity = states["official"], states["entity"]
    assert official["01_01"]["keyframes"] and all(not official[s]["keyframes"] for s in ("01_02", "01_03", "01_04"))
    assert official["01_04"]["memory"] == official["01_01"]["keyframes"]  # Bo drawn from Pip
    bo = entity["01_02"]["keyframes"]
    assert bo and entity["01_02"]["memory"] == []
    assert entity["01_04"]["memory"] == bo and entity["01_03"]["memory"] == entity["01_01"]["keyframes"]
    assert not entity["01_03"]["keyframes"] and not entity["01_04"]["keyframes"]  # duplicates of their own
