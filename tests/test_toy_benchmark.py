"""benchmarks/toy_benchmark.py: its story sets are the CLI's toy stories, and bad sets are refused.
(The benchmark itself is minutes of generation; its figures are in the README.)"""

import importlib.util
import json
import subprocess
import sys

from conftest import REPO

SCRIPT = REPO / "benchmarks" / "toy_benchmark.py"


def load_script():
    spec = importlib.util.spec_from_file_location("toy_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_story_sets_are_the_toy_stories_command_writes(tmp_path, cli):
    bench = load_script()
    single = bench.write_story_set(tmp_path / "single", "single", 3, characters=2)  # single ignores characters
    multi = bench.write_story_set(tmp_path / "multi", "multi", 3, characters=2)
    assert cli("toy-stories", "--out", tmp_path / "cli-single", "--count", 3)[0] == 0
    assert cli("toy-stories", "--out", tmp_path / "cli-multi", "--count", 3, "--shots", 8, "--characters", 2)[0] == 0
    for ours, theirs in ((single, tmp_path / "cli-single"), (multi, tmp_path / "cli-multi")):
        files = sorted(p.name for p in ours.iterdir())
        assert len(files) == 3 and files == sorted(p.name for p in theirs.iterdir())
        assert all((ours / f).read_text() == (theirs / f).read_text() for f in files)
    story = json.loads(next(multi.iterdir()).read_text())
    assert len(story["characters"]) == 2 and sum(len(s["video_prompts"]) for s in story["scenes"]) == 8
    story = json.loads(next(single.iterdir()).read_text())
    assert "characters" not in story and sum(len(s["video_prompts"]) for s in story["scenes"]) == 6


def test_an_unknown_set_is_refused_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--sets", "single,pairs"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "--sets: expected single, multi or single,multi, got 'single,pairs'" in result.stderr
    assert not (tmp_path / "summary.json").exists()
