"""Speed and memory of the real model on one GPU, with random weights at full size (no download).

Builds Wan2.2-A14B experts from the preset's configuration (the memory-aware transformer's
defaults, 14.3 B parameters each), UMT5-XXL and the Wan VAE with random weights, then measures:

    forward  one expert's forward vs memory frames M (0, 1, 3, 5, 10); attention backends; the
             StoryMem LoRA unmerged vs merged; regional compilation; each memory mode's forward
             time and peak memory (resident, fp8, group-offload)
    shot     whole shots through StoryMemPipeline.generate_shot at a few steps, with the time
             that is not denoising, on cards of 80, 48 and 24 GB (smaller ones emulated with
             torch.cuda.set_per_process_memory_fraction), plus a preview shot (4 steps, no CFG)

and projects a 10-shot story at full quality (40 steps, CFG) and in preview (4 steps). Each run
writes its figures as JSON (--out) and prints a table; --report merges the JSON of several runs
(e.g. one per section, to fit a time limit) and prints the one table.

    python benchmarks/real_size.py --sections forward --out forward.json        # on a GPU
    python benchmarks/real_size.py --sections shot --out shot.json
    python benchmarks/real_size.py --report forward.json shot.json             # anywhere
    python benchmarks/real_size.py --scale tiny --device cpu --out /tmp/t.json  # a smoke test

On a machine without CUDA (and no --device cpu) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch

MEMORY_LENGTHS = (0, 1, 3, 5, 10)
GIB = 2**30
FULL_STEPS, PREVIEW_STEPS = 40, 4
# Memory frames of a 10-shot story's shots: the first shot is text-to-video (none), then the
# bank grows by a few keyframes per shot up to its capacity of 10.
STORY_MEMORY = (0, 3, 6, 9, 10, 10, 10, 10, 10, 10)
CARDS_GIB = (80, 48, 24)


# ---------------------------------------------------------------------------- scales
class Scale:
    """Model configurations and the shot size: `real` (Wan2.2-A14B, 480x832x81) or `tiny`."""

    def __init__(self, name: str):
        from diffusers import AutoencoderKLWan
        from transformers import UMT5Config

        from storymem.models.tiny import TEXT_DIM, tiny_transformer_config

        self.name = name
        if name == "real":
            self.expert = dict(in_channels=36)  # the class defaults are Wan2.2-A14B's
            self.text = UMT5Config(  # google/umt5-xxl, Wan's text encoder
                vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                relative_attention_num_buckets=32, relative_attention_max_distance=128,
                feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True,
            )  # fmt: skip
            self.vae = AutoencoderKLWan  # defaults: the Wan2.1 VAE that Wan2.2-A14B uses
            self.vae_kwargs = {}
            self.height, self.width, self.frames, self.text_len, self.text_dim = 480, 832, 81, 512, 4096
            self.dtype = torch.bfloat16
        else:
            self.expert = tiny_transformer_config(36)
            self.text = UMT5Config(
                vocab_size=64, d_model=TEXT_DIM, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                relative_attention_num_buckets=8,
            )  # fmt: skip
            self.vae = AutoencoderKLWan
            self.vae_kwargs = dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
            self.height, self.width, self.frames, self.text_len, self.text_dim = 32, 32, 13, 32, TEXT_DIM
            self.dtype = torch.float32
        self.latent_frames = (self.frames - 1) // 4 + 1
        self.latent_hw = (self.height // 8, self.width // 8)


def random_module(build, device, dtype, seed: int) -> torch.nn.Module:
    """A module built on the meta device, allocated on `device` in `dtype` and filled with random
    numbers there (seconds for 14 B parameters on a GPU; no float32 copy is ever made)."""
    with torch.device("meta"):
        module = build()
    # As from_pretrained(torch_dtype=dtype): a few small modules stay float32 (diffusers' list).
    keep = getattr(module, "_keep_in_fp32_modules", None) or []
    for name, sub in module.named_modules():
        target = torch.float32 if any(k in name.split(".") for k in keep) else dtype
        for key, p in sub.named_parameters(recurse=False):
            setattr(sub, key, torch.nn.Parameter(p.to(target), requires_grad=False))
    module = module.to_empty(device=device)
    generator = torch.Generator(device).manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.02, generator=generator)
    if hasattr(module, "rope"):  # the RoPE tables are buffers computed at construction
        rope = module.rope
        module.rope = type(rope)(module.config.attention_head_dim, module.config.patch_size, rope.max_seq_len)
        module.rope.to(device)
    return module.eval().requires_grad_(False)


def random_expert(scale: Scale, device, seed: int):
    from storymem.models.transformer import StoryMemWanTransformer3DModel

    return random_module(lambda: StoryMemWanTransformer3DModel(**scale.expert), device, scale.dtype, seed)


# ---------------------------------------------------------------------------- timing helpers
def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def reset_peak(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device) -> float | None:
    return torch.cuda.max_memory_allocated() / GIB if torch.device(device).type == "cuda" else None


def free(device) -> None:
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def timed(fn, device, repeats: int, warmup: int = 1) -> dict:
    """Median wall time of `fn` after `warmup` calls (GPU synchronised), the first call's time
    (compilation shows there), and the peak memory of the timed calls."""
    first = None
    for i in range(warmup):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        if i == 0:
            first = time.perf_counter() - t0
    reset_peak(device)
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return {"s": statistics.median(times), "first_s": first, "peak_gib": peak_gib(device), "runs": times}


def random_lora(model, rank: int, device, dtype) -> dict[str, torch.Tensor]:
    from storymem.models import lora as lora_io

    g = torch.Generator(device).manual_seed(8)
    weights = {}
    for name, layer in lora_io.target_layers(model).items():
        weights[f"{name}.lora_A.weight"] = torch.randn(rank, layer.in_features, generator=g, device=device, dtype=dtype)
        weights[f"{name}.lora_B.weight"] = torch.randn(
            layer.out_features, rank, generator=g, device=device, dtype=dtype
        )
    return weights


def forward_inputs(scale: Scale, memory: int, device):
    g = torch.Generator("cpu").manual_seed(memory)
    shape = (1, scale.expert.get("in_channels", 36), memory + scale.latent_frames, *scale.latent_hw)
    x = torch.randn(shape, generator=g).to(device, scale.dtype)
    text = torch.randn(1, scale.text_len, scale.text_dim, generator=g).to(device, scale.dtype)
    return x, torch.tensor([500.0], device=device), text


def forward_fn(model, scale: Scale, memory: int, device):
    x, t, text = forward_inputs(scale, memory, device)
    extra = {"num_memory_frames": memory} if memory else {}

    def run():
        with torch.inference_mode():
            model(x, t, text, return_dict=False, **extra)

    return run


# ---------------------------------------------------------------------------- section: forward
def bench_forward(scale: Scale, device, repeats: int, save) -> dict:
    from storymem import acceleration
    from storymem.models import lora as lora_io

    out: dict = {"eager": {}, "attention": {}, "lora": {}, "compiled": {}, "modes": {}}
    longest = max(MEMORY_LENGTHS)
    model = random_expert(scale, device, seed=1)
    out["expert_gib"] = acceleration.module_gib(model)
    out["expert_params_b"] = sum(p.numel() for p in model.parameters()) / 1e9
    for m in MEMORY_LENGTHS:
        out["eager"][m] = timed(forward_fn(model, scale, m, device), device, repeats)
        print(f"eager M={m}: {out['eager'][m]['s']:.3f}s", flush=True)
    save(out)

    backends = ["native", "_native_cudnn", "_native_efficient"] if torch.device(device).type == "cuda" else ["native"]
    for backend in backends:
        try:
            model.set_attention_backend(backend)
            out["attention"][backend] = timed(forward_fn(model, scale, longest, device), device, repeats)
        except Exception as e:  # a backend this torch build lacks: say so in the table
            out["attention"][backend] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"}
        print(f"attention {backend}: {out['attention'][backend]}", flush=True)
    model.set_attention_backend("native")
    save(out)

    # StoryMem's LoRA (rank 128, rsLoRA, every attention and FFN linear layer) through the same
    # loader as the released files.
    lora_io.load_expert_lora(model, random_lora(model, 128, device, scale.dtype), "random")
    out["lora"]["unmerged"] = timed(forward_fn(model, scale, longest, device), device, repeats)
    sync(device)
    t0 = time.perf_counter()
    acceleration.activate_adapters(model, [lora_io.ADAPTER_NAME], fuse=True)
    sync(device)
    out["lora"]["merge_s"] = time.perf_counter() - t0
    out["lora"]["merged"] = timed(forward_fn(model, scale, longest, device), device, repeats)
    print(f"lora: {out['lora']}", flush=True)
    model.unfuse_lora()
    model.delete_adapters(lora_io.ADAPTER_NAME)
    save(out)

    if torch.device(device).type == "cuda":  # inductor on a CPU is minutes of C++ for nothing to learn
        acceleration.compile_model(model)
        for m in (0, longest, 5):  # the third new length shows whether dynamo went dynamic
            out["compiled"][m] = timed(forward_fn(model, scale, m, device), device, repeats)
            print(f"compiled M={m}: {out['compiled'][m]['s']:.3f}s (first {out['compiled'][m]['first_s']:.1f}s)")
            save(out)
    del model
    free(device)

    out["modes"]["resident"] = {k: out["eager"][k] for k in (0, longest)}
    fp8 = random_expert(scale, device, seed=2)
    acceleration.Placement("fp8", torch.device(device)).prepare_expert(fp8)
    out["modes"]["fp8"] = {m: timed(forward_fn(fp8, scale, m, device), device, repeats) for m in (0, longest)}
    print(f"fp8: {out['modes']['fp8'][longest]['s']:.3f}s", flush=True)
    del fp8
    free(device)
    save(out)

    streamed = random_expert(scale, device, seed=3).to("cpu")
    free(device)
    t0 = time.perf_counter()
    acceleration.Placement("group-offload", torch.device(device)).prepare_expert(streamed)
    out["group_offload_setup_s"] = time.perf_counter() - t0
    out["modes"]["group-offload"] = {
        m: timed(forward_fn(streamed, scale, m, device), device, repeats) for m in (0, longest)
    }
    print(f"group-offload: {out['modes']['group-offload'][longest]['s']:.3f}s", flush=True)
    del streamed
    free(device)
    save(out)
    return out


# ---------------------------------------------------------------------------- section: shot
def random_images(n: int, scale: Scale, seed: int) -> list[PIL.Image.Image]:
    rng = np.random.default_rng(seed)
    return [PIL.Image.fromarray(rng.integers(0, 256, (scale.height, scale.width, 3), dtype=np.uint8)) for _ in range(n)]


def build_pipeline(scale: Scale, experts, text_encoder, vae):
    from storymem.models.tiny import tiny_tokenizer
    from storymem.pipelines import StoryMemPipeline
    from storymem.sampling import flow_scheduler

    # The tokenizer only turns text into ids; a character-level one costs the same downstream.
    pipe = StoryMemPipeline(
        tokenizer=tiny_tokenizer(), text_encoder=text_encoder, vae=vae, scheduler=flow_scheduler(),
        transformer=experts[0], transformer_2=experts[1], preset="wan2.2-a14b" if scale.name == "real" else "tiny",
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_shot(pipe, scale: Scale, embeds: dict, steps: int, seed: int, guidance: float | None = None) -> dict:
    """One M=10 memory shot (fresh keyframes: no cached latents) and where its time went."""
    device = pipe._execution_device
    memory = random_images(10, scale, seed)
    prompt = next(iter(embeds))
    reset_peak(device)
    sync(device)
    t0 = time.perf_counter()
    output = pipe.generate_shot(
        prompt, memory, [], seed=seed, num_inference_steps=steps, num_frames=scale.frames, height=scale.height,
        width=scale.width, prompt_embeds=embeds[prompt], negative_prompt_embeds=embeds.get(pipe.preset.negative_prompt),
        guidance_scale=guidance, guidance_scale_2=guidance, return_dict=True,
    )  # fmt: skip
    sync(device)
    total = time.perf_counter() - t0
    return {"steps": steps, "total_s": total, **output.timings, "peak_gib": peak_gib(device), "frames": output.frames}


def keyframe_selection_s(frames, device) -> float:
    """CLIP ViT-B/32 (random) over a shot's frames: the per-shot cost of keyframe selection."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from storymem.scoring import ClipImageEmbedder

    config = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                              image_size=224, patch_size=32, projection_dim=512)  # fmt: skip
    embedder = ClipImageEmbedder(CLIPVisionModelWithProjection(config).to(device))
    embedder.embed(frames[:2])
    sync(device)
    t0 = time.perf_counter()
    embedder.embed(frames)
    sync(device)
    return time.perf_counter() - t0


def summarise_shot(shot: dict) -> dict:
    shot = dict(shot)
    shot.pop("frames", None)
    return shot


def bench_shot(scale: Scale, device, save) -> dict:
    from transformers import UMT5EncoderModel

    from storymem import acceleration

    cuda = torch.device(device).type == "cuda"
    out: dict = {"cards": {}}
    total_gib = torch.cuda.get_device_properties(0).total_memory / GIB if cuda else None
    prompts = [f"shot {i}: a fox walks through the forest at dawn" for i in range(10)]

    # Built on the device (fast random fill), then where a fresh load would leave them: the CPU.
    text_encoder = random_module(lambda: UMT5EncoderModel(scale.text), device, scale.dtype, seed=4).to("cpu")
    vae = random_module(lambda: scale.vae(**scale.vae_kwargs), device, torch.float32, seed=5).to("cpu")
    free(device)
    experts = [random_expert(scale, device, seed=s) for s in (6, 7)]
    expert_gib = acceleration.module_gib(experts[0])

    # 80 GB: whatever auto picks on the whole card (resident on an H100).
    pipe = build_pipeline(scale, experts, text_encoder, vae)
    mode = pipe.enable_memory_mode("auto", device)
    t0 = time.perf_counter()
    embeds = pipe.encode_story_prompts(prompts)
    out["encode_story_s"] = time.perf_counter() - t0
    run_shot(pipe, scale, embeds, steps=1, seed=0)  # warm-up: kernels, allocator
    shot = run_shot(pipe, scale, embeds, steps=2, seed=1)
    out["keyframe_selection_s"] = keyframe_selection_s(shot["frames"], device)
    preview = run_shot(pipe, scale, embeds, steps=PREVIEW_STEPS, seed=2, guidance=1.0)
    out["cards"][80] = {"mode": mode, "auto": mode, "shot": summarise_shot(shot), "preview": summarise_shot(preview)}
    print(f"80 GB ({mode}): {out['cards'][80]['shot']}", flush=True)
    save(out)
    del pipe
    free(device)

    # 48 GB: fp8 storage (auto's choice for that card; see the "auto" column).
    pipe = build_pipeline(scale, experts, text_encoder, vae)
    pipe.enable_memory_mode("fp8", device)
    limit = emulate_card(48, total_gib) if cuda else contextlib.nullcontext()
    with limit:
        shot = run_shot(pipe, scale, embeds, steps=2, seed=3)
    auto = acceleration.choose_memory_mode(48 - 0.5, expert_gib)
    out["cards"][48] = {"mode": "fp8", "auto": auto, "shot": summarise_shot(shot)}
    print(f"48 GB (fp8): {out['cards'][48]['shot']}", flush=True)
    save(out)
    del pipe, experts
    free(device)

    # 24 GB: fresh bf16 experts on the CPU; auto decides under the emulated card's limit.
    experts = [random_expert(scale, device, seed=s).to("cpu") for s in (6, 7)]
    free(device)
    pipe = build_pipeline(scale, experts, text_encoder, vae)
    limit = emulate_card(24, total_gib) if cuda else contextlib.nullcontext()
    with limit:
        t0 = time.perf_counter()
        mode = pipe.enable_memory_mode("auto" if cuda else "group-offload", device)
        setup = time.perf_counter() - t0
        embeds = pipe.encode_story_prompts(prompts)
        run_shot(pipe, scale, embeds, steps=1, seed=4)
        shot = run_shot(pipe, scale, embeds, steps=2, seed=5)
    out["cards"][24] = {"mode": mode, "auto": mode, "setup_s": setup, "shot": summarise_shot(shot)}
    print(f"24 GB ({mode}): {out['cards'][24]['shot']}", flush=True)
    save(out)
    return out


@contextlib.contextmanager
def emulate_card(card_gib: float, total_gib: float):
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(min(1.0, card_gib / total_gib))
    try:
        yield
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


# ---------------------------------------------------------------------------- report
def forward_at(table: dict, memory: float) -> float:
    """Forward time at `memory` frames, linear between the measured lengths."""
    points = sorted((int(k), v["s"]) for k, v in table.items())
    xs, ys = zip(*points, strict=True)
    return float(np.interp(memory, xs, ys))


def shot_overhead_s(shot: dict, keyframe_s: float) -> float:
    return shot["encode_s"] + shot["place_s"] + shot["decode_s"] + keyframe_s


def project_story(forward: dict, shot: dict, steps: int, cfg: bool, table: str, story_encode_s: float) -> float:
    """A 10-shot story: per shot, steps x (1 or 2) forwards at its memory length plus the shot's
    measured non-denoising time; the story's prompts are encoded once."""
    overhead = shot_overhead_s(shot["shot"], shot["keyframe_selection_s"])
    denoise = sum(steps * (2 if cfg else 1) * forward_at(forward[table], m) for m in STORY_MEMORY)
    return story_encode_s + len(STORY_MEMORY) * overhead + denoise


def report(results: dict) -> str:
    fw, sh = results.get("forward"), results.get("shot")
    lines = [f"device: {results.get('device')}; scale: {results.get('scale')}; {results.get('versions')}", ""]
    row = lines.append
    if fw:
        longest = str(max(MEMORY_LENGTHS))
        row(f"one expert: {fw['expert_params_b']:.2f} B parameters, {fw['expert_gib']:.1f} GiB")
        row("| measurement | M | time (s) | peak GPU (GiB) | note |")
        row("|---|---|---|---|---|")
        for m, v in fw["eager"].items():
            row(f"| forward, eager | {m} | {v['s']:.3f} | {_gib(v)} | |")
        for m, v in fw.get("compiled", {}).items():
            row(f"| forward, compiled | {m} | {v['s']:.3f} | {_gib(v)} | first call {v['first_s']:.1f} s |")
        for name, v in fw.get("attention", {}).items():
            row(
                f"| attention {name} | {longest} | {v['s']:.3f} | {_gib(v)} | |"
                if "s" in v
                else f"| attention {name} | {longest} | - | - | {v['error']} |"
            )
        if fw.get("lora"):
            lo = fw["lora"]
            row(f"| LoRA r128 unmerged | {longest} | {lo['unmerged']['s']:.3f} | {_gib(lo['unmerged'])} | |")
            row(
                f"| LoRA r128 merged | {longest} | {lo['merged']['s']:.3f} | {_gib(lo['merged'])} | merging took {lo['merge_s']:.2f} s |"
            )
        for mode, by_m in fw.get("modes", {}).items():
            for m, v in by_m.items():
                row(f"| mode {mode} | {m} | {v['s']:.3f} | {_gib(v)} | |")
        eager = fw["eager"]
        ratios = [f"M=10/M=0 eager {eager[longest]['s'] / eager['0']['s']:.2f}"]
        if longest in fw.get("compiled", {}):
            ratios.append(f"compiled {fw['compiled'][longest]['s'] / fw['compiled']['0']['s']:.2f}")
        modes = fw.get("modes", {})
        if "group-offload" in modes:
            ratios.append(f"group-offload / resident {modes['group-offload'][longest]['s'] / eager[longest]['s']:.2f}")
        row("")
        row("ratios: " + "; ".join(ratios))
    if sh:
        row("")
        row(
            "| card | mode (auto picks) | shot at 2 steps (s) | denoise | encode | place | decode | peak GPU (GiB) | non-denoising share of a 40-step shot |"
        )
        row("|---|---|---|---|---|---|---|---|---|")
        for card, c in sh["cards"].items():
            s = c["shot"]
            overhead = shot_overhead_s(s, sh["keyframe_selection_s"])
            full = overhead + FULL_STEPS / s["steps"] * s["denoise_s"]
            row(
                f"| {card} GB | {c['mode']} ({c['auto']}) | {s['total_s']:.1f} | {s['denoise_s']:.1f} | {s['encode_s']:.2f} | "
                f"{s['place_s']:.2f} | {s['decode_s']:.2f} | {_gib(s)} | {100 * overhead / full:.1f}% |"
            )
        p = sh["cards"]["80"]["preview"]
        row("")
        row(
            f"preview shot (4 steps, guidance 1, M=10) on 80 GB: {p['total_s']:.1f} s; story prompts encoded once: "
            f"{sh['encode_story_s']:.1f} s; keyframe selection (CLIP B/32, {sh.get('frames', '')} frames): {sh['keyframe_selection_s']:.2f} s"
        )
    if fw and sh:
        card = {**sh["cards"]["80"], "keyframe_selection_s": sh["keyframe_selection_s"]}
        full = project_story(fw, card, FULL_STEPS, True, "eager", sh["encode_story_s"])
        preview = project_story(fw, card, PREVIEW_STEPS, False, "eager", sh["encode_story_s"])
        parts = [f"full quality {full / 60:.1f} min", f"preview {preview / 60:.1f} min"]
        if len(fw.get("compiled", {})) >= 2:
            best = project_story(fw, card, FULL_STEPS, True, "compiled", sh["encode_story_s"])
            best_preview = project_story(fw, card, PREVIEW_STEPS, False, "compiled", sh["encode_story_s"])
            parts += [f"compiled: full {best / 60:.1f} min, preview {best_preview / 60:.1f} min"]
        row("")
        row(f"projected 10-shot story (memory {list(STORY_MEMORY)}), 80 GB card: " + "; ".join(parts))
        row("(the T2V experts' load from disk for the first shot is not included: it depends on the disk)")
    return "\n".join(lines)


def _gib(v: dict) -> str:
    return "-" if v.get("peak_gib") is None else f"{v['peak_gib']:.1f}"


def jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="forward,shot", help="forward, shot or both (comma-separated)")
    parser.add_argument("--scale", choices=("real", "tiny"), default="real")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the figures here (JSON), after every step")
    parser.add_argument("--report", type=Path, nargs="+", help="merge these JSON results and print the table")
    args = parser.parse_args()

    if args.report:
        merged: dict = {}
        for file in args.report:
            merged.update({k: v for k, v in json.loads(file.read_text()).items() if v is not None})
        print(report(merged))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "no CUDA device here: the real-size benchmark needs a GPU (try --scale tiny --device cpu); nothing measured"
        )
        return 0

    import diffusers
    import transformers

    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    results: dict = {
        "device": name,
        "scale": args.scale,
        "versions": f"torch {torch.__version__}, diffusers {diffusers.__version__}, transformers {transformers.__version__}",
    }
    scale = Scale(args.scale)

    def save(section: str):
        def write(part):
            results[section] = part
            if args.out:
                args.out.write_text(json.dumps(jsonable(results), indent=1))

        return write

    sections = args.sections.split(",")
    if "forward" in sections:
        bench_forward(scale, args.device, args.repeats, save("forward"))
    if "shot" in sections:
        part = bench_shot(scale, args.device, save("shot"))
        part["frames"] = scale.frames
        save("shot")(part)
    print()
    print(report(json.loads(json.dumps(jsonable(results)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
