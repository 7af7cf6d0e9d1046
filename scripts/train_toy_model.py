"""Reproduce the built-in `toy` model's weights (src/storymem/toyworld/weights/).

    python scripts/train_toy_model.py --weights DIR        # the shipped recipe: base, then the memory stage
    python scripts/train_toy_model.py --out /tmp/toy --weights /tmp/toy/weights --base-steps 50 --memory-steps 20
    python scripts/train_toy_model.py --stages memory --init DIR --weights DIR2  # continue a base
    python scripts/train_toy_model.py --stages lora --weights DIR                # an M2V LoRA on a base

The shipped recipe (no --stages) runs two stages, in float32:
- base: the I2V network from random weights on single toy clips, 10000 steps of 8 clips;
- memory: the same network continued on memory examples (the look must come from frames of the
  same look in other scenes), 6 cycles of 2000 steps, each with a fresh optimiser and schedule.
Expected time: about 2.3 h on a 2-core CPU (base 52 min, memory stage 84 min, measured alone on
this project's machine); about 30 min on one GPU (13 base steps/s on an H100). Resumable: the
base stage saves a checkpoint every --checkpoint-every steps and the memory stage each cycle, so
the same command again continues an interrupted run. Each stage shows a progress bar.

The toy ships without an M2V LoRA: on the memory-trained base the recipe's LoRA lowered identity
(docs/notes/toy-experiments.md). `--stages base,memory,lora` also trains one (17 min more), which
`storymem generate --model toy --weights DIR` then loads from DIR/lora. All stages use a CUDA GPU
when there is one. bf16 autocast (`--mixed-precision bf16`) is for GPUs: it was 13x slower than
float32 on this project's 2-core CPU (torch 2.13). Without --weights the weights go into the
package. Check the result with `python benchmarks/toy_benchmark.py --weights DIR --no-lora`.
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
        default="base,memory",
        help="comma-separated, from base, memory, lora; without base, training starts from --init or the base in --weights",
    )
    args = parser.parse_args()
    stages = tuple(s.strip() for s in args.stages.split(","))
    if not stages or set(stages) - set(STAGES):
        parser.error(f"--stages: expected some of base, memory, lora (e.g. base,lora), got {args.stages!r}")
    for name in ("p_look_caption", "p_look_given", "p_memory", "memory_p"):
        if not 0 <= getattr(args, name) <= 1:
            parser.error(f"--{name.replace('_', '-')}: a probability from 0 to 1, got {getattr(args, name)}")
    for name in ("base_steps", "base_batch", "memory_cycles", "memory_steps", "lora_steps", "lora_batch", "checkpoint_every"):
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
