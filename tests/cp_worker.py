"""Run under torchrun by test_context_parallel.py: one tiny shot per memory length, each split
over the ranks. Saves this rank's latents and the RoPE rows its first block received."""

import sys

import PIL.Image
import torch

from storymem import StoryMemPipeline
from storymem.distributed import context_parallel


def main(out: str, memory_lengths: list[int]) -> None:
    launch = context_parallel.launched()
    device = context_parallel.start(launch)
    pipe = StoryMemPipeline.from_preset("tiny")
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_context_parallel(launch.world_size)
    pipe.enable_memory_mode("resident", device)
    ropes = []
    for expert in pipe.loaded_experts():
        # the rotary table as this rank's first block receives it (after the split)
        expert.blocks[0].register_forward_pre_hook(lambda m, args: ropes.append([t.clone() for t in args[3]]))
    saved = {}
    for m in memory_lengths:
        memory = [PIL.Image.new("RGB", (48, 48), (40 * i, 200 - 30 * i, 90)) for i in range(m)]
        ropes.clear()
        latents = pipe.generate_shot("a red fox", memory, seed=3, height=48, width=48, num_inference_steps=2,
                                     output_type="latent")  # fmt: skip
        saved[m] = {"latents": latents, "rope": ropes[0]}
    torch.save(saved, f"{out}/rank{launch.rank}.pt")
    context_parallel.stop()


if __name__ == "__main__":
    main(sys.argv[1], [int(m) for m in sys.argv[2:]])
