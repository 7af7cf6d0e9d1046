"""One shot split over processes (torchrun, gloo on the CPU): Ulysses context parallelism with
padding for token counts that do not divide, and rank 0 leading the story."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from storymem.errors import InputError
from storymem.models import transformer
from storymem.models.rope import memory_time_positions
from storymem.models.tiny import tiny_transformer_config
from storymem.models.transformer import StoryMemWanTransformer3DModel, padding_frames
from storymem.video import read_video

HERE = Path(__file__).parent
# --standalone: a free rendezvous port, so two launches (pytest -n workers) never collide
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# 48x48 pixels -> 3x3 tokens per latent frame; 13 frames -> 4 latent frames: 36 tokens with no
# memory (divides by 2), 45 with one memory frame and 63 with three (odd: padded by one frame).
SIZE = ["--height", "48", "--width", "48"]


def memory_images(m):
    return [PIL.Image.new("RGB", (48, 48), (40 * i, 200 - 30 * i, 90)) for i in range(m)]


@pytest.mark.parametrize(
    "frames,tokens,multiple,pad", [(4, 9, 2, 0), (5, 9, 2, 1), (7, 9, 4, 1), (5, 9, 4, 3), (6, 4, 8, 0), (3, 1, 8, 5)]
)
def test_padding_frames(frames, tokens, multiple, pad):
    assert padding_frames(frames, tokens, multiple) == pad
    assert (frames + pad) * tokens % multiple == 0


@torch.no_grad()
@pytest.mark.parametrize("memory", [0, 1, 3])
def test_padded_and_masked_frames_change_nothing(memory, monkeypatch):
    torch.manual_seed(0)
    model = StoryMemWanTransformer3DModel(**tiny_transformer_config(36)).eval()
    x, t, text = torch.randn(1, 36, memory + 4, 6, 6), torch.tensor([500]), torch.randn(1, 5, 32)
    plain = model(x, t, text, num_memory_frames=memory, return_dict=False)[0]
    for multiple in (2, 3, 4):
        model.sequence_multiple = multiple
        padded = model(x, t, text, num_memory_frames=memory, return_dict=False)[0]
        assert padded.shape == plain.shape
        torch.testing.assert_close(padded, plain, atol=2e-6, rtol=0)
    # without the key mask the padding would leak into every real token
    monkeypatch.setattr(transformer, "_masked_keys", lambda *args: contextlib.nullcontext())
    model.sequence_multiple = 3
    leaked = model(x, t, text, num_memory_frames=memory, return_dict=False)[0]
    assert padding_frames(memory + 4, 9, 3) == 0 or (leaked - plain).abs().max() > 1e-3


def test_torchrun_splits_each_shot_like_one_process(tmp_path, tiny_pipe):
    """M = 0 (a T2V shot), 1 and 3 memory frames; the last two have odd token counts."""
    run = subprocess.run(
        [*TORCHRUN, HERE / "cp_worker.py", tmp_path, "0", "1", "3"], env=ENV, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for m in (0, 1, 3):
        single = tiny_pipe.generate_shot(
            "a red fox", memory_images(m), seed=3, height=48, width=48, num_inference_steps=2, output_type="latent"
        )
        # every rank holds the gathered result; it differs from one process only by summation order
        assert torch.equal(ranks[0][m]["latents"], ranks[1][m]["latents"])
        torch.testing.assert_close(ranks[0][m]["latents"], single, atol=1e-5, rtol=0)

        # the RoPE rows each rank received: its half of the padded table of positions -3M..-3,0..3
        expert = tiny_pipe.transformer if m else tiny_pipe.t2v_transformer
        pad = padding_frames(m + 4, 9, 2)
        assert pad == (0 if m == 0 else 1)
        positions = memory_time_positions(m, 4 + pad, expert.config.memory_rope_shift)
        with expert.rope.time_positions(positions):
            table = expert.rope(torch.zeros(1, 16, m + 4 + pad, 6, 6))
        for rank in (0, 1):
            for got, full in zip(ranks[rank][m]["rope"], table, strict=True):
                assert got.shape[1] == (m + 4 + pad) * 9 // 2
                assert torch.equal(got, full.chunk(2, dim=1)[rank])


STORY = {
    "story_overview": "a fox's day",
    "scenes": [
        {"scene_num": 1, "video_prompts": ["a red fox walks", "the fox jumps"], "cut": [True, False]},
        {"scene_num": 2, "video_prompts": ["the fox sleeps", "the fox wakes"], "cut": [True, True]},
    ],
}


def test_torchrun_generate_killed_and_resumed_equals_one_process(tmp_path, cli):
    story = tmp_path / "story.json"
    story.write_text(json.dumps(STORY))
    out = tmp_path / "split"
    args = ["-m", "storymem.cli", "generate", story, "--out", out, "--model", "tiny", "--steps", "6", *SIZE]
    proc = subprocess.Popen(
        list(map(str, [*TORCHRUN, *args])), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    state_file, deadline = out / "state.json", time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if state_file.is_file() and len(json.loads(state_file.read_text())["completed"]) >= 2:
            break
        time.sleep(0.01)
    # torchrun starts each worker in a session of its own and ends them all on SIGTERM
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    state = json.loads(state_file.read_text())
    assert len(state["completed"]) == 2 and not state["finished"], "the kill should land inside shot 3"
    done = {n: (out / "shots" / f"{n}.mp4").stat().st_mtime_ns for n in state["completed"]}

    resumed = subprocess.run(list(map(str, [*TORCHRUN, *args, "--resume"])), env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("4 shots (2 generated)") == 1  # rank 0 alone speaks
    assert "error" not in resumed.stderr.lower()
    assert {n: (out / "shots" / f"{n}.mp4").stat().st_mtime_ns for n in done} == done  # not regenerated

    code, _, err = cli(*args[2:5], tmp_path / "one", *args[6:])  # one process
    assert code == 0, err
    one = json.loads((tmp_path / "one" / "state.json").read_text())
    split = json.loads(state_file.read_text())
    assert [split["shots"][n]["keyframes"] for n in split["completed"]] == [
        one["shots"][n]["keyframes"] for n in split["completed"]
    ]
    a = read_video(out / "story.mp4").astype(np.int16)
    b = read_video(tmp_path / "one" / "story.mp4").astype(np.int16)
    assert a.shape == b.shape and np.abs(a - b).max() <= 2


def test_refusals(monkeypatch, cli, tmp_path):
    from storymem import StoryMemPipeline

    pipe = StoryMemPipeline.from_preset("tiny")
    with pytest.raises(InputError, match=r"heads \(2\) to divide by 3; start torchrun with --nproc-per-node one of 2$"):
        pipe.enable_context_parallel(3)
    pipe._context_parallel = 2  # as after enable_context_parallel(2), without a process group
    with pytest.raises(InputError, match="memory mode group-offload is not supported with it"):
        pipe.enable_memory_mode("group-offload", "cpu")
    with pytest.raises(InputError, match="--attention _native_math does not support context parallelism"):
        pipe.enable_memory_mode("resident", "cpu", attention="_native_math")

    story = tmp_path / "story.json"
    story.write_text(json.dumps(STORY))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    code, _, err = cli("bench", story, "--out", tmp_path / "b", "--model", "tiny", "--extractor", "tiny")
    assert code == 1
    assert err == (
        "error: only generate and shot split a shot over torchrun's processes; run this command as one process "
        "(bench: one process per GPU with --workers)\n"
    )
    assert not (tmp_path / "b").exists()
