"""The real user's path with real-format weights: the tiny model saved as diffusers folders and
loaded through the `wan2.2-a14b` preset, from Python and from the CLI."""

import json
import subprocess
import sys
import types

import pytest
import torch

from conftest import run_story
from storymem import InputError, LoraError, StoryMemPipeline, WeightsNotFoundError, parse_story
from storymem.hub import snapshot
from test_lora import write_lora

STORY = {
    "story_overview": "a fox in a forest",
    "scenes": [{"scene_num": 1, "video_prompts": ["a fox wakes", "a fox runs", "a fox sleeps"], "cut": [True] * 3}],
}
SMALL = ["--height", "32", "--width", "32", "--frames", "5", "--steps", "2", "--quality", "none"]


def stock(expert):
    """The same weights in diffusers' own class, as the published folders hold them."""
    from diffusers import WanTransformer3DModel

    config = {k: v for k, v in expert.config.items() if not k.startswith("_") and k != "memory_rope_shift"}
    model = WanTransformer3DModel(**config)
    model.load_state_dict(expert.state_dict())
    return model


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """I2V and T2V pipelines in the `save_pretrained` layout, a StoryMem LoRA and a CLIP folder."""
    from diffusers import WanImageToVideoPipeline, WanPipeline

    from storymem.models.tiny import build_tiny_components
    from storymem.scoring import ClipImageEmbedder

    root = tmp_path_factory.mktemp("weights")
    parts = build_tiny_components()
    shared = {k: parts[k] for k in ("tokenizer", "text_encoder", "vae", "scheduler")}
    i2v = WanImageToVideoPipeline(
        **shared, transformer=stock(parts["transformer"]), transformer_2=stock(parts["transformer_2"])
    )
    i2v.save_pretrained(root / "i2v")
    t2v = WanPipeline(**shared, transformer=parts["t2v_transformer"], transformer_2=parts["t2v_transformer_2"])
    t2v.save_pretrained(root / "t2v")
    write_lora(root / "lora", types.SimpleNamespace(**parts))
    ClipImageEmbedder.tiny().model.save_pretrained(root / "clip")
    return types.SimpleNamespace(root=root, parts=parts)


def real(folders, **kw):
    pipe = StoryMemPipeline.from_preset(
        "wan2.2-a14b",
        i2v=str(folders.root / "i2v"),
        t2v=str(folders.root / "t2v"),
        lora=str(folders.root / "lora"),
        torch_dtype=torch.float32,
        **kw,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_saved_folders_load_the_same_weights(folders):
    pipe = real(folders)
    assert pipe.t2v_transformer is None and pipe.t2v_loader is not None  # loaded when a shot needs them
    for name in ("transformer", "transformer_2"):
        loaded = getattr(pipe, name).state_dict()
        for key, value in folders.parts[name].state_dict().items():
            base = key.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
            torch.testing.assert_close(loaded.get(key, loaded.get(base)), value, rtol=0, atol=0)


def test_t2v_experts_are_loaded_for_the_first_shot_and_freed_after(folders, tmp_path, monkeypatch):
    pipe = real(folders)
    pipe.enable_memory_mode("auto", "cpu")
    loads = []
    loader = pipe.t2v_loader
    pipe.t2v_loader = lambda: loads.append(1) or loader()
    seen = []
    original = pipe.generate_shot

    def generate_shot(*args, **kw):
        seen.append(pipe.t2v_transformer is not None)
        return original(*args, **kw)

    monkeypatch.setattr(pipe, "generate_shot", generate_shot)
    result = run_story(pipe, parse_story(STORY), tmp_path / "run", height=32, width=32, frames=5, steps=2, quality="none",
        keyframe_clip=str(folders.root / "clip"), progress=False,
    )  # fmt: skip
    assert result.generated == 3 and len(loads) == 1
    assert seen == [False, False, False]  # before each shot: loaded only inside the first
    assert pipe.t2v_transformer is None and pipe.t2v_transformer_2 is None
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["settings"]["keyframe_clip"] == str(folders.root / "clip")
    assert [s["mode"] for s in state["shots"].values()] == ["t2v", "m2v", "m2v"]
    assert set(next(iter(state["shots"].values()))["timings"]) == {"encode_s", "place_s", "denoise_s", "decode_s"}


def run_cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "storymem.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def test_cli_generates_a_story_from_real_format_folders(folders, tmp_path):
    story = tmp_path / "story.json"
    story.write_text(json.dumps(STORY))
    out = tmp_path / "run"
    w = folders.root
    result = run_cli(
        "generate", story, "--out", out, "--model", "wan2.2-a14b", "--i2v", w / "i2v", "--t2v", w / "t2v",
        "--lora", w / "lora", "--keyframe-clip", w / "clip", *SMALL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "memory mode: resident (auto)" in result.stderr
    assert (out / "story.mp4").is_file() and (out / "storyboard.png").is_file()
    state = json.loads((out / "state.json").read_text())
    assert state["finished"] and state["settings"]["model"] == "wan2.2-a14b"
    assert {s["memory_mode"] for s in state["shots"].values()} == {"resident"}


def test_cli_bad_weight_folders_are_one_line(folders, tmp_path, cli):
    story = tmp_path / "story.json"
    story.write_text(json.dumps(STORY))
    w = folders.root
    base = ["generate", story, "--out", tmp_path / "run", "--model", "wan2.2-a14b", "--lora", w / "lora", *SMALL]
    cases = {
        "missing": (["--i2v", tmp_path / "nowhere"], "weights not found: no folder"),
        "foreign": (["--i2v", w / "clip"], "is not a diffusers-format folder (no model_index.json)"),
        "swapped": (
            ["--i2v", w / "t2v", "--t2v", w / "i2v"],
            "holds a WanPipeline pipeline (that is the --t2v folder)",
        ),
        "toy": (["--model", "toy", "--i2v", w / "i2v"], "the toy preset is built in"),
        "mode": (["--i2v", w / "i2v", "--t2v", w / "t2v", "--memory-mode", "model-offload"], "needs a CUDA GPU"),
        "attention": (["--i2v", w / "i2v", "--attention", "sage"], "--attention sage needs a CUDA GPU"),
        "preview": (["--i2v", w / "i2v", "--t2v", w / "t2v", "--preview", tmp_path / "lightning"], "no such folder"),
        "grid": (["--i2v", w / "i2v", "--t2v", w / "t2v", "--sigma-grid", "wan"], "sigma grid must be one of"),
    }
    for name, (extra, message) in cases.items():
        code, _, err = cli(*base, *extra)
        lines = err.strip().splitlines()
        assert code == 1, name
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (name, err)
        assert not (tmp_path / "run").exists(), name  # nothing written before the weights are found


def test_hub_ids_fail_at_once_offline_and_without_network(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from storymem import hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(WeightsNotFoundError, match="HF_HUB_OFFLINE is set; download them with: hf download"):
        StoryMemPipeline.from_preset("wan2.2-a14b", i2v="someone/Wan2.2-I2V-A14B-Diffusers")
    # online but unreachable: one probe, no download attempt (which would retry for tens of seconds)
    monkeypatch.setattr(hub, "offline", lambda: False)
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    downloads = []
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda *a, **kw: downloads.append(kw) or 1 / 0)
    with pytest.raises(WeightsNotFoundError, match="the hub cannot be reached"):
        snapshot("someone/weights", "weights", "hint")
    with pytest.raises(LoraError, match="StoryMem LoRA someone/lora not found: .* cannot be reached"):
        StoryMemPipeline.from_preset("tiny", lora="someone/lora")
    assert all(kw.get("local_files_only") for kw in downloads)  # only cache lookups


def test_python_preview_setting_follows_the_pipeline(folders, tmp_path):
    pipe = real(folders)
    with pytest.raises(InputError, match="preview='/x' but the pipeline's preview LoRAs are from None"):
        run_story(pipe, parse_story(STORY), tmp_path / "run", preview="/x", progress=False)
