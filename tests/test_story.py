import json
import subprocess
import sys

import pytest

from storymem import StoryError, load_story, parse_story


def test_all_stbench_scripts_load_with_the_published_counts(stbench_files):
    stories = [load_story(f) for f in stbench_files]
    shots = [shot for story in stories for shot in story.shots]
    assert sum(len(s.scenes) for s in stories) == 95
    assert len(shots) == 300
    assert sum(shot.cut for shot in shots) == 176
    assert all(7 <= len(s.shots) <= 12 for s in stories)
    assert all(story.shots[0].cut for story in stories)


def test_shots_are_flat_in_order_with_stable_names():
    story = parse_story(
        {
            "scenes": [
                {"scene_num": 1, "video_prompts": ["a", "b"], "cut": [True, False]},
                {"scene_num": 2, "video_prompts": ["c"], "cut": [True]},
            ]
        }
    )
    assert [(s.name, s.global_index, s.cut, s.prompt) for s in story.shots] == [
        ("01_01", 0, True, "a"),
        ("01_02", 1, False, "b"),
        ("02_01", 2, True, "c"),
    ]


@pytest.mark.parametrize("value,expected", [("true", True), ("False", False), ("TRUE", True), (" false ", False)])
def test_cut_strings_are_read_as_booleans(value, expected):
    story = parse_story({"scenes": [{"scene_num": 1, "video_prompts": ["a", "b"], "cut": [True, value]}]})
    assert story.scenes[0].cut[1] is expected


def scene(**over):
    base = {"scene_num": 1, "video_prompts": ["a", "b"], "first_frame_prompt": ["x", "y"], "cut": [True, False]}
    base.update(over)
    return base


BAD = [
    ({"scenes": [scene(cut=[True, "yes"])]}, "scenes[0].cut[1]", 'must be true or false, got "yes"'),
    ({"scenes": [scene(cut=[True, 1])]}, "scenes[0].cut[1]", "must be true or false, got 1"),
    ({"scenes": [scene(cut=[True, None])]}, "scenes[0].cut[1]", "must be true or false, got null"),
    ({"scenes": [scene(cut=[False, True])]}, "scenes[0].cut[0]", "the first shot of a story must be a cut"),
    ({"scenes": [scene(cut=[True])]}, "scenes[0].cut", "has 1 entries but video_prompts has 2"),
    (
        {"scenes": [scene(first_frame_prompt=["x"])]},
        "scenes[0].first_frame_prompt",
        "has 1 entries but video_prompts has 2",
    ),
    ({"scenes": [scene(video_prompts=["a", "  "])]}, "scenes[0].video_prompts[1]", "must not be empty"),
    (
        {"scenes": [scene(video_prompts=[], cut=[], first_frame_prompt=[])]},
        "scenes[0].video_prompts",
        "must not be empty",
    ),
    ({"scenes": [scene(scene_num=0)]}, "scenes[0].scene_num", "must be a positive integer, got 0"),
    ({"scenes": [scene(scene_num="1")]}, "scenes[0].scene_num", "must be an integer"),
    ({"scenes": [scene(scene_num=1.5)]}, "scenes[0].scene_num", "must be an integer"),
    ({"scenes": [scene(), scene()]}, "scenes[1].scene_num", "1 is already used by scenes[0]"),
    ({"scenes": [scene(video_prompts=["a", 3])]}, "scenes[0].video_prompts[1]", "must be a string"),
    ({"scenes": []}, "scenes", "must not be empty"),
    ({"scenes": "x"}, "scenes", "must be a list"),
    ({"story_name": "x"}, "scenes", "is required"),
    ({"scenes": [scene(cuts=[True, True])]}, "scenes[0].cuts", "unknown field (allowed: scene_num, video_prompts"),
    ({"scenes": [scene(cut=True)]}, "scenes[0].cut", "must be a list"),
]


@pytest.mark.parametrize("data,where,problem", BAD)
def test_bad_scripts_name_the_field_and_the_problem(data, where, problem):
    with pytest.raises(StoryError) as info:
        parse_story(data, file="s.json")
    assert info.value.where == where
    assert info.value.problem.startswith(problem)
    assert str(info.value).startswith(f"s.json: {where}: {problem}")


def test_file_problems(tmp_path):
    cases = {
        "missing.json": (None, "file not found"),
        "latin1.json": ('{"scenes": "caf\xe9"}'.encode("latin-1"), "not UTF-8 text"),
        "broken.json": (b'{"scenes": [', "not valid JSON"),
        "list.json": (b"[1, 2]", "the top level must be a JSON object"),
    }
    for name, (content, problem) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(StoryError, match=problem):
            load_story(path)


def test_references_resolve_relative_to_the_script(tmp_path):
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "hero.png").write_bytes(b"png")
    data = {"scenes": [scene()], "references": ["refs/hero.png"]}
    (tmp_path / "s.json").write_text(json.dumps(data))
    story = load_story(tmp_path / "s.json")
    assert story.references == [str((tmp_path / "refs" / "hero.png").resolve())]
    data["references"] = ["refs/villain.png"]
    (tmp_path / "s.json").write_text(json.dumps(data))
    with pytest.raises(StoryError, match=r"references\[0\]: image not found"):
        load_story(tmp_path / "s.json")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "storymem.cli", *args], capture_output=True, text=True)


def test_cli_validate_prints_a_summary_and_json(stbench_files, tmp_path):
    raw = json.loads(stbench_files[0].read_text())
    cuts = [c for s in raw["scenes"] for c in s["cut"]]
    result = run_cli("validate", str(stbench_files[0]))
    assert result.returncode == 0, result.stderr
    expected = (
        f"{len(raw['scenes'])} scenes, {len(cuts)} shots, {sum(cuts)} cuts, {len(cuts) - sum(cuts)} continuations"
    )
    assert result.stdout == f"{stbench_files[0]}: ok: {raw['story_name']}: {expected}\n"

    good = tmp_path / "good.json"
    good.write_text(json.dumps({"scenes": [scene(cut=["True", "false"])]}))
    result = run_cli("validate", "--json", str(good))
    assert json.loads(result.stdout)["scenes"][0]["cut"] == [True, False]

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"scenes": [scene(cut=["True", "no"])]}))
    result = run_cli("validate", str(good), str(bad))
    assert result.returncode == 1
    assert result.stdout.startswith(f"{good}: ok:")
    assert result.stderr == f'error: {bad}: scenes[0].cut[1]: must be true or false, got "no"\n'


@pytest.mark.parametrize(
    "content,message",
    [
        (
            b'{"scenes": [{"scene_num": 1, "video_prompts": ["a"], "cut": ["no"]}]}',
            'scenes[0].cut[0]: must be true or false, got "no"',
        ),
        (b"\xff\xfe", "not UTF-8 text"),
        (b"{", "line 1 column 2: not valid JSON"),
        (None, "file not found"),
    ],
)
def test_cli_bad_input_is_one_line_and_nonzero(tmp_path, content, message):
    path = tmp_path / "story.json"
    if content is not None:
        path.write_bytes(content)
    result = run_cli("validate", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {path}: {message}")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_shipped_example_is_valid():
    from conftest import REPO

    story = load_story(REPO / "examples" / "fox.json")
    assert [s.cut for s in story.shots] == [True, False, True, True, False]
