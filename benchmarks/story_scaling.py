"""Per-shot time over a 20-shot story (tiny preset, CPU): flat once memory is full?

Prints each shot's generation time and memory size, the ratio of the last shot's time to the
3rd shot's, and keyframe selection + memory update as a share of shot time.

    python benchmarks/story_scaling.py [--shots 20] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from storymem import RunSettings, StoryMemPipeline, generate_story, parse_story


class PixelEmbedder:
    """Mean-centred 8x8 thumbnails. The tiny preset's random CLIP sees every noise frame as
    alike, so memory would never fill; this embedder tells frames apart, so the bank reaches
    its capacity and the benchmark measures the full-memory regime."""

    def embed(self, images):
        x = torch.from_numpy(np.stack([np.asarray(i.resize((8, 8)), np.float32).ravel() for i in images]))
        x = x - x.mean(dim=1, keepdim=True)
        return x / x.norm(dim=1, keepdim=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", type=int, default=20)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--model", default="tiny")
    args = parser.parse_args()

    prompts = [f"shot {i}: the fox walks through place {i % 5}" for i in range(args.shots)]
    story = parse_story(
        {"story_name": "scaling", "scenes": [{"scene_num": 1, "video_prompts": prompts, "cut": [True] * args.shots}]}
    )
    pipe = StoryMemPipeline.from_preset(args.model)
    pipe.set_progress_bar_config(disable=True)
    with tempfile.TemporaryDirectory() as out:
        result = generate_story(
            pipe, story, Path(out) / "run", RunSettings(steps=args.steps), embedder=PixelEmbedder(), progress=False
        )
        state = json.loads((Path(out) / "run" / "state.json").read_text())
    shots = [state["shots"][s.name] for s in story.shots]
    print(f"{'shot':>4} {'memory':>6} {'generate_s':>10} {'select_s':>9}")
    for i, s in enumerate(shots):
        print(f"{i + 1:>4} {len(s['memory']):>6} {s['generate_s']:>10.3f} {s['select_s']:>9.4f}")
    full = [s["generate_s"] for s in shots if len(s["memory"]) == max(len(x["memory"]) for x in shots)]
    select_share = sum(s["select_s"] for s in shots) / sum(s["generate_s"] + s["select_s"] for s in shots)
    print(f"last shot / 3rd shot generation time: {shots[-1]['generate_s'] / shots[2]['generate_s']:.2f}")
    print(
        f"shots with full memory: {len(full)}, time spread (max/min): {max(full) / min(full):.2f}, median {statistics.median(full):.3f}s"
    )
    print(f"keyframe selection + memory update: {100 * select_share:.1f}% of shot time")
    print(f"whole story: {result.seconds:.1f}s for {result.shots} shots")


if __name__ == "__main__":
    main()
