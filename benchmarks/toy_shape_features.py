"""Does the toy model see a character's shape at all? A linear probe of its hidden states.

benchmarks/toy_shape_copy.py shows that the toy model keeps colour from memory but redraws the
shape at chance. This probe asks where the shape is lost. Each example is one look (the three
shapes in turn; colour, pattern and scenes at random) in a shot noised to `--sigma` (high: the
shape is decided early in sampling), run through the transformer twice:
    text     no memory; the caption spells the look out
    memory   the caption names the character only; `--memory` frames show the same look in other
             scenes (another place, action or framing, as in a story's later shots)
After the patch embedding (layer 0) and after each block, the hidden states are averaged over
the tokens that show the character: in the memory frames (`memory tokens`) and where the clean
shot has it (`shot tokens`). A linear classifier trained on 70% of the examples names the shape
of the other 30%; its accuracy is printed per layer (chance is 0.33).

    python benchmarks/toy_shape_features.py                   # the shipped weights, 600 examples
    python benchmarks/toy_shape_features.py --weights DIR --no-lora
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from storymem.conditioning import model_input
from storymem.files import write_json
from storymem.pipelines import StoryMemPipeline
from storymem.toyworld import ALL_LOOKS, SHAPES, ToyShot, render_clip
from storymem.toyworld.identity import foreground
from storymem.toyworld.model import toy_options
from storymem.toyworld.recipe import random_shot, to_pixels

FEATURES = ("memory tokens", "shot tokens, text", "shot tokens, memory")


def character_tokens(frames: np.ndarray, place: str, token: int = 4) -> np.ndarray:
    """bool [F, H/token, W/token]: the token-sized squares of uint8 frames [F, H, W, 3] that hold
    any pixel of the character (the identity reader's foreground)."""
    f, h, w, _ = frames.shape
    return foreground(frames, place).reshape(f, h // token, token, w // token, token).any((2, 4))


def latent_frame_tokens(mask: np.ndarray, temporal: int = 2) -> np.ndarray:
    """[F, h, w] per video frame -> [1 + (F-1)/temporal, h, w] per latent frame: frame 0 has a
    latent frame of its own, each later one packs `temporal` frames (as the toy codec does)."""
    later = mask[1:].reshape(-1, temporal, *mask.shape[1:]).any(1)
    return np.concatenate([mask[:1], later])


def pooled(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of hidden [B, T, h, w, D] over the tokens where mask [B, T, h, w] is set -> [B, D]."""
    weight = mask.to(hidden.dtype)[..., None]
    return (hidden * weight).sum((1, 2, 3)) / weight.sum((1, 2, 3)).clamp(min=1)


def probe_accuracy(features: np.ndarray, labels: np.ndarray, seed: int = 0, train_share: float = 0.7) -> float:
    """Test accuracy of a (standardised, L2-regularised) linear classifier trained on a random
    `train_share` of the examples."""
    x = torch.as_tensor(features, dtype=torch.float32)
    y = torch.as_tensor(labels)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train, test = order[: int(len(x) * train_share)], order[int(len(x) * train_share) :]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    x = (x - mean) / std
    weight = torch.zeros(x.shape[1], int(y.max()) + 1, requires_grad=True)
    bias = torch.zeros(weight.shape[1], requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=0.01)
    for _ in range(500):
        loss = torch.nn.functional.cross_entropy(x[train] @ weight + bias, y[train]) + 1e-2 * weight.square().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return ((x[test] @ weight + bias).argmax(1) == y[test]).float().mean().item()


def _first(output):
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def layer_outputs(model):
    """Yields a dict that each forward fills with {0: the blocks' input, k: block k's output},
    as [B, tokens, D]."""
    captured: dict[int, torch.Tensor] = {}
    handles = [model.blocks[0].register_forward_pre_hook(lambda _m, args: captured.__setitem__(0, args[0]))]
    for k, block in enumerate(model.blocks, start=1):
        handles.append(block.register_forward_hook(lambda _m, _a, out, k=k: captured.__setitem__(k, _first(out))))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def examples(count: int, memory: int, frames: int, seed: int, token: int = 4):
    """(look, shot, clip, memory frames, their character masks): shapes in turn; memory frames
    are single frames of the same look in random other scenes."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        looks = [look for look in ALL_LOOKS if look.shape == SHAPES[i % len(SHAPES)]]
        look = looks[rng.integers(len(looks))]
        shot, _ = random_shot(rng, look, "Pip", describe=False)
        clip = render_clip(look, shot.place, shot.action, shot.shot, frames=frames)
        memory_frames, masks = [], []
        for _ in range(memory):
            scene, _ = random_shot(rng, look)
            frame = render_clip(look, scene.place, scene.action, scene.shot, frames=frames)[rng.integers(frames)]
            memory_frames.append(frame)
            masks.append(character_tokens(frame[None], scene.place, token)[0])
        yield look, shot, clip, memory_frames, np.stack(masks)


def on_grid(states: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Hidden states [B, tokens, D] -> [B, frames, h, w, D] (tokens run frame by frame, row by row)."""
    return states.float().reshape(states.shape[0], -1, *grid, states.shape[-1])


@torch.no_grad()
def collect(pipe, count: int, memory: int, sigma: float, seed: int, batch: int = 20):
    """(features {name: {layer: [count, D]}}, shape labels [count])."""
    model, frames = pipe.transformer, pipe.preset.num_frames
    height, width = pipe.preset.height, pipe.preset.width
    token = pipe.vae.config.scale_factor_spatial * model.config.patch_size[1]
    nothing_given = pipe.encode_video_condition([], frames, height, width)
    generator = torch.Generator().manual_seed(seed)
    features: dict[str, dict[int, list]] = {name: {} for name in FEATURES}
    labels = []
    cases = list(examples(count, memory, frames, seed, token))
    with layer_outputs(model) as captured:
        for start in tqdm(range(0, count, batch), desc="batches"):
            looks, shots, clips, memories, memory_masks = zip(*cases[start : start + batch], strict=True)
            size = len(looks)
            labels += [SHAPES.index(look.shape) for look in looks]
            x0 = pipe.vae_encode(torch.stack([to_pixels(clip) for clip in clips]))
            memory_latents = pipe.vae_encode(torch.stack([to_pixels(f[None]) for frames_ in memories for f in frames_]))
            memory_latents = memory_latents.unflatten(0, (size, memory)).squeeze(3).transpose(1, 2)
            memory_masks = torch.from_numpy(np.stack(memory_masks))
            shot_masks = torch.from_numpy(
                np.stack(
                    [
                        latent_frame_tokens(character_tokens(c, s.place, token), pipe.vae.config.scale_factor_temporal)
                        for c, s in zip(clips, shots, strict=True)
                    ]
                )
            )
            noise = torch.randn(x0.shape, generator=generator)
            noisy = (1 - sigma) * x0 + sigma * noise
            timestep = torch.full((size,), sigma * 1000)
            condition_video = nothing_given.expand(size, -1, -1, -1, -1)
            grid = x0.shape[-2] // model.config.patch_size[1], x0.shape[-1] // model.config.patch_size[2]

            described = [ToyShot(s.name, s.action, s.place, s.shot, look) for s, look in zip(shots, looks, strict=True)]
            condition = pipe.assemble_condition(None, condition_video, 0, frames)
            model(model_input(noisy, condition), timestep, pipe.encode_prompts([d.caption() for d in described]))
            for layer in captured:
                features["shot tokens, text"].setdefault(layer, []).append(
                    pooled(on_grid(captured[layer], grid), shot_masks)
                )
            condition = pipe.assemble_condition(memory_latents, condition_video, 0, frames)
            model(
                model_input(torch.cat([memory_latents, noisy], 2), condition),
                timestep,
                pipe.encode_prompts([s.caption() for s in shots]),
                num_memory_frames=memory,
            )
            for layer in captured:
                states = on_grid(captured[layer], grid)
                features["shot tokens, memory"].setdefault(layer, []).append(pooled(states[:, memory:], shot_masks))
                features["memory tokens"].setdefault(layer, []).append(pooled(states[:, :memory], memory_masks))
    stacked = {name: {k: torch.cat(v).numpy() for k, v in layers.items()} for name, layers in features.items()}
    return stacked, np.array(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("toy-shape-features.json"))
    parser.add_argument("--count", type=int, default=600, help="examples (a multiple of 3 keeps the shapes even)")
    parser.add_argument("--memory", type=int, default=3, help="memory frames per example")
    parser.add_argument("--sigma", type=float, default=0.9, help="noise level of the shot (0-1)")
    parser.add_argument("--weights", type=Path, default=None, help="toy weights folder (default: the package's)")
    parser.add_argument("--no-lora", action="store_true", help="no M2V LoRA even where the weights folder has one")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.count < 10:
        parser.error(f"--count: expected at least 10 (the probe tests on 30% of them), got {args.count}")
    if args.memory < 1:
        parser.error(f"--memory: expected at least 1, got {args.memory}")
    if not 0 < args.sigma <= 1:
        parser.error(f"--sigma: expected a noise level above 0 and at most 1, got {args.sigma}")

    pipe = StoryMemPipeline.from_options(toy_options(args.weights, lora=not args.no_lora))
    start = time.perf_counter()
    features, labels = collect(pipe, args.count, args.memory, args.sigma, args.seed)
    accuracy = {
        name: {layer: probe_accuracy(x, labels, args.seed) for layer, x in layers.items()}
        for name, layers in features.items()
    }
    write_json(
        args.out,
        {
            "weights": str(args.weights or "shipped"),
            "lora": pipe.lora_variant is not None,
            "examples": args.count,
            "memory_frames": args.memory,
            "sigma": args.sigma,
            "accuracy": {name: {str(k): v for k, v in layers.items()} for name, layers in accuracy.items()},
        },
    )
    print(
        f"{args.count} examples in {time.perf_counter() - start:.0f}s; weights: {args.weights or 'shipped'}"
        f"{'' if pipe.lora_variant else ' (no LoRA)'}; sigma {args.sigma}; {args.memory} memory frames"
    )
    print("shape named by a linear probe of the hidden states (test accuracy; chance 0.33)")
    print(f"{'layer':>5s}  " + "  ".join(f"{name:>19s}" for name in FEATURES))
    for layer in sorted(accuracy[FEATURES[0]]):
        print(f"{layer:5d}  " + "  ".join(f"{accuracy[name][layer]:19.3f}" for name in FEATURES))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
