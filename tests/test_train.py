import json
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import load_file

from storymem import InputError, StoryMemPipeline
from storymem.train import EncodeSettings, MemorySampler, TrainConfig, Trainer, build_batch, sample_sigmas, train
from storymem.train.cache import clip_frames
from storymem.train.data import group_indices, load_metadata
from storymem.video import write_video


def make_dataset(root, groups=3, clips=3, frames=13, size=32, seed=0):
    """Clips of a coloured box moving over grey; one colour per group."""
    rng = np.random.default_rng(seed)
    (root / "clips").mkdir(parents=True)
    lines = []
    for g in range(groups):
        colour = rng.integers(30, 226, 3).astype(np.uint8)
        for c in range(clips):
            video = np.full((frames, size, size, 3), 20, np.uint8)
            for f in range(frames):
                x = 6 + (2 * f + 5 * c) % (size - 12)
                video[f, 10:22, x : x + 10] = colour
            name = f"clips/g{g}_c{c}.mp4"
            write_video(video, root / name, fps=8)
            lines.append(json.dumps({"video": name, "caption": f"a box moves, take {c}", "group": f"g{g}"}))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"))


def tiny_pipe():
    pipe = StoryMemPipeline.from_preset("tiny", load_t2v=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def config(dataset, out, **kw):
    base = dict(data=str(dataset), out=str(out), model="tiny", steps=30, lr=1e-2, rank=8, batch_size=2, checkpoint_every=100)
    return TrainConfig(**{**base, **kw})


def test_sampler_draws_memory_from_other_clips_of_the_same_group():
    groups = {"a": [0, 1, 2], "b": [3, 4], "c": [5, 6, 7, 8]}
    sampler = MemorySampler(groups, keyframes_per_clip=2, max_memory=3, p_first=0.5, variant="mm2v")
    rng = np.random.default_rng(0)
    group_of = {c: g for g, cs in groups.items() for c in cs}
    counts, given = set(), set()
    for _ in range(300):
        batch = sampler.draw_batch(rng, 3)
        assert len({len(d.memory) for d in batch}) == 1  # one memory length per batch: they stack
        for draw in batch:
            assert 1 <= len(draw.memory) <= 3
            assert all(clip != draw.target and group_of[clip] == group_of[draw.target] for clip, _ in draw.memory)
            assert len(set(draw.memory)) == len(draw.memory)  # no frame twice
            counts.add(len(draw.memory))
            given.add(draw.given)
    assert counts == {1, 2, 3} and given == {0, 5}
    lonely = MemorySampler({"a": [0, 1]}, keyframes_per_clip=1, max_memory=10)
    assert all(len(d.memory) == 1 for d in lonely.draw_batch(rng, 4))  # capped by what the group offers


def test_dataset_errors_are_one_clear_sentence(tmp_path):
    with pytest.raises(InputError, match="no metadata.jsonl"):
        load_metadata(tmp_path)
    (tmp_path / "a.mp4").write_bytes(b"not a video")
    (tmp_path / "b.mp4").write_bytes(b"")
    rows = [{"video": "a.mp4", "caption": "x", "group": "g"}, {"video": "b.mp4", "caption": "y", "group": "h"}]
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(InputError, match=r"group\(s\) g, h have one clip; .* every group needs at least 2"):
        load_metadata(tmp_path)
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"video": "missing.mp4", "caption": "x", "group": "g"}))
    with pytest.raises(InputError, match=r"metadata.jsonl: line 1: video missing.mp4 not found"):
        load_metadata(tmp_path)
    (tmp_path / "metadata.jsonl").write_text('{"video": "a.mp4", "caption": "x", "group": "g"}\n{"video": "a.mp4"')
    with pytest.raises(InputError, match="line 2: not JSON"):
        load_metadata(tmp_path)
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"video": "a.mp4", "caption": "", "group": "g"}))
    with pytest.raises(InputError, match="line 1: caption must be non-empty strings"):
        load_metadata(tmp_path)
    rows[1]["group"] = "g"
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    clips = load_metadata(tmp_path)
    with pytest.raises(InputError, match=r"a.mp4: not a readable video"):
        clip_frames(clips[0], 13)


def test_training_sees_exactly_the_inference_conditioning(dataset):
    pipe = tiny_pipe()
    trainer = Trainer(config(dataset, "unused"), pipe=pipe, progress=False)
    clips = load_metadata(dataset)
    draw = trainer.sampler.draw_batch(np.random.default_rng(3), 1)[0]
    draw = type(draw)(draw.target, draw.memory, given=1)  # an MI2V example
    _, condition, _, num_memory = build_batch([draw], trainer.encoded, trainer.zero_video, pipe, 13)

    # The same inputs through the inference path: memory frames as images, the first frame given.
    slots = [0, 4, 8, 12]  # evenly spaced keyframe candidates of a 13-frame clip
    memory = [clip_frames(clips[c], 13)[slots[k]] for c, k in draw.memory]
    first = clip_frames(clips[draw.target], 13)[:1]
    expected = pipe.prepare_condition(memory, first, 32, 32, 13)
    assert num_memory == len(memory)
    torch.testing.assert_close(condition, expected, rtol=0, atol=0)
    m2v = type(draw)(draw.target, draw.memory, given=0)
    _, condition, _, _ = build_batch([m2v], trainer.encoded, trainer.zero_video, pipe, 13)
    torch.testing.assert_close(condition, pipe.prepare_condition(memory, [], 32, 32, 13), rtol=0, atol=0)


def test_timesteps_stay_in_the_experts_range():
    g = torch.Generator().manual_seed(0)
    high = sample_sigmas(2000, "high", shift=4.0, boundary=0.9, generator=g)
    low = sample_sigmas(2000, "low", shift=4.0, boundary=0.9, generator=g)
    assert high.min() >= 0.9 and high.max() <= 1.0 and low.max() < 0.9 and low.min() >= 0.0
    # the shift puts most of the low expert's samples at high noise: median u = 0.346 -> sigma 0.68
    assert 0.6 < float(low.median()) < 0.75


def test_thirty_steps_reduce_the_loss_and_the_lora_changes_generation(dataset, tmp_path):
    pipe = tiny_pipe()
    memory = [np.full((32, 32, 3), 200, np.uint8)]
    before = pipe.generate_shot("a box moves", memory=memory, seed=0, output_type="latent")
    file = train(config(dataset, tmp_path / "run"), pipe=tiny_pipe(), progress=False)
    losses = json.loads((tmp_path / "run" / "high" / "checkpoint-30" / "state.json").read_text())["losses"]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5]), losses
    assert file == tmp_path / "run" / "lora" / "backbone_high_noise.safetensors"
    assert (tmp_path / "run" / "high" / "loss.png").is_file()

    pipe.load_storymem_lora(file)  # the official format, one expert's file
    after = pipe.generate_shot("a box moves", memory=memory, seed=0, output_type="latent")
    assert (after - before).abs().max() > 1e-3


def test_resume_after_step_ten_equals_an_uninterrupted_run(dataset, tmp_path):
    whole = Trainer(
        config(dataset, tmp_path / "whole", steps=20, checkpoint_every=10), pipe=tiny_pipe(), progress=False
    )
    whole.train()
    first = Trainer(
        config(dataset, tmp_path / "split", steps=10, checkpoint_every=10), pipe=tiny_pipe(), progress=False
    )
    first.train()
    second = Trainer(
        config(dataset, tmp_path / "split", steps=20, checkpoint_every=10), pipe=tiny_pipe(), progress=False
    )
    second.resume()
    assert second.step == 10
    second.train()
    assert second.losses == whole.losses  # exactly: data draws, noise, timesteps, dropout, Adam state
    a = whole._lora_state()
    b = second._lora_state()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(InputError, match=r"settings differ from the checkpoint \(lr: saved 0.01, now 0.1\)"):
        Trainer(config(dataset, tmp_path / "split", steps=30, lr=0.1), pipe=tiny_pipe(), progress=False).resume()


def test_cache_gives_the_same_tensors_as_encoding_in_memory(dataset, tmp_path):
    from storymem.train import read_cache, write_cache
    from storymem.train.cache import encode_dataset

    pipe = tiny_pipe()
    clips = load_metadata(dataset)
    settings = EncodeSettings("tiny", 32, 32, 13, 4, "mi2v")
    write_cache(pipe, clips, settings, tmp_path / "cache")
    cached, zero = read_cache(tmp_path / "cache", clips, settings)
    direct, zero_direct = encode_dataset(pipe, clips, settings, progress=False)
    assert all(torch.equal(cached[i][k], direct[i][k]) for i in range(len(clips)) for k in direct[i])
    assert torch.equal(zero, zero_direct)
    assert cached[0]["keyframes"].shape == (4, 16, 4, 4) and cached[0]["video"].shape == (16, 4, 4, 4)
    other = EncodeSettings("tiny", 32, 32, 9, 4, "mi2v")
    with pytest.raises(InputError, match=r"made with other settings \(frames: cache 13, now 9\)"):
        read_cache(tmp_path / "cache", clips, other)
    assert group_indices(clips) == {"g0": [0, 1, 2], "g1": [3, 4, 5], "g2": [6, 7, 8]}


def test_train_cli_end_to_end(dataset, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "storymem.cli", *map(str, args)], capture_output=True, text=True)

    proc = run("train", "cache", "--data", dataset, "--out", tmp_path / "cache", "--model", "tiny")
    assert proc.returncode == 0, proc.stderr
    common = ("--data", dataset, "--out", tmp_path / "run", "--steps", 3, "--rank", 4, "--cache", tmp_path / "cache")
    common += ("--model", "tiny")
    proc = run("train", *common)
    assert proc.returncode == 0, proc.stderr
    assert "train the low-noise expert into the same --out (--expert low)" in proc.stdout
    proc = run("train", *common, "--expert", "low")
    assert proc.returncode == 0, proc.stderr
    assert f"use it with: storymem generate STORY --model tiny --lora {tmp_path / 'run' / 'lora'}" in proc.stdout
    proc = run("train", *common)
    assert proc.returncode == 1
    assert (
        proc.stderr
        == f"error: {tmp_path / 'run' / 'high'}: holds checkpoints already; use --resume to continue or another --out\n"
    )
    pipe = tiny_pipe()
    pipe.load_storymem_lora(tmp_path / "run" / "lora")  # both experts, official format
    image = PIL.Image.new("RGB", (32, 32), (200, 40, 40))
    assert len(pipe.generate_shot("a box", memory=[image], seed=0)) == 13


def test_ddp_on_cpu_trains_in_two_processes(dataset, tmp_path):
    """The data-parallel path for real: torchrun, 2 CPU processes, gloo (accelerate's MULTI_CPU)."""
    import os

    args = ["--data", dataset, "--steps", 3, "--rank", 4, "--model", "tiny", "--checkpoint-every", 3]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    launch = [*torchrun, "-m", "storymem.cli", "train"]
    ddp = subprocess.run([*launch, "--out", tmp_path / "ddp", *map(str, args)], env=env, capture_output=True, text=True)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("wrote ") == 1  # rank 0 alone reports
    checkpoint = tmp_path / "ddp" / "high" / "checkpoint-3"
    assert {p.name for p in checkpoint.glob("rng-*.pt")} == {"rng-0.pt", "rng-1.pt"}  # two ranks ran
    single = [sys.executable, "-m", "storymem.cli", "train", "--out", tmp_path / "one", *args]
    assert subprocess.run(list(map(str, single)), capture_output=True, text=True).returncode == 0
    # rank 0 draws the same examples in both runs; the averaged gradient of rank 1 changes the result
    a = load_file(str(tmp_path / "ddp" / "lora" / "backbone_high_noise.safetensors"))
    b = load_file(str(tmp_path / "one" / "lora" / "backbone_high_noise.safetensors"))
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
