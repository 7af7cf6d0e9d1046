"""Reproduce the built-in `toy` model's weights (src/storymem/models/toy_weights/).

    python scripts/train_toy_model.py                      # the shipped recipe (~40 min on 2 CPU cores)
    python scripts/train_toy_model.py --out /tmp/toy --weights /tmp/toy/weights --base-steps 50 --lora-steps 20

Stage 1 trains the base I2V network on single toy clips; stage 2 trains the StoryMem M2V LoRA on
grouped clips with `storymem.train`. Uses a CUDA GPU when there is one. Check the result with
`python benchmarks/toy_benchmark.py` (the README's numbers).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import fields
from pathlib import Path

import torch

from storymem.models.presets import TOY_WEIGHTS
from storymem.toyworld.recipe import RecipeConfig, make_toy_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="toy-training", help="work folder (loss histories, datasets, checkpoints)")
    parser.add_argument("--weights", default=str(TOY_WEIGHTS), help="where the weights go (default: the package's)")
    for f in fields(RecipeConfig):
        if f.name != "out":
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    args = parser.parse_args()
    config = RecipeConfig(**{f.name: getattr(args, f.name) for f in fields(RecipeConfig)})
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.time()
    losses = make_toy_model(config, Path(args.weights))
    base, lora = losses["base"], losses["lora"]
    print(
        f"done in {(time.time() - start) / 60:.1f} min; base loss {sum(base[:50]) / 50:.3f} -> {sum(base[-50:]) / 50:.3f}, "
        f"M2V LoRA loss {sum(lora[:50]) / 50:.3f} -> {sum(lora[-50:]) / 50:.3f}; weights in {args.weights}"
    )


if __name__ == "__main__":
    main()
