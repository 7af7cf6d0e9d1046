"""The built-in `toy` preset: exact codec, exact T2V derivation, word tokenizer, shipped weights,
the training recipe, and the README's main command."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from storymem import StoryMemPipeline
from storymem.conditioning import condition_mask, condition_pixels, model_input
from storymem.errors import WeightsNotFoundError
from storymem.models.presets import get_preset
from storymem.toyworld import ALL_LOOKS, Look, make_story, render_clip
from storymem.toyworld.codec import TEMPORAL, Z_DIM, PixelPackCodec
from storymem.toyworld.model import TEXT_DIM, TOY_WEIGHTS, build_toy_components, t2v_from_i2v, toy_tokenizer
from storymem.toyworld.stories import ToyShot

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("frames", [1, 5, 9, 13])
def test_codec_is_exact_and_causal(frames):
    codec = PixelPackCodec()
    pixels = torch.rand(2, 3, frames, 8, 12) * 2 - 1
    latents = codec.encode(pixels).latent_dist.mode()
    assert latents.shape == (2, Z_DIM, (frames - 1) // TEMPORAL + 1, 4, 6)
    assert torch.equal(codec.decode(latents, return_dict=False)[0], pixels)
    # frame 0 alone in latent 0 (as Wan's causal VAE); frames 1..TEMPORAL in latent 1
    marked = torch.zeros(1, 3, frames, 8, 12)
    marked[:, :, 0] = 1
    z = codec.encode(marked).latent_dist.mode()
    assert torch.all(z[:, :, 0] == 1) and torch.all(z[:, :, 1:] == 0)


def test_codec_refuses_sizes_it_cannot_pack():
    with pytest.raises(ValueError, match=f"{TEMPORAL}k\\+1 frames"):
        PixelPackCodec().pack(torch.zeros(1, 3, TEMPORAL + 2, 8, 8))


def test_toy_pipeline_round_trips_pixels_through_its_latents():
    pipe = StoryMemPipeline(**build_toy_components(weights=None), preset="toy")
    clip = render_clip(ALL_LOOKS[5], "desert", "walks", frames=get_preset("toy").num_frames)
    pixels = torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    latents = pipe.vae_encode(pixels)
    assert abs(float(latents.mean())) < 1.0 and 0.3 < float(latents.std()) < 3.0  # roughly normalised
    back = pipe.vae_decode(latents)
    assert torch.allclose(back, pixels, atol=1e-5)


def test_t2v_expert_equals_the_i2v_network_with_nothing_given():
    components = build_toy_components(weights=None)
    i2v = components["transformer"]
    with torch.no_grad():  # give the condition channels weight, so the test means something
        i2v.patch_embedding.weight.normal_()
    t2v = t2v_from_i2v(i2v)
    pipe = StoryMemPipeline(**components, preset="toy")
    frames = get_preset("toy").num_frames
    zero_video = pipe.vae_encode(condition_pixels(None, frames, 32, 32))
    condition = pipe.assemble_condition(None, zero_video, 0, frames)
    assert torch.equal(condition[:, :TEMPORAL], condition_mask(0, frames, 0, 16, 16, TEMPORAL))
    noisy = torch.randn(1, Z_DIM, (frames - 1) // TEMPORAL + 1, 16, 16)
    text = torch.randn(1, 24, TEXT_DIM)
    t = torch.tensor([700.0])
    with torch.no_grad():
        expected = i2v(model_input(noisy, condition), t, text, return_dict=False)[0]
        got = t2v(noisy, t, text, return_dict=False)[0]
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, i2v(model_input(noisy, condition * 0), t, text, return_dict=False)[0])


def test_tokenizer_gives_one_token_per_toy_word():
    tokenizer = toy_tokenizer()
    caption = ToyShot("Pip", "walks", "forest", "close-up", Look("circle", "red", "striped")).caption()
    tokens = tokenizer.tokenize(caption)
    assert tokens == [
        "▁Pip",
        ",",
        "▁a",
        "▁red",
        "▁striped",
        "▁circle",
        ",",
        "▁walks",
        "▁in",
        "▁the",
        "▁forest",
        ",",
        "▁close-up",
        ".",
    ]
    limit = get_preset("toy").max_sequence_length
    for seed in range(30):
        story, _ = make_story(seed)
        for scene in story["scenes"]:
            for prompt in scene["video_prompts"]:
                ids = tokenizer(prompt).input_ids
                assert tokenizer.unk_token_id not in ids and len(ids) <= limit


def test_missing_weights_name_the_script(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="scripts/train_toy_model.py"):
        build_toy_components(weights=tmp_path)


def test_shipped_weights_load_and_fit_the_size_limit():
    files = [p for p in TOY_WEIGHTS.rglob("*") if p.is_file()]
    assert {p.relative_to(TOY_WEIGHTS).as_posix() for p in files} == {
        "base.safetensors",
        "lora/backbone_high_noise.safetensors",
        "lora/backbone_low_noise.safetensors",
        "README.md",
    }
    assert sum(p.stat().st_size for p in files) <= 20 * 2**20
    pipe = StoryMemPipeline.from_preset("toy")
    assert pipe.lora_variant == "mi2v"
    for expert in (pipe.transformer, pipe.transformer_2):
        assert "storymem" in expert.peft_config
    # both slots hold the same trained network; T2V is derived from it
    assert torch.equal(pipe.transformer.patch_embedding.weight, pipe.transformer_2.patch_embedding.weight)
    assert torch.equal(pipe.t2v_transformer.patch_embedding.weight, pipe.transformer.patch_embedding.weight[:, :Z_DIM])


def run_training_script(monkeypatch, *args: str) -> None:
    import runpy

    monkeypatch.setattr(sys, "argv", ["train_toy_model.py", *args])
    runpy.run_path(str(REPO / "scripts" / "train_toy_model.py"), run_name="__main__")


def test_training_script_writes_weights_the_preset_loads_one_stage_at_a_time(tmp_path, monkeypatch, capsys):

    work, weights = tmp_path / "work", tmp_path / "weights"
    small = ["--out", str(work), "--weights", str(weights), "--mixed-precision", "no", "--base-steps", "3",
             "--base-batch", "2", "--groups", "2", "--clips-per-group", "2", "--lora-steps", "2", "--lora-batch", "2"]  # fmt: skip
    run_training_script(monkeypatch, *small, "--stages", "base")
    assert not (weights / "lora").exists()
    assert "base loss" in capsys.readouterr().out
    base = (weights / "base.safetensors").read_bytes()
    untrained = build_toy_components(weights=None)["transformer"]
    trained = build_toy_components(weights=weights)["transformer"]
    assert not torch.equal(trained.proj_out.weight, untrained.proj_out.weight)

    # The LoRA stage alone trains on the base already there, and leaves it as it was.
    run_training_script(monkeypatch, *small, "--stages", "lora", "--clip-format", "tif")
    assert (weights / "base.safetensors").read_bytes() == base
    printed = capsys.readouterr().out
    assert "M2V LoRA loss" in printed and "base loss" not in printed
    pipe = StoryMemPipeline(**build_toy_components(weights=weights), preset="toy")
    pipe.load_storymem_lora(weights / "lora")
    rows = [json.loads(line) for line in (work / "groups" / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and len({row["group"] for row in rows}) == 2
    assert all(row["video"].endswith(".tif") for row in rows)


def test_training_clips_are_the_same_as_tif_and_as_mp4(tmp_path):
    """tif clips (for machines without ffmpeg) read back as the very frames of the mp4 clips."""
    from storymem.toyworld.recipe import RecipeConfig, write_groups
    from storymem.video import read_video

    clips = {}
    for fmt in ("mp4", "tif"):
        folder = write_groups(tmp_path / fmt, RecipeConfig(out="", groups=2, clips_per_group=2, clip_format=fmt), 13)
        clips[fmt] = sorted((folder / "clips").iterdir())
    assert [p.stem for p in clips["mp4"]] == [p.stem for p in clips["tif"]] and len(clips["mp4"]) == 4
    for mp4, tif in zip(clips["mp4"], clips["tif"], strict=True):
        frames = read_video(mp4)
        assert frames.shape == (13, 32, 32, 3) and np.array_equal(read_video(tif), frames)
    with pytest.raises(ValueError, match="clip_format: expected mp4 or tif, got 'gif'"):
        write_groups(tmp_path / "gif", RecipeConfig(out="", groups=1, clip_format="gif"), 13)


def test_base_memory_examples_show_one_look_in_other_scenes():
    """--p-memory: base examples whose look must come from memory frames of the same look in
    other scenes; the condition marks the memory frames as given and the shot as not."""
    from storymem.toyworld.identity import frame_look, video_look
    from storymem.toyworld.recipe import RecipeConfig, memory_batch, memory_example

    rng, config = np.random.default_rng(3), RecipeConfig(out="", p_look_given=0.0)
    scenes = set()
    for _ in range(6):
        shot, look, clip, memory = memory_example(rng, 5, 3, config)
        assert shot.look is None and shot.caption().startswith(f"{shot.name} ")  # the name only
        assert video_look(clip, shot.place) == look
        assert [frame_look(frame, scene.place) for scene, frame in memory] == [look] * 3
        scenes |= {(scene.place, scene.action, scene.shot) for scene, _ in memory}
    assert len(scenes) > 6  # other scenes, not copies of one

    pipe = StoryMemPipeline.from_preset("toy", lora=False)
    x0, condition, text = memory_batch(pipe, rng, 4, 5, 2, config)
    assert x0.shape == (4, Z_DIM, 2 + 3, 16, 16) and condition.shape == (4, TEMPORAL + Z_DIM, 5, 16, 16)
    assert text.shape[0] == 4
    assert torch.equal(condition[:, :TEMPORAL], condition_mask(2, 5, 0, 16, 16, TEMPORAL).expand(4, -1, -1, -1, -1))
    assert torch.equal(condition[:, TEMPORAL:, :2], x0[:, :, :2])  # the memory latents themselves
    nothing_given = pipe.vae_encode(condition_pixels(None, 5, 32, 32))
    assert torch.equal(condition[:, TEMPORAL:, 2:], nothing_given.expand(4, -1, -1, -1, -1))


def test_memory_examples_with_one_frame_shots_show_a_frame_of_the_shot():
    """--memory-shot-frames 1: the shot is one frame of its clip (any of them), the memory as
    before; the condition marks memory frames given and the one shot frame not."""
    from storymem.toyworld.recipe import RecipeConfig, memory_batch, memory_example

    config = RecipeConfig(out="", p_look_given=0.0, memory_shot_frames=1)
    starts = set()
    for seed in range(8):
        shot, look, clip, memory = memory_example(np.random.default_rng(seed), 5, 2, config)
        full = render_clip(look, shot.place, shot.action, shot.shot, frames=5)
        assert clip.shape == (1, 32, 32, 3) and len(memory) == 2
        starts |= {k for k in range(5) if np.array_equal(full[k], clip[0])}
    assert len(starts) > 2  # a random frame, not always the first
    pipe = StoryMemPipeline.from_preset("toy", lora=False)
    x0, condition, _ = memory_batch(pipe, np.random.default_rng(0), 3, 5, 2, config)
    assert x0.shape == (3, Z_DIM, 2 + 1, 16, 16) and condition.shape == (3, TEMPORAL + Z_DIM, 3, 16, 16)
    assert torch.equal(condition[:, :TEMPORAL], condition_mask(2, 1, 0, 16, 16, TEMPORAL).expand(3, -1, -1, -1, -1))
    with pytest.raises(ValueError, match=r"memory_shot_frames: expected 0 \(the whole shot\) or 1, got 2"):
        memory_example(np.random.default_rng(0), 5, 2, RecipeConfig(out="", memory_shot_frames=2))


def test_base_training_with_memory_examples_runs_its_memory_path(tmp_path, monkeypatch):
    """--p-memory 1: every base step reads memory; the batches reach the model with their
    memory length, and the loss covers the shot only."""
    from storymem.toyworld import recipe

    seen = []
    real = recipe.memory_batch

    def spy(pipe, rng, size, frames, count, config):
        seen.append(count)
        return real(pipe, rng, size, frames, count, config)

    monkeypatch.setattr(recipe, "memory_batch", spy)
    monkeypatch.setattr(recipe, "base_batch", lambda *a: pytest.fail("a plain batch at p_memory 1"))
    pipe = StoryMemPipeline(**build_toy_components(weights=None), preset="toy")
    before = pipe.transformer.proj_out.weight.clone()

    def spoil_memory_slots(module, args, kwargs, output):  # what the model says there must not count
        prediction = output[0].clone()
        prediction[:, :, : kwargs["num_memory_frames"]] += 1e6
        return (prediction,)

    pipe.transformer.register_forward_hook(spoil_memory_slots, with_kwargs=True)
    config = recipe.RecipeConfig(out=str(tmp_path), base_steps=3, base_batch=2, p_memory=1.0, mixed_precision="no")
    losses = recipe.train_base(pipe, config, tmp_path / "work", progress=False)  # a folder it makes
    assert json.loads((tmp_path / "work" / "base_losses.json").read_text()) == losses
    assert len(losses) == 3 and max(losses) < 100 and set(seen) <= {1, 2, 3} and len(seen) == 3
    assert not torch.equal(pipe.transformer.proj_out.weight, before)


def test_an_interrupted_base_stage_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """Checkpoints every --checkpoint-every steps hold the model, EMA, optimiser, schedule and both
    random generators: stopped after step 5 of 8 and run again, the stage ends exactly where an
    uninterrupted run ends."""
    from storymem.toyworld import recipe

    config = recipe.RecipeConfig(
        out=str(tmp_path), base_steps=8, base_batch=2, p_memory=0.5, mixed_precision="no", checkpoint_every=2
    )

    def trained(work, stop_at=None):
        pipe = StoryMemPipeline(**build_toy_components(weights=None), preset="toy")
        if stop_at is not None:
            calls = []

            def stop(*args):
                calls.append(1)
                if len(calls) == stop_at:
                    raise KeyboardInterrupt

            handle = pipe.transformer.register_forward_pre_hook(stop)
            with pytest.raises(KeyboardInterrupt):
                recipe.train_base(pipe, config, work, progress=False)
            handle.remove()
            assert (work / recipe.CHECKPOINT).is_file()
            pipe = StoryMemPipeline(**build_toy_components(weights=None), preset="toy")
        losses = recipe.train_base(pipe, config, work, progress=False)
        return losses, pipe.transformer.state_dict()

    whole_losses, whole = trained(tmp_path / "whole")
    resumed_losses, resumed = trained(tmp_path / "resumed", stop_at=6)  # killed in step 6: steps 1-4 kept
    assert resumed_losses == whole_losses and len(whole_losses) == 8
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert not (tmp_path / "resumed" / recipe.CHECKPOINT).exists()  # done: no checkpoint left behind


def test_training_script_refuses_an_unknown_stage(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_training_script(monkeypatch, "--stages", "base,fine")
    assert exit_info.value.code == 2
    assert "--stages: expected some of base, memory, lora (e.g. base,lora), got 'base,fine'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_training_script(monkeypatch, "--clip-format", "gif")
    assert "argument --clip-format: invalid choice: 'gif'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_training_script(monkeypatch, "--p-memory", "1.5")
    assert "--p-memory: a probability from 0 to 1, got 1.5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_training_script(monkeypatch, "--stages", "memory", "--memory-cycles", "0")
    assert "--memory-cycles: a whole number from 1 up, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_training_script(monkeypatch, "--stages", "memory", "--memory-shot-frames", "3")
    assert "--memory-shot-frames: 0 (the whole shot) or 1 (one random frame), got 3" in capsys.readouterr().err


def test_training_script_refuses_a_base_it_cannot_start_from(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    refusals = {
        ("--stages", "base", "--init", str(empty)): f"--init: no base.safetensors in {empty} (make one with",
        ("--stages", "lora", "--init", str(TOY_WEIGHTS)): "--init: starts the base or memory stage; with --stages lora",
        ("--stages", "lora", "--weights", str(empty)): f"--weights: no base.safetensors in {empty} (make one with",
        ("--stages", "memory", "--weights", str(empty)): f"--weights: no base.safetensors in {empty} (make one with",
        ("--stages", "memory,lora", "--init", str(empty)): f"--init: no base.safetensors in {empty} (make one with",
    }
    for args, message in refusals.items():
        with pytest.raises(SystemExit) as exit_info:
            run_training_script(monkeypatch, "--out", str(tmp_path / "work"), *args)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [empty] and not list(empty.iterdir())  # refused before writing anything


def test_training_script_continues_a_base_from_init(tmp_path, monkeypatch):
    """--init DIR: the base stage starts from DIR's weights (at learning rate 0 it keeps them),
    not from random ones."""
    from safetensors.torch import load_file

    shipped = load_file(str(TOY_WEIGHTS / "base.safetensors"))
    small = ["--out", str(tmp_path / "work"), "--stages", "base", "--mixed-precision", "no",
             "--base-steps", "2", "--base-batch", "2", "--base-lr", "0"]  # fmt: skip
    run_training_script(monkeypatch, *small, "--init", str(TOY_WEIGHTS), "--weights", str(tmp_path / "kept"))
    run_training_script(monkeypatch, *small, "--weights", str(tmp_path / "random"))
    kept, random = (load_file(str(tmp_path / name / "base.safetensors")) for name in ("kept", "random"))
    assert kept.keys() == shipped.keys() == random.keys()
    weight = "transformer.blocks.0.attn1.to_q.weight"
    assert all(torch.allclose(kept[k], shipped[k], atol=1e-6) for k in shipped)
    assert not torch.allclose(random[weight], shipped[weight], atol=1e-2)


def test_memory_stage_is_the_chained_init_runs_and_resumes(tmp_path, monkeypatch):
    """--stages memory = one --init base run per cycle at the memory settings, with seeds 100, 101,
    102, 200 (the measured run); a rerun reads the saved cycles back and trains only what is missing."""
    from safetensors.torch import load_file

    from storymem.toyworld import recipe

    small = ["--mixed-precision", "no", "--base-batch", "2"]
    memory = ["--memory-cycles", "4", "--memory-steps", "2", "--memory-lr", "5e-4", "--memory-p", "0.8"]
    run_training_script(monkeypatch, *small, *memory, "--stages", "memory", "--init", str(TOY_WEIGHTS),
                        "--out", str(tmp_path / "work"), "--weights", str(tmp_path / "staged"))  # fmt: skip
    start = TOY_WEIGHTS
    for seed in (100, 101, 102, 200):
        run_training_script(monkeypatch, *small, "--stages", "base", "--init", str(start), "--seed", str(seed),
                            "--base-steps", "2", "--base-lr", "5e-4", "--p-memory", "0.8",
                            "--out", str(tmp_path / f"w{seed}"), "--weights", str(tmp_path / f"by-hand{seed}"))  # fmt: skip
        start = tmp_path / f"by-hand{seed}"
    staged, by_hand = (load_file(str(tmp_path / name / "base.safetensors")) for name in ("staged", "by-hand200"))
    shipped = load_file(str(TOY_WEIGHTS / "base.safetensors"))
    weight = "transformer.blocks.0.attn1.to_q.weight"
    assert all(torch.allclose(staged[k], by_hand[k], atol=1e-6) for k in by_hand)
    assert not torch.allclose(staged[weight], shipped[weight], atol=1e-5)  # it did train

    trained = []
    real_train_base = recipe.train_base
    monkeypatch.setattr(
        recipe,
        "train_base",
        lambda pipe, config, *a, **k: trained.append(config.seed) or real_train_base(pipe, config, *a, **k),
    )
    again = ["--stages", "memory", "--init", str(TOY_WEIGHTS), "--out", str(tmp_path / "work")]
    run_training_script(
        monkeypatch, *small, *memory, *again, "--weights", str(tmp_path / "resumed"), "--lora-steps", "7"
    )
    assert trained == []  # every cycle read back (LoRA settings do not matter to them)
    (tmp_path / "work" / "memory" / "cycle-3" / "settings.json").unlink()  # as if stopped during cycle 3
    run_training_script(monkeypatch, *small, *memory, *again, "--weights", str(tmp_path / "resumed"))
    assert trained == [200]
    resumed = load_file(str(tmp_path / "resumed" / "base.safetensors"))
    assert all(torch.allclose(resumed[k], staged[k], atol=1e-6) for k in staged)
    run_training_script(
        monkeypatch, *small, *memory, *again, "--weights", str(tmp_path / "other"), "--memory-lr", "1e-3"
    )
    assert trained == [200, 100, 101, 102, 200]  # other settings: trained afresh, not read back


def test_main_command_runs_the_example_on_the_toy_model(tmp_path):
    """The README's main command, as a user types it: no model named, no network."""
    example = REPO / "examples" / "toy-tam.json"
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "storymem.cli", "generate", str(example), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    state = json.loads((out / "state.json").read_text())
    assert state["settings"]["model"] == "toy" and state["finished"]
    from storymem.toyworld.identity import identity_metrics
    from storymem.video import read_video

    story = json.loads(example.read_text())
    prompts = [p for scene in story["scenes"] for p in scene["video_prompts"]]
    videos = [read_video(out / "shots" / f"{name}.mp4") for name in state["completed"]]
    cuts = [cut for scene in story["scenes"] for cut in scene["cut"]]
    assert [len(v) for v in videos] == [5 if cut else 4 for cut in cuts]  # MI2V shots drop the given frame
    assert np.asarray(videos[0]).shape[1:] == (32, 32, 3)
    assert (out / "storyboard.png").is_file() and (out / "story.mp4").is_file()
    # the shots are pictures of the prompted places, not noise: a good part of every frame is
    # within reach of its place's two colours (for random noise almost none is)
    from storymem.toyworld.identity import foreground
    from storymem.toyworld.stories import parse_caption

    for prompt, video in zip(prompts, videos, strict=True):
        assert np.mean([(~foreground(f, parse_caption(prompt).place)).mean() for f in video]) > 0.3
    # memory carries the introduced look (a purple striped square) into the later shots
    # (measured: intro right, colour in 5 of 5 later shots, the whole look in 3 of 5; without
    # memory, about 1 in 36 by chance)
    identity = identity_metrics(prompts, videos)
    assert identity["identity_intro"] == 1.0
    assert identity["identity_colour"] >= 0.8 and identity["identity"] >= 0.4
