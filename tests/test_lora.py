import dataclasses
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from storymem import LoraError
from storymem.models.lora import DIFFUSERS_TO_WAN, target_layers

RANK = 4


def official_lora(transformer, seed, rank=RANK, prefix="base_model.model."):
    """Random weights in the released format for every target layer of one expert."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, layer in target_layers(transformer).items():
        block, module = name.split(".", 2)[1], name.split(".", 2)[2]
        key = f"{prefix}blocks.{block}.{DIFFUSERS_TO_WAN[module]}"
        out[f"{key}.lora_A.weight"] = torch.randn(rank, layer.in_features, generator=g)
        out[f"{key}.lora_B.weight"] = torch.randn(layer.out_features, rank, generator=g)
    return out


def write_lora(folder, pipe, **kw):
    folder.mkdir(parents=True, exist_ok=True)
    high, low = official_lora(pipe.transformer, 1, **kw), official_lora(pipe.transformer_2, 2, **kw)
    save_file(high, str(folder / "backbone_high_noise.safetensors"))
    save_file(low, str(folder / "backbone_low_noise.safetensors"))
    return high, low


def check_rslora_delta(expert, weights, scale, prefix="base_model.model."):
    checked = 0
    for name, base in target_layers(expert).items():
        wrapped = expert.get_submodule(name)
        block, module = name.split(".", 2)[1], name.split(".", 2)[2]
        key = f"{prefix}blocks.{block}.{DIFFUSERS_TO_WAN[module]}"
        a, b = weights[f"{key}.lora_A.weight"], weights[f"{key}.lora_B.weight"]
        x = torch.randn(3, base.in_features)
        with torch.no_grad():
            delta = wrapped(x) - base(x)
        torch.testing.assert_close(delta, scale * x @ a.T @ b.T, rtol=1e-4, atol=1e-4)
        checked += 1
    return checked


def test_official_lora_adds_exactly_sqrt_r_times_BA_on_every_target(tiny_pipe, tmp_path):
    high, low = write_lora(tmp_path / "lora", tiny_pipe)
    tiny_pipe.load_storymem_lora(tmp_path / "lora", variant="mi2v")
    scale = math.sqrt(RANK)  # alpha defaults to r: alpha / sqrt(r) = sqrt(r)
    n_high = check_rslora_delta(tiny_pipe.transformer, high, scale)
    n_low = check_rslora_delta(tiny_pipe.transformer_2, low, scale)
    # 2 blocks x (4 self-attn + 4 cross-attn + 2 ffn) per expert
    assert n_high == n_low == 20
    assert tiny_pipe.lora_variant == "mi2v"


def test_explicit_alpha_sets_the_scale(tiny_pipe, tmp_path):
    high, _ = write_lora(tmp_path / "lora", tiny_pipe)
    tiny_pipe.load_storymem_lora(tmp_path / "lora", alpha=1.0)
    check_rslora_delta(tiny_pipe.transformer, high, 1.0 / math.sqrt(RANK))


def test_released_repo_layout_and_comfy_prefix(tiny_pipe, tmp_path):
    # The hub repo holds one folder per variant; keys with `diffusion_model.` work too.
    high, _ = write_lora(tmp_path / "StoryMem" / "Wan2.2-MM2V-A14B", tiny_pipe, prefix="diffusion_model.")
    tiny_pipe.preset = dataclasses.replace(tiny_pipe.preset, lora_subfolders={"mm2v": "Wan2.2-MM2V-A14B"})
    tiny_pipe.load_storymem_lora(tmp_path / "StoryMem", variant="mm2v")
    check_rslora_delta(tiny_pipe.transformer, high, math.sqrt(RANK), prefix="diffusion_model.")
    assert tiny_pipe.lora_variant == "mm2v"


def test_save_load_round_trip_in_official_format(tiny_pipe, tmp_path):
    high, low = write_lora(tmp_path / "in", tiny_pipe)
    tiny_pipe.load_storymem_lora(tmp_path / "in")
    written = tiny_pipe.save_storymem_lora(tmp_path / "out")
    assert sorted(p.name for p in written) == ["backbone_high_noise.safetensors", "backbone_low_noise.safetensors"]
    for name, original in (("high", high), ("low", low)):
        saved = load_file(str(tmp_path / "out" / f"backbone_{name}_noise.safetensors"))
        assert saved.keys() == original.keys()
        assert all(saved[k].dtype == torch.float32 and torch.equal(saved[k], original[k]) for k in original)
    from storymem import StoryMemPipeline

    fresh = StoryMemPipeline.from_preset("tiny")
    fresh.load_storymem_lora(tmp_path / "out")
    check_rslora_delta(fresh.transformer_2, low, math.sqrt(RANK))


def test_loading_twice_replaces_the_adapter(tiny_pipe, tmp_path):
    write_lora(tmp_path / "a", tiny_pipe)
    tiny_pipe.load_storymem_lora(tmp_path / "a")
    high_b = official_lora(tiny_pipe.transformer, 9)
    (tmp_path / "b").mkdir()
    save_file(high_b, str(tmp_path / "b" / "backbone_high_noise.safetensors"))
    tiny_pipe.load_storymem_lora(tmp_path / "b" / "backbone_high_noise.safetensors")
    check_rslora_delta(tiny_pipe.transformer, high_b, math.sqrt(RANK))


def test_lora_changes_generation(tiny_pipe, tmp_path):
    memory = [np.full((32, 32, 3), 200, np.uint8)]
    before = tiny_pipe.generate_shot("a fox", memory=memory, seed=0, output_type="np")
    write_lora(tmp_path / "lora", tiny_pipe)
    tiny_pipe.load_storymem_lora(tmp_path / "lora")
    after = tiny_pipe.generate_shot("a fox", memory=memory, seed=0, output_type="np")
    assert np.abs(before - after).max() > 0.05


def test_lora_disabled_gives_the_plain_experts_back(tiny_pipe, tmp_path):
    memory = [np.full((32, 32, 3), 200, np.uint8)]
    plain = tiny_pipe.generate_shot("a fox", memory=memory, seed=0, output_type="latent")
    write_lora(tmp_path / "lora", tiny_pipe)
    tiny_pipe.load_storymem_lora(tmp_path / "lora")
    with tiny_pipe.lora_disabled():
        off = tiny_pipe.generate_shot("a fox", memory=memory, seed=0, output_type="latent")
    on = tiny_pipe.generate_shot("a fox", memory=memory, seed=0, output_type="latent")
    torch.testing.assert_close(off, plain)
    assert (on - plain).abs().max() > 0.05  # and the adapters are back on after the block


def _one_file(tmp_path, weights, name="backbone_high_noise.safetensors"):
    path = tmp_path / name
    save_file(weights, str(path))
    return path


def test_missing_key_is_named(tiny_pipe, tmp_path):
    weights = official_lora(tiny_pipe.transformer, 1)
    del weights["base_model.model.blocks.1.cross_attn.v.lora_A.weight"]
    del weights["base_model.model.blocks.1.cross_attn.v.lora_B.weight"]
    path = _one_file(tmp_path, weights)
    with pytest.raises(
        LoraError,
        match=r"missing keys \(2\): blocks\.1\.attn2\.to_v\.lora_A\.weight, blocks\.1\.attn2\.to_v\.lora_B\.weight",
    ):
        tiny_pipe.load_storymem_lora(path)
    # A deliberate subset loads with strict=False; an unpaired A/B never does.
    tiny_pipe.load_storymem_lora(path, strict=False)
    del weights["base_model.model.blocks.0.ffn.0.lora_B.weight"]
    with pytest.raises(LoraError, match=r"missing keys \(1\): blocks\.0\.ffn\.net\.0\.proj\.lora_B\.weight"):
        tiny_pipe.load_storymem_lora(_one_file(tmp_path, weights), strict=False)


def test_unexpected_key_is_named(tiny_pipe, tmp_path):
    weights = official_lora(tiny_pipe.transformer, 1)
    weights["base_model.model.blocks.7.self_attn.q.lora_A.weight"] = torch.zeros(RANK, 24)
    with pytest.raises(
        LoraError, match=r"unexpected keys \(the model has no such layer\): blocks\.7\.attn1\.to_q\.lora_A\.weight"
    ):
        tiny_pipe.load_storymem_lora(_one_file(tmp_path, weights))
    weights = official_lora(tiny_pipe.transformer, 1)
    weights["base_model.model.blocks.0.self_attn.norm_q.lora_A.weight"] = torch.zeros(RANK, 24)
    with pytest.raises(
        LoraError, match=r"not StoryMem LoRA layers: base_model\.model\.blocks\.0\.self_attn\.norm_q\.lora_A\.weight"
    ):
        tiny_pipe.load_storymem_lora(_one_file(tmp_path, weights))


def test_wrong_shape_is_named(tiny_pipe, tmp_path):
    weights = official_lora(tiny_pipe.transformer, 1)
    weights["base_model.model.blocks.0.ffn.2.lora_A.weight"] = torch.zeros(RANK, 99)
    with pytest.raises(
        LoraError,
        match=r"shapes do not fit the model: blocks\.0\.ffn\.net\.2 \(A \(4, 99\), B \(24, 4\); layer is 32 -> 24\)",
    ):
        tiny_pipe.load_storymem_lora(_one_file(tmp_path, weights))


def test_bad_sources(tiny_pipe, tmp_path):
    with pytest.raises(LoraError, match="LoRA path not found"):
        tiny_pipe.load_storymem_lora(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoraError, match="no backbone_high_noise.safetensors"):
        tiny_pipe.load_storymem_lora(tmp_path / "empty")
    write_lora(tmp_path / "half", tiny_pipe)
    (tmp_path / "half" / "backbone_low_noise.safetensors").unlink()
    with pytest.raises(LoraError, match="missing backbone_low_noise.safetensors"):
        tiny_pipe.load_storymem_lora(tmp_path / "half")
    (tmp_path / "weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(LoraError, match="cannot tell which expert"):
        tiny_pipe.load_storymem_lora(tmp_path / "weights.safetensors")
    (tmp_path / "backbone_low_noise.safetensors").write_bytes(b"garbage")
    with pytest.raises(LoraError, match="cannot read it as LoRA weights"):
        tiny_pipe.load_storymem_lora(tmp_path / "backbone_low_noise.safetensors")
    with pytest.raises(Exception, match="variant must be 'mi2v' or 'mm2v'"):
        tiny_pipe.load_storymem_lora(tmp_path, variant="m2v")
