"""benchmarks/toy_benchmark.py: its story sets are the CLI's toy stories, and bad sets are refused.
(The benchmark itself is minutes of generation; its figures are in the README.)"""

import importlib.util
import json
import subprocess
import sys

from conftest import REPO
from storymem.toyworld import make_story

SCRIPT = REPO / "benchmarks" / "toy_benchmark.py"


def load_script():
    spec = importlib.util.spec_from_file_location("toy_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_story_sets_are_the_toy_stories_command_writes(tmp_path):
    bench = load_script()
    single = bench.write_stories(tmp_path / "single", 3, characters=1)
    multi = bench.write_stories(tmp_path / "multi", 3, characters=2)
    for i in range(3):
        story, _ = make_story(i)
        assert json.loads((single / f"{story['story_name']}.json").read_text()) == story
        story, _ = make_story(i, num_shots=8, characters=2)
        assert len(story["characters"]) == 2 and sum(len(s["video_prompts"]) for s in story["scenes"]) == 8
        assert json.loads((multi / f"{story['story_name']}.json").read_text()) == story
    assert len(list(multi.iterdir())) == 3


def test_an_unknown_set_is_refused_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--sets", "single,pairs"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "--sets: expected single, multi or single,multi, got 'single,pairs'" in result.stderr
    assert not (tmp_path / "summary.json").exists()
