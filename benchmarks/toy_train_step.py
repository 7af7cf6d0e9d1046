"""Where a toy base-training step's time goes (the README's "Half the batch" paragraph).

    python benchmarks/toy_train_step.py            # batch 8, as the recipe
    python benchmarks/toy_train_step.py --batch 4
    python benchmarks/toy_train_step.py --compile  # the transformer blocks through torch.compile

Times making the batch (rendering clips, encoding them and their captions) against the
transformer's forward, backward and optimiser step, and splits the step with torch.profiler.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.profiler import profile

from storymem.conditioning import model_input
from storymem.pipelines import StoryMemPipeline
from storymem.toyworld.model import build_toy_components
from storymem.toyworld.recipe import RecipeConfig, base_batch
from storymem.train.trainer import sample_sigmas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="compile each transformer block (torch.compile)")
    args = parser.parse_args()
    pipe = StoryMemPipeline(**build_toy_components(), preset="toy")
    config, rng, generator = RecipeConfig(out=""), np.random.default_rng(0), torch.Generator().manual_seed(0)
    frames, model = pipe.preset.num_frames, pipe.transformer.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    if args.compile:  # the blocks only: torch.compile of the whole model stops in a dynamo assertion
        for block in model.blocks:
            block.compile()

    def make_batch():
        with torch.no_grad():
            return base_batch(pipe, rng, args.batch, frames, config)

    def step(x0, condition, text):
        noise = torch.randn(x0.shape, generator=generator)
        sigma = sample_sigmas(len(x0), "high", pipe.preset.m2v.shift, 0.0, generator).view(-1, 1, 1, 1, 1)
        prediction = model(model_input((1 - sigma) * x0 + sigma * noise, condition), sigma.flatten() * 1000, text,
                           return_dict=False)[0]  # fmt: skip
        torch.nn.functional.mse_loss(prediction, noise - x0).backward()
        optimizer.step()
        optimizer.zero_grad()

    batches = [make_batch() for _ in range(args.steps + 1)]
    step(*batches[0])  # warm-up
    start = time.perf_counter()
    batches = [make_batch() for _ in range(args.steps)]
    data = time.perf_counter() - start
    with profile() as prof:
        start = time.perf_counter()
        for batch in batches:
            step(*batch)
        compute = time.perf_counter() - start
    ops = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(ops.values())
    matmul = sum(v for k, v in ops.items() if k in ("aten::mm", "aten::addmm", "aten::bmm"))
    attention = sum(v for k, v in ops.items() if "scaled_dot_product" in k)
    print(f"batch {args.batch}{', compiled' if args.compile else ''}: making a batch {1000 * data / args.steps:.0f} ms, a step {1000 * compute / args.steps:.0f} ms "
          f"(data {100 * data / (data + compute):.0f}% of both)")  # fmt: skip
    print(
        f"of the step's operator time: matrix products {100 * matmul / total:.0f}%, attention {100 * attention / total:.0f}%"
    )


if __name__ == "__main__":
    main()
