"""Memory modes, merged LoRA, the text encoder's lifecycle, preview mode, speed options (tiny, CPU)."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import run_story
from storymem import InputError, LoraError, StoryMemPipeline, parse_story
from storymem.acceleration import choose_memory_mode, is_fused, module_gib
from storymem.models.lora import DIFFUSERS_TO_WAN, target_layers
from storymem.models.preview import PREVIEW_ADAPTER, find_preview_files
from storymem.models.transformer import StoryMemWanTransformer3DModel
from test_lora import write_lora

MEMORY = [np.full((32, 32, 3), 200, np.uint8), np.full((32, 32, 3), 40, np.uint8)]


def tiny(lora_dir=None, **kw):
    pipe = StoryMemPipeline.from_preset("tiny", **kw)
    pipe.set_progress_bar_config(disable=True)
    if lora_dir is not None:
        write_lora(lora_dir, pipe)
        pipe.load_storymem_lora(lora_dir)
    return pipe


def shot(pipe, **kw):
    return pipe.generate_shot("a fox", memory=MEMORY, seed=3, output_type="latent", **kw)


# ---------------------------------------------------------------------------- mode choice
def real_expert_gib():
    with torch.device("meta"):  # Wan2.2 I2V-A14B's config (the class defaults), no memory
        expert = StoryMemWanTransformer3DModel(in_channels=36)
    return module_gib(expert.to(torch.bfloat16))


@pytest.mark.parametrize(
    ("card_gib", "mode"),
    [(15.5, "group-offload"), (23.5, "group-offload"), (39.0, "fp8"), (47.5, "fp8"), (79.0, "resident")],
)
def test_auto_mode_is_a_function_of_free_memory(card_gib, mode):
    """16 and 24 GB cards stream the experts, 40-48 GB cards keep them in fp8, 80 GB in bf16."""
    expert = real_expert_gib()
    assert 26 < expert < 27.5  # 14B parameters in bf16
    assert choose_memory_mode(card_gib, expert) == mode


# ---------------------------------------------------------------------------- modes give the same shot
def test_cpu_modes_give_the_resident_frames(tmp_path):
    reference = tiny(tmp_path / "lora")
    assert reference.enable_memory_mode("auto", "cpu") == "resident"
    expected = shot(reference)
    streamed = tiny(tmp_path / "lora")
    assert streamed.enable_memory_mode("group-offload", "cpu") == "group-offload"
    torch.testing.assert_close(shot(streamed), expected, rtol=0, atol=0)
    fp8 = tiny(tmp_path / "lora")
    fp8.enable_memory_mode("fp8", "cpu")
    assert fp8.transformer.blocks[0].attn1.to_q.base_layer.weight.dtype == torch.float8_e4m3fn
    assert not is_fused(fp8.transformer)  # the LoRA stays beside fp8 weights, in full precision
    close = shot(fp8)
    # fp8 storage rounds each weight to 3 mantissa bits: near, not equal.
    assert 0 < (close - expected).abs().max() < 0.25 * expected.abs().max()


def test_cuda_only_mode_and_unknown_mode_are_one_line():
    pipe = tiny()
    with pytest.raises(InputError, match="^--memory-mode model-offload needs a CUDA GPU; on cpu use resident"):
        pipe.enable_memory_mode("model-offload", "cpu")
    with pytest.raises(InputError, match="^--memory-mode must be one of auto, resident, fp8, group-offload"):
        pipe.enable_memory_mode("sequential", "cpu")
    pipe.enable_memory_mode("resident", "cpu")
    with pytest.raises(InputError, match="set once per pipeline"):
        pipe.enable_memory_mode("fp8", "cpu")


# ---------------------------------------------------------------------------- merged LoRA
def test_merged_lora_equals_unmerged_and_chain_runs_without_it(tmp_path):
    unmerged = tiny(tmp_path / "lora")
    expected = shot(unmerged)
    merged = tiny(tmp_path / "lora")
    merged.enable_memory_mode("resident", "cpu")
    assert is_fused(merged.transformer) and is_fused(merged.transformer_2)
    # float32 weights: W + s BA merged differs from W x + s B(A x) only by summation order.
    torch.testing.assert_close(shot(merged), expected, rtol=1e-4, atol=1e-4)

    plain = shot(tiny())
    with merged.lora_disabled():
        assert not is_fused(merged.transformer)
        torch.testing.assert_close(shot(merged), plain, rtol=1e-4, atol=1e-4)
        with merged.lora_disabled():  # nested: no change
            pass
        assert not is_fused(merged.transformer)
    assert is_fused(merged.transformer)
    torch.testing.assert_close(shot(merged), expected, rtol=1e-4, atol=1e-4)


def test_chain_story_with_a_merged_lora(tmp_path):
    pipe = tiny(tmp_path / "lora")
    pipe.enable_memory_mode("resident", "cpu")
    story = parse_story(
        {
            "story_overview": "x",
            "scenes": [{"scene_num": 1, "video_prompts": ["a fox", "a fox runs"], "cut": [True, False]}],
        }
    )
    result = run_story(pipe, story, tmp_path / "run", method="chain", progress=False)
    assert result.generated == 2
    assert is_fused(pipe.transformer)  # merged again after the baseline


# ---------------------------------------------------------------------------- text encoder lifecycle
def test_story_prompts_are_encoded_once_then_the_text_encoder_stays_off(tmp_path):
    pipe = tiny(tmp_path / "lora")
    pipe.enable_memory_mode("resident", "cpu")
    events = []
    encoder = pipe.text_encoder
    original_to, original_forward = encoder.to, encoder.forward

    def logged_to(*args, **kwargs):
        events.append("encoder.to")
        return original_to(*args, **kwargs)

    def logged_forward(*args, **kwargs):
        events.append("encode")
        return original_forward(*args, **kwargs)

    encoder.to, encoder.forward = logged_to, logged_forward
    for expert in (pipe.transformer, pipe.transformer_2, pipe.t2v_transformer, pipe.t2v_transformer_2):
        expert.register_forward_pre_hook(lambda *_: events.append("denoise") if events[-1] != "denoise" else None)
    prompts = ["a fox", "a fox runs", "a fox sleeps"]
    story = parse_story(
        {"story_overview": "x", "scenes": [{"scene_num": 1, "video_prompts": prompts, "cut": [True] * 3}]}
    )
    run_story(pipe, story, tmp_path / "run", progress=False)
    # one batch for the whole story (3 prompts + negative), on the device only meanwhile
    assert events[:3] == ["encoder.to", "encode", "encoder.to"]
    assert set(events[3:]) == {"denoise"}


# ---------------------------------------------------------------------------- preview mode
def distilled_lora(transformer, seed, rank=2, alpha=1.0):
    """A random LoRA in the Lightning / LightX2V files' key format (Wan module names)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, layer in target_layers(transformer).items():
        block, module = name.split(".", 2)[1], name.split(".", 2)[2]
        key = f"diffusion_model.blocks.{block}.{DIFFUSERS_TO_WAN[module]}"
        out[f"{key}.lora_down.weight"] = torch.randn(rank, layer.in_features, generator=g) * 0.3
        out[f"{key}.lora_up.weight"] = torch.randn(layer.out_features, rank, generator=g) * 0.3
        out[f"{key}.alpha"] = torch.tensor(alpha)
    return out


def write_preview(folder, pipe, t2v=True):
    i2v = folder / "Wan2.2-I2V-A14B-4steps-lora-rank64-Seko-V1"
    i2v.mkdir(parents=True)
    save_file(distilled_lora(pipe.transformer, 5), str(i2v / "high_noise_model.safetensors"))
    save_file(distilled_lora(pipe.transformer_2, 6), str(i2v / "low_noise_model.safetensors"))
    if t2v:
        name = "Wan2.2-T2V-A14B-4steps-lora-rank64-Seko-V1.1"
        (folder / name).mkdir()
        save_file(distilled_lora(pipe.t2v_transformer, 7), str(folder / name / "high_noise_model.safetensors"))
        save_file(distilled_lora(pipe.t2v_transformer_2, 8), str(folder / name / "low_noise_model.safetensors"))
    return folder


def count_forwards(pipe):
    calls = []
    for expert in pipe.loaded_experts():
        expert.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls


def test_preview_lora_loads_beside_storymem_and_takes_steps_forwards(tmp_path):
    pipe = tiny(tmp_path / "lora")
    write_preview(tmp_path / "preview", pipe)
    pipe.load_preview_lora(tmp_path / "preview")
    for expert in (pipe.transformer, pipe.transformer_2):
        assert set(expert.peft_config) == {"storymem", PREVIEW_ADAPTER}
        assert set(expert.active_adapters()) == {"storymem", PREVIEW_ADAPTER}
    assert set(pipe.t2v_transformer.peft_config) == {PREVIEW_ADAPTER}

    # the converted preview LoRA adds exactly (alpha / rank) * up @ down on a layer
    weights = distilled_lora(pipe.transformer, 5)
    layer = pipe.transformer.blocks[1].attn2.to_v
    x = torch.randn(3, layer.in_features)
    with torch.no_grad():
        pipe.transformer.set_adapters([PREVIEW_ADAPTER])
        delta = layer(x) - layer.base_layer(x)
        pipe.transformer.set_adapters(["storymem", PREVIEW_ADAPTER])
    down, up = (
        weights["diffusion_model.blocks.1.cross_attn.v.lora_down.weight"],
        weights["diffusion_model.blocks.1.cross_attn.v.lora_up.weight"],
    )
    torch.testing.assert_close(delta, 0.5 * x @ down.T @ up.T, rtol=1e-4, atol=1e-5)

    calls = count_forwards(pipe)
    shot(pipe)  # M2V: 4 steps, guidance 1 -> no CFG branch
    assert len(calls) == 4
    calls.clear()
    pipe.generate_shot("a fox", seed=0, output_type="latent")  # T2V with the T2V pair
    assert len(calls) == 4


def test_preview_without_t2v_pair_samples_the_first_shot_at_full_quality(tmp_path):
    pipe = tiny()
    write_preview(tmp_path / "preview", pipe, t2v=False)
    pipe.load_preview_lora(tmp_path / "preview")
    calls = count_forwards(pipe)
    pipe.generate_shot("a fox", seed=0, output_type="latent")
    assert len(calls) == 2 * pipe.preset.t2v.steps  # the preset's T2V sampler, with CFG


def test_merged_preview_equals_unmerged(tmp_path):
    unmerged = tiny(tmp_path / "lora")
    write_preview(tmp_path / "preview", unmerged, t2v=False)
    unmerged.load_preview_lora(tmp_path / "preview")
    merged = tiny(tmp_path / "lora", preview=tmp_path / "preview")
    merged.enable_memory_mode("resident", "cpu")
    assert is_fused(merged.transformer)
    torch.testing.assert_close(shot(merged), shot(unmerged), rtol=1e-4, atol=1e-4)


def test_bad_preview_folders_are_one_line(tmp_path):
    with pytest.raises(LoraError, match="no such folder"):
        find_preview_files(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoraError, match="no I2V high and low-noise LoRA file"):
        find_preview_files(tmp_path / "empty")
    pipe = tiny()
    folder = write_preview(tmp_path / "preview", pipe, t2v=False)
    (folder / "Wan2.2-T2V-A14B").mkdir()
    save_file({"x": torch.zeros(1)}, str(folder / "Wan2.2-T2V-A14B" / "high.safetensors"))
    with pytest.raises(LoraError, match="found only one T2V file"):
        find_preview_files(folder)
    (folder / "Wan2.2-T2V-A14B" / "high.safetensors").unlink()
    foreign = folder / "Wan2.2-I2V-A14B-4steps-lora-rank64-Seko-V1" / "high_noise_model.safetensors"
    save_file({"something.else": torch.zeros(2, 2)}, str(foreign))
    with pytest.raises(LoraError, match="cannot load it as a Wan2.2 distilled LoRA"):
        pipe.load_preview_lora(folder)
    toy = StoryMemPipeline.from_preset("toy")
    with pytest.raises(InputError, match="the toy preset has no preview mode"):
        toy.load_preview_lora(folder)


# ---------------------------------------------------------------------------- speed options
def test_attention_backend_errors_are_one_line():
    pipe = tiny()
    with pytest.raises(InputError, match="^--attention must be one of .*flash.*got 'fastest'$"):
        pipe.enable_memory_mode("resident", "cpu", attention="fastest")
    with pytest.raises(InputError, match="^--attention flash needs a CUDA GPU; on cpu use one of native"):
        tiny().enable_memory_mode("resident", "cpu", attention="flash")
    pipe = tiny()
    pipe.enable_memory_mode("resident", "cpu", attention="_native_math")
    assert shot(pipe).isfinite().all()


def test_compile_compiles_every_experts_blocks(monkeypatch):
    import torch._dynamo

    compiled = []
    monkeypatch.setattr(
        StoryMemWanTransformer3DModel, "compile_repeated_blocks", lambda self, **kw: compiled.append((self, kw))
    )
    monkeypatch.setattr(
        "diffusers.WanTransformer3DModel.compile_repeated_blocks", lambda self, **kw: compiled.append((self, kw))
    )
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 8)
    pipe = tiny()
    pipe.enable_memory_mode("resident", "cpu", compile=True)
    assert [m for m, _ in compiled] == pipe.loaded_experts()
    assert all(kw == {"fullgraph": True} for _, kw in compiled)
    assert torch._dynamo.config.recompile_limit >= 64  # memory lengths 0..10 x experts recompile
