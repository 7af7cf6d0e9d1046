"""Reproduce the built-in `toy` model's weights (src/storymem/models/toy_weights/).

    python scripts/train_toy_model.py                      # the shipped recipe (38 min on 2 CPU cores with fast bf16)
    python scripts/train_toy_model.py --out /tmp/toy --weights /tmp/toy/weights --base-steps 50 --lora-steps 20
    python scripts/train_toy_model.py --stages base,memory,lora --weights DIR  # with the memory stage
    python scripts/train_toy_model.py --stages memory --init DIR --weights DIR2  # continue a base

Stage base trains the base I2V network on single toy clips; stage memory (not run by default)
continues it on memory examples, in `--memory-cycles` warm restarts of `--memory-steps` (saved
after each, so an interrupted run resumes); stage lora trains the StoryMem M2V LoRA on grouped
clips with `storymem.train`. All use a CUDA GPU when there is one; `--stages` picks them (e.g. the
base on a GPU machine, the LoRA where ffmpeg is). On a CPU without
fast bf16 pass `--mixed-precision no`: bf16 autocast was 13x slower than float32 on this
project's 2-core machine (torch 2.13). Check the result with
`python benchmarks/toy_benchmark.py` (the README's numbers).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import fields
from pathlib import Path

import torch

from storymem.toyworld.model import BASE_FILE, TOY_WEIGHTS
from storymem.toyworld.recipe import STAGES, RecipeConfig, make_toy_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="toy-training", help="work folder (loss histories, datasets, checkpoints)")
    parser.add_argument("--weights", default=str(TOY_WEIGHTS), help="where the weights go (default: the package's)")
    choices = {"clip_format": ("mp4", "tif"), "mixed_precision": ("no", "bf16")}  # checked before any training
    for f in fields(RecipeConfig):
        if f.name != "out":
            option = f"--{f.name.replace('_', '-')}"
            parser.add_argument(option, type=type(f.default), default=f.default, choices=choices.get(f.name))
    parser.add_argument(
        "--stages",
        default="base,lora",
        help="comma-separated, from base, memory, lora; without base, training starts from --init or the base in --weights",
    )
    args = parser.parse_args()
    stages = tuple(s.strip() for s in args.stages.split(","))
    if not stages or set(stages) - set(STAGES):
        parser.error(f"--stages: expected some of base, memory, lora (e.g. base,lora), got {args.stages!r}")
    for name in ("p_look_caption", "p_look_given", "p_memory", "memory_p"):
        if not 0 <= getattr(args, name) <= 1:
            parser.error(f"--{name.replace('_', '-')}: a probability from 0 to 1, got {getattr(args, name)}")
    for name in ("base_steps", "base_batch", "memory_cycles", "memory_steps", "lora_steps", "lora_batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: a whole number from 1 up, got {getattr(args, name)}")
    if args.memory_shot_frames not in (0, 1):
        parser.error(f"--memory-shot-frames: 0 (the whole shot) or 1 (one random frame), got {args.memory_shot_frames}")
    if args.init and set(stages) == {"lora"}:
        parser.error(
            "--init: starts the base or memory stage; with --stages lora the LoRA trains on the base in --weights"
        )
    starts_from_weights = "base" not in stages and not args.init
    for option, folder in (("--init", args.init), ("--weights", args.weights if starts_from_weights else "")):
        if folder and not (Path(folder) / BASE_FILE).is_file():
            parser.error(f"{option}: no {BASE_FILE} in {folder} (make one with --stages base)")
    config = RecipeConfig(**{f.name: getattr(args, f.name) for f in fields(RecipeConfig)})
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.time()
    losses = make_toy_model(config, Path(args.weights), stages=stages)
    summary = [
        f"{label} loss {sum(values[:50]) / len(values[:50]):.3f} -> {sum(values[-50:]) / len(values[-50:]):.3f}"
        for label, values in (("base", losses["base"]), ("memory", losses["memory"]), ("M2V LoRA", losses["lora"]))
        if values
    ]
    print(f"done in {(time.time() - start) / 60:.1f} min; {', '.join(summary)}; weights in {args.weights}")


if __name__ == "__main__":
    main()
