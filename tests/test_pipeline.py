import dataclasses
import warnings

import numpy as np
import PIL.Image
import pytest
import torch

from storymem import InputError, StoryMemPipeline, WeightsNotFoundError
from storymem.pipelines import StoryMemWarning


def frames_of(seed, size=32):
    rng = np.random.default_rng(seed)
    return [PIL.Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(9)]


@pytest.fixture
def memory():
    return frames_of(0)[:3]


def test_every_mode_runs_and_returns_its_own_frames(tiny_pipe, memory):
    previous = frames_of(1)
    t2v = tiny_pipe.generate_shot("a red fox runs")
    m2v = tiny_pipe.generate_shot("the fox jumps", memory=memory)
    mi2v = tiny_pipe.generate_shot("the fox jumps", memory=memory, first_frames=previous[-1:])
    mm2v = tiny_pipe.generate_shot("the fox jumps", memory=memory, first_frames=previous[-5:])
    assert [len(t2v), len(m2v), len(mi2v), len(mm2v)] == [13, 13, 12, 8]
    assert all(isinstance(f, PIL.Image.Image) and f.size == (32, 32) for f in t2v + m2v + mi2v + mm2v)
    shorter = tiny_pipe.generate_shot("x", memory=memory, first_frames=previous[-5:], num_frames=9, output_type="np")
    assert shorter.shape == (4, 32, 32, 3)


def test_same_seed_same_frames_and_memory_matters(tiny_pipe, memory):
    a = tiny_pipe.generate_shot("the fox jumps", memory=memory, seed=3, output_type="np")
    b = tiny_pipe.generate_shot("the fox jumps", memory=memory, seed=3, output_type="np")
    assert np.array_equal(a, b)
    other_seed = tiny_pipe.generate_shot("the fox jumps", memory=memory, seed=4, output_type="np")
    fewer = tiny_pipe.generate_shot("the fox jumps", memory=memory[:1], seed=3, output_type="np")
    assert np.abs(a - other_seed).max() > 0.05
    assert np.abs(a - fewer).max() > 0.05
    # Other keyframe content, same count: compared on latents (the random tiny VAE flattens
    # small latent changes on decoding).
    same = tiny_pipe.generate_shot("the fox jumps", memory=memory, seed=3, output_type="latent")
    other = tiny_pipe.generate_shot("the fox jumps", memory=frames_of(5)[:3], seed=3, output_type="latent")
    assert same.shape == (1, 16, 4, 4, 4)
    assert (same - other).abs().max() > 1e-3


def test_mi2v_first_frame_latent_is_the_encoded_frame(tiny_pipe, memory):
    frame = frames_of(7)[0]
    condition = tiny_pipe.prepare_condition(memory, [frame])
    assert condition.shape == (1, 20, 3 + 4, 4, 4)
    alone = tiny_pipe.encode_keyframes([frame], 32, 32)  # the frame encoded on its own
    black = tiny_pipe.prepare_condition(memory, [])
    video_latent_0 = condition[:, 4:, 3:4]
    torch.testing.assert_close(video_latent_0, alone, rtol=0, atol=1e-5)
    assert (video_latent_0 - black[:, 4:, 3:4]).abs().max() > 0.1  # not the black-video encoding
    # mask: memory and latent 0 given; the rest not
    assert condition[:, :4, :4].min() == 1 and condition[:, :4, 4:].max() == 0
    # memory slots hold each keyframe's own encoding, oldest first
    for i, image in enumerate(memory):
        torch.testing.assert_close(condition[:, 4:, i : i + 1], tiny_pipe.encode_keyframes([image], 32, 32))


def test_mm2v_condition_covers_two_latents(tiny_pipe, memory):
    previous = frames_of(1)[-5:]
    condition = tiny_pipe.prepare_condition(memory, previous)
    assert condition[:, :4, : 3 + 2].min() == 1 and condition[:, :4, 3 + 2 :].max() == 0
    pixels = torch.stack(
        [torch.from_numpy(np.asarray(f, np.float32)).permute(2, 0, 1) / 127.5 - 1 for f in previous], 1
    )
    encoded = tiny_pipe.vae_encode(torch.cat([pixels[None], torch.zeros(1, 3, 8, 32, 32)], 2))
    torch.testing.assert_close(condition[:, 4:, 3:], encoded, rtol=0, atol=1e-5)


def test_keyframes_and_prompts_are_encoded_once(tiny_pipe, memory):
    calls = {"vae": 0, "text": 0}
    vae_encode, text_forward = tiny_pipe.vae.encode, tiny_pipe.text_encoder.forward

    def counting_vae(x, *a, **k):
        calls["vae"] += x.shape[0]
        return vae_encode(x, *a, **k)

    def counting_text(*a, **k):
        calls["text"] += 1
        return text_forward(*a, **k)

    tiny_pipe.vae.encode, tiny_pipe.text_encoder.forward = counting_vae, counting_text
    tiny_pipe.generate_shot("shot one", memory=memory[:2])
    assert calls == {"vae": 2 + 1, "text": 2}  # two keyframes + the zero video; prompt + negative
    tiny_pipe.generate_shot("shot two", memory=memory)  # one new keyframe, one new prompt
    assert calls == {"vae": 4, "text": 3}
    tiny_pipe.generate_shot("shot two", memory=memory, first_frames=frames_of(2)[-1:])  # MI2V condition only
    assert calls == {"vae": 5, "text": 3}


def test_keyframes_evicted_while_encoding_new_ones_are_still_returned(tiny_pipe):
    """A small cache: encoding two new keyframes evicts a cached one that the same call needs."""
    a, b, c, d = frames_of(5)[:4]
    expected = torch.cat([tiny_pipe.encode_keyframes([m], 32, 32) for m in (a, c, d)], dim=2)
    tiny_pipe._latent_cache.clear()
    tiny_pipe._latent_cache.capacity = 2
    tiny_pipe.encode_keyframes([a, b], 32, 32)
    got = tiny_pipe.encode_keyframes([a, c, d, c], 32, 32)
    torch.testing.assert_close(got[:, :, :3], expected)
    torch.testing.assert_close(got[:, :, 3], expected[:, :, 1])


def test_a_batch_of_prompts_is_encoded_in_one_pass_and_equals_one_by_one(tiny_pipe):
    prompts = ["a fox runs", "a cat sits", "a fox runs", ""]
    alone = torch.cat([tiny_pipe.encode_prompt(p) for p in prompts])
    tiny_pipe._prompt_cache.clear()
    calls = []
    forward = tiny_pipe.text_encoder.forward
    tiny_pipe.text_encoder.forward = lambda ids, *a, **k: calls.append(len(ids)) or forward(ids, *a, **k)
    together = tiny_pipe.encode_prompts(prompts)
    assert calls == [3]  # the repeated prompt is encoded once
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    assert tiny_pipe.encode_prompts(prompts[:2]).shape == (2, *alone.shape[1:]) and calls == [3]  # cached


def test_memory_images_of_other_sizes_are_resized(tiny_pipe):
    big = [PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 48, 3), dtype=np.uint8))]
    frames = tiny_pipe.generate_shot("a fox", memory=big, output_type="np")
    assert frames.shape == (13, 32, 32, 3)


def test_bad_settings_are_refused_or_warned(tiny_pipe, memory):
    with pytest.raises(InputError, match="multiples of 16, got 40x32"):
        tiny_pipe.generate_shot("x", memory=memory, height=40)
    with pytest.raises(InputError, match=r"num_frames must be 4k\+1 \(e.g. 81\), got 8"):
        tiny_pipe.generate_shot("x", memory=memory, num_frames=8)
    with pytest.raises(InputError, match="mm2v gives 5 frames; num_frames must be larger, got 5"):
        tiny_pipe.generate_shot("x", memory=memory, first_frames=frames_of(1)[:5], num_frames=5)
    with pytest.raises(InputError, match="1 frame .MI2V. or 5 frames .MM2V., got 2"):
        tiny_pipe.generate_shot("x", memory=memory, first_frames=frames_of(1)[:2])
    with pytest.raises(InputError, match="HxWx3 uint8 array"):
        tiny_pipe.generate_shot("x", memory=[np.zeros((32, 32), np.float32)])
    tiny_pipe.preset = dataclasses.replace(tiny_pipe.preset, trained_resolutions=((32, 32),))
    with pytest.warns(StoryMemWarning, match="48x32 is not a resolution the tiny weights were trained on"):
        tiny_pipe.generate_shot("x", memory=memory, width=48)
    with pytest.warns(StoryMemWarning, match="11 memory frames; the tiny weights were trained with at most 10"):
        tiny_pipe.generate_shot("x", memory=frames_of(3) + memory[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_pipe.generate_shot("x", memory=memory)


def test_t2v_needs_the_t2v_experts():
    pipe = StoryMemPipeline.from_preset("tiny", load_t2v=False)
    assert pipe.t2v_transformer is None and pipe.t2v_loader is None
    with pytest.raises(InputError, match="needs the T2V experts"):
        pipe.generate_shot("x")


def test_stock_transformer_is_refused():
    from diffusers import WanTransformer3DModel

    from storymem.models.tiny import build_tiny_components, tiny_transformer_config

    parts = build_tiny_components()
    parts["transformer"] = WanTransformer3DModel(**tiny_transformer_config(36))
    with pytest.raises(InputError, match="transformer must be a StoryMemWanTransformer3DModel"):
        StoryMemPipeline(**parts, preset="tiny")


def test_missing_real_weights_say_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsNotFoundError) as info:
        StoryMemPipeline.from_preset("wan2.2-a14b")
    message = str(info.value)
    assert "Wan-AI/Wan2.2-I2V-A14B-Diffusers" in message and "hf download Wan-AI/Wan2.2-I2V-A14B-Diffusers" in message
    with pytest.raises(WeightsNotFoundError, match="not a diffusers-format folder"):
        StoryMemPipeline.from_preset("wan2.2-a14b", i2v=str(tmp_path))
    with pytest.raises(InputError, match="unknown model preset 'wan3'; choose one of: wan2.2-a14b, toy, tiny"):
        StoryMemPipeline.from_preset("wan3")


def test_cli_shot_writes_a_video(tmp_path):
    import subprocess
    import sys

    from storymem.video import read_video

    images = []
    for i, frame in enumerate(frames_of(2)):
        images.append(tmp_path / f"f{i}.png")
        frame.save(images[-1])
    out = tmp_path / "shot.mp4"
    cmd = [sys.executable, "-m", "storymem.cli", "shot", "a fox", "--out", str(out), "--seed", "1", "--model", "tiny"]
    cmd += ["--memory", str(images[0]), "--memory", str(images[1]), "--first-frames", str(images[-1])]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {out} (12 frames, 32x32)"
    assert read_video(out).shape == (12, 32, 32, 3)
    result = subprocess.run(cmd[:-2] + ["--first-frames", str(tmp_path / "gone.png")], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.endswith(f"error: {tmp_path / 'gone.png'}: image not found\n")
    assert "Traceback" not in result.stderr
