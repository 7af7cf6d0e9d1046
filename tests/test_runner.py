import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import PIL.Image
import pytest
import torch

from conftest import run_story
from storymem import InputError, StoryMemPipeline, parse_story
from storymem.runner import shot_seed
from storymem.video import load_image, read_video

STORY = {
    "story_name": "fox",
    "story_overview": "a fox's day",
    "scenes": [
        {"scene_num": 1, "video_prompts": ["a red fox walks", "the fox jumps"], "cut": [True, False]},
        {"scene_num": 2, "video_prompts": ["the fox sleeps", "the fox wakes"], "cut": [True, "false"]},
    ],
}


def write_story(tmp_path, data=STORY, name="story.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def cli(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "storymem.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def run_cli(*args):
    proc = cli(*args)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def test_generate_writes_every_file(tmp_path):
    story = write_story(
        tmp_path, {**STORY, "scenes": STORY["scenes"][:1] + [{"scene_num": 2, "video_prompts": ["x"], "cut": [True]}]}
    )
    out = tmp_path / "run"
    code, stdout, stderr = run_cli("generate", story, "--out", out, "--variant", "mm2v", "--model", "tiny")
    assert code == 0, stderr
    assert stdout.startswith("3 shots (3 generated) in ") and f"{out / 'story.mp4'}" in stdout
    state = json.loads((out / "state.json").read_text())
    assert state["completed"] == ["01_01", "01_02", "02_01"] and state["finished"]
    assert json.loads((out / "story.json").read_text())["scenes"][0]["cut"] == [True, False]
    shots = state["shots"]
    assert [shots[n]["mode"] for n in state["completed"]] == ["t2v", "mm2v", "m2v"]
    assert [shots[n]["frames"] for n in state["completed"]] == [13, 8, 13]
    assert all(shots[n]["generate_s"] > 0 and shots[n]["select_s"] >= 0 for n in shots)
    assert len({shots[n]["seed"] for n in shots}) == 3
    lengths = [len(read_video(out / "shots" / f"{n}.mp4")) for n in state["completed"]]
    assert lengths == [13, 8, 13]
    assert len(read_video(out / "story.mp4")) == sum(lengths)
    # the memory that conditioned shot 2 is the keyframes of shot 1, saved as PNGs
    assert shots["01_02"]["memory"] == shots["01_01"]["keyframes"] and shots["01_01"]["keyframes"]
    assert all((out / f).is_file() for f in shots["01_01"]["keyframes"])
    board = PIL.Image.open(out / "storyboard.png")
    assert board.height > 3 * 96 and board.width > 4 * 96


def test_non_empty_folder_is_refused(tmp_path):
    story = write_story(tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("precious")
    code, _, stderr = run_cli("generate", story, "--out", tmp_path / "busy", "--model", "tiny")
    assert code == 1
    assert (
        stderr
        == f"error: {tmp_path / 'busy'}: output folder is not empty; use --resume to continue it or --overwrite\n"
    )
    code, _, stderr = run_cli("generate", story, "--out", tmp_path / "busy", "--overwrite", "--model", "tiny")
    assert code == 1 and "not a storymem run folder (no state.json); refusing to overwrite it" in stderr
    assert (tmp_path / "busy" / "thesis.tex").read_text() == "precious"


def generate(pipe, story, out, **kw):
    return run_story(pipe, parse_story(story), out, **kw)


@pytest.fixture
def pipe():
    p = StoryMemPipeline.from_preset("tiny")
    p.set_progress_bar_config(disable=True)
    return p


def test_resume_with_other_settings_is_refused(pipe, tmp_path):
    generate(pipe, STORY, tmp_path / "run", seed=1)
    with pytest.raises(InputError, match=r"settings differ from the saved run \(seed: saved 1, now 2\)"):
        generate(pipe, STORY, tmp_path / "run", seed=2, resume=True)
    with pytest.raises(InputError, match="nothing to resume"):
        generate(pipe, STORY, tmp_path / "fresh", resume=True)
    result = generate(pipe, STORY, tmp_path / "run", seed=1, resume=True)
    assert result.generated == 0 and result.shots == 4


def test_no_memory_baseline_generates_every_shot_alone(pipe, tmp_path):
    generate(pipe, STORY, tmp_path / "run", method="independent")
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert [s["mode"] for s in state["shots"].values()] == ["t2v"] * 4
    assert all(s["memory"] == [] and s["keyframes"] == [] for s in state["shots"].values())


def test_chain_baseline_continues_every_shot_from_the_last_frame_without_memory(pipe, tmp_path):
    generate(pipe, STORY, tmp_path / "run", method="chain", variant="mm2v")
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    shots = [state["shots"][n] for n in state["completed"]]
    # cuts too: chain has no memory, so the last frame is all it can carry; always 1 frame (I2V)
    assert [s["mode"] for s in shots] == ["t2v", "mi2v", "mi2v", "mi2v"]
    assert [s["frames"] for s in shots] == [13, 12, 12, 12]
    assert all(s["memory"] == [] and s["keyframes"] == [] for s in shots)
    assert state["settings"]["method"] == "chain"
    with pytest.raises(InputError, match="method must be one of storymem, independent, chain, got 'loop'"):
        generate(pipe, STORY, tmp_path / "other", method="loop")


def test_references_are_the_initial_memory(pipe, tmp_path):
    ref = tmp_path / "hero.png"
    PIL.Image.fromarray(np.full((40, 24, 3), 180, np.uint8)).save(ref)
    generate(pipe, STORY, tmp_path / "run", references=[str(ref)], max_memory=4, sink=1)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    first = state["shots"]["01_01"]
    assert first["mode"] == "m2v" and first["memory"] == ["memory/ref_00.png"]
    assert state["memory"]["sink_keyframes"][0]["shot"] == "ref"
    with pytest.raises(InputError, match="cannot be used with the independent baseline"):
        generate(pipe, STORY, tmp_path / "other", references=[str(ref)], method="independent")


def test_seeds_are_distinct_per_shot():
    seeds = {shot_seed(0, i) for i in range(300)}
    assert len(seeds) == 300 and shot_seed(0, 5) == shot_seed(0, 5) and shot_seed(1, 5) != shot_seed(0, 5)


def test_sigkill_then_resume_equals_an_uninterrupted_run(pipe, tmp_path):
    story = write_story(tmp_path)
    out = tmp_path / "killed"
    # enough steps that a shot takes a noticeable time, so the kill lands inside shot 3
    args = ("generate", story, "--out", out, "--steps", "30", "--seed", "7", "--model", "tiny")
    proc = cli(*args, start_new_session=True)
    state_file = out / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline:
        if state_file.is_file():
            try:
                if len(json.loads(state_file.read_text())["completed"]) >= 2:
                    break
            except json.JSONDecodeError:
                pytest.fail("state.json was observed half-written")
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    state = json.loads(state_file.read_text())
    assert len(state["completed"]) == 2 and not state["finished"], "the kill should land inside shot 3"
    done = {n: (out / "shots" / f"{n}.mp4").stat().st_mtime_ns for n in state["completed"]}

    code, stdout, stderr = run_cli(*args, "--resume")
    assert code == 0, stderr
    assert stdout.startswith("4 shots (2 generated)")
    assert {n: (out / "shots" / f"{n}.mp4").stat().st_mtime_ns for n in done} == done  # not regenerated

    whole = generate(pipe, STORY, tmp_path / "whole", steps=30, seed=7)
    assert np.array_equal(read_video(out / "story.mp4"), read_video(whole.video))
    assert len(read_video(whole.video)) == 13 + 12 + 13 + 12


def test_storyboard_fits_the_memory_caption(tmp_path):
    """One tiny memory frame is narrower than its caption; the board must still hold the caption."""
    import PIL.ImageFont

    from storymem.storyboard import render_storyboard

    frame = PIL.Image.new("RGB", (32, 32), "blue")
    frames = [frame] * 4  # 4 thumbnails of 96 px = 392 px: the board's width is set by the rows
    render_storyboard([("01_01", frames, []), ("01_02", frames, [frame])], tmp_path / "b.png")
    board = np.asarray(PIL.Image.open(tmp_path / "b.png").convert("L"))
    caption_w = PIL.ImageFont.load_default(size=13).getlength("memory (1)")
    memory_x = 8 + 4 * (96 + 2) + 8 * 3  # where the memory thumbnail starts
    assert board.shape[1] >= memory_x + caption_w
    # and nothing of the caption is drawn on the last columns (it is not cut at the edge)
    assert (board[:, -6:] == 255).all()


class BatchDependent:
    """An embedder whose vectors depend on how many images are embedded together (as a real one
    does in the last bits): mean colour plus the batch size."""

    def embed(self, images):
        rows = [np.asarray(im, dtype=np.float32).mean(axis=(0, 1)) / 255 for im in images]
        out = torch.tensor(np.stack([np.append(r, len(images) / 10) for r in rows]))
        return out / out.norm(dim=-1, keepdim=True)


def test_memory_keyframes_are_embedded_alone_so_a_resume_chooses_alike(pipe, tmp_path, monkeypatch):
    """The memory a shot's candidates are compared with is embedded from each keyframe's PNG
    alone, never taken from the batch of its own shot: the same in a resumed run."""
    import storymem.runner

    seen = []
    real = storymem.runner.select_keyframes
    monkeypatch.setattr(storymem.runner, "select_keyframes", lambda e, s, t, m: seen.append(m) or real(e, s, t, m))
    embedder = BatchDependent()
    run = generate(pipe, STORY, tmp_path / "run", embedder=embedder)
    state = json.loads((run.run_dir / "state.json").read_text())
    last = state["completed"][-1]
    files = state["shots"][last]["memory"]
    alone = torch.cat([embedder.embed([load_image(run.run_dir / f)]) for f in files])
    assert files and torch.equal(seen[-1], alone)
