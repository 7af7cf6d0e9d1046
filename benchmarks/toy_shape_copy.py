"""Does the toy model copy a look from memory? A fast probe of the limit the toy benchmark hits.

Each example is one look (the three shapes in turn; colour and pattern at random) and one target
scene (place, action, framing). The character's look is read back (the identity metric's reader)
from three generations of the target shot:
    text          T2V, the caption spells the look out (drawing a look from text)
    memory-same   M2V, the caption names the character only; memory = 3 frames of the target
                  scene itself (copying at the same place and size)
    memory-other  the same, with memory from another place, action and framing

    python benchmarks/toy_shape_copy.py                    # the shipped weights, 60 examples
    python benchmarks/toy_shape_copy.py --weights DIR      # weights from scripts/train_toy_model.py
    python benchmarks/toy_shape_copy.py --no-lora          # memory read by the base model alone
    python benchmarks/toy_shape_copy.py --guidance 2       # another guidance scale (the preset's: 3)

Prints the share of examples whose shape, colour, pattern and whole look are right, per
condition, and the shape confusion; writes them to --out as JSON.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from storymem.files import write_json
from storymem.pipelines import StoryMemPipeline
from storymem.toyworld import ACTIONS, COLOURS, PATTERNS, PLACES, SHAPES, SHOTS, Look, ToyShot, render_clip, video_look
from storymem.toyworld.model import toy_options

CONDITIONS = ("text", "memory-same", "memory-other")
ATTRIBUTES = ("shape", "colour", "pattern")
MEMORY_FRAMES = (0, 2, 4)  # of a 5-frame clip: first, middle, last


def examples(count: int, seed: int) -> list[tuple[Look, ToyShot, ToyShot]]:
    """(look, target scene, another scene): shapes in turn; the other scene differs from the
    target in place, action and framing."""
    rng = np.random.default_rng(seed)
    places, out = list(PLACES), []
    for i in range(count):
        look = Look(SHAPES[i % len(SHAPES)], list(COLOURS)[rng.integers(len(COLOURS))], PATTERNS[rng.integers(2)])
        place, action, shot = rng.integers(len(places)), rng.integers(len(ACTIONS)), rng.integers(len(SHOTS))
        target = ToyShot("Pip", ACTIONS[action], places[place], SHOTS[shot])
        shift = rng.integers(1, len(places))
        other = ToyShot(
            "Pip", ACTIONS[(action + 1 + rng.integers(len(ACTIONS) - 1)) % len(ACTIONS)],
            places[(place + shift) % len(places)], SHOTS[1 - shot],
        )  # fmt: skip
        out.append((look, target, other))
    return out


def summarise(records: list[dict]) -> dict:
    """records: {"condition", "truth": Look, "found": Look | None} -> per condition: the share
    right per attribute and for the whole look, and the shape confusion ("truth->found": n)."""
    summary = {}
    for condition in CONDITIONS:
        rows = [r for r in records if r["condition"] == condition]
        if not rows:
            continue
        right = {
            a: [r["found"] is not None and getattr(r["found"], a) == getattr(r["truth"], a) for r in rows]
            for a in ATTRIBUTES
        }
        confusion = Counter(f"{r['truth'].shape}->{r['found'].shape if r['found'] else 'none'}" for r in rows)
        summary[condition] = {
            "examples": len(rows),
            **{a: float(np.mean(v)) for a, v in right.items()},
            "look": float(np.mean([r["found"] == r["truth"] for r in rows])),
            "shape_confusion": dict(sorted(confusion.items())),
        }
    return summary


def generate(
    pipe, look: Look, target: ToyShot, other: ToyShot, seed: int, guidance: float | None = None
) -> dict[str, np.ndarray]:
    frames = pipe.preset.num_frames

    def memory(scene: ToyShot) -> list[Image.Image]:
        clip = render_clip(look, scene.place, scene.action, scene.shot, frames=frames)
        return [Image.fromarray(clip[k]) for k in MEMORY_FRAMES]

    def shot(prompt: str, memory_frames) -> np.ndarray:
        video = pipe.generate_shot(prompt, memory=memory_frames, seed=seed, output_type="np", guidance_scale=guidance)
        return (np.asarray(video) * 255).round().astype(np.uint8)

    described = ToyShot(target.name, target.action, target.place, target.shot, look)
    return {
        "text": shot(described.caption(), None),
        "memory-same": shot(target.caption(), memory(target)),
        "memory-other": shot(target.caption(), memory(other)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("toy-shape-copy.json"))
    parser.add_argument("--count", type=int, default=60, help="examples (a multiple of 3 keeps the shapes even)")
    parser.add_argument("--weights", type=Path, default=None, help="toy weights folder (default: the package's)")
    parser.add_argument("--no-lora", action="store_true", help="no M2V LoRA even where the weights folder has one")
    parser.add_argument("--seed", type=int, default=0, help="examples and generation seed")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance (default: the preset's)")
    args = parser.parse_args()
    if args.count < 1:
        parser.error(f"--count: expected at least 1, got {args.count}")
    if args.guidance is not None and args.guidance <= 0:
        parser.error(f"--guidance: a scale above 0 (1 is no guidance), got {args.guidance}")

    pipe = StoryMemPipeline.from_options(toy_options(args.weights, lora=not args.no_lora))
    pipe.set_progress_bar_config(disable=True)
    records, start = [], time.perf_counter()
    for i, (look, target, other) in enumerate(tqdm(examples(args.count, args.seed), desc="examples")):
        for condition, video in generate(pipe, look, target, other, args.seed + i, args.guidance).items():
            records.append({"condition": condition, "truth": look, "found": video_look(video, target.place)})
    summary = summarise(records)
    result = {
        "weights": str(args.weights or "shipped"),
        "lora": pipe.lora_variant is not None,
        "guidance": args.guidance,
    }
    write_json(args.out, result | {"summary": summary})

    print(f"{args.count} examples in {time.perf_counter() - start:.0f}s; weights: {args.weights or 'shipped'}"
          f"{'' if pipe.lora_variant else ' (no LoRA)'}{f', guidance {args.guidance}' if args.guidance else ''}")  # fmt: skip
    print(f"{'condition':14s} " + " ".join(f"{c:>8s}" for c in (*ATTRIBUTES, "look")))
    for condition, row in summary.items():
        print(f"{condition:14s} " + " ".join(f"{row[c]:8.3f}" for c in (*ATTRIBUTES, "look")))
        print(f"{'':14s} shapes: {', '.join(f'{k} {v}' for k, v in row['shape_confusion'].items())}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
