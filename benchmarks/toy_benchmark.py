"""The toy benchmark the README quotes: N toy stories x {storymem, independent, chain} on the
built-in `toy` model, evaluated with the identity metric and the ST-Bench metrics.

    python benchmarks/toy_benchmark.py --out toy-bench                  # the shipped weights
    python benchmarks/toy_benchmark.py --out toy-bench-2 --weights DIR  # weights from scripts/train_toy_model.py
    python benchmarks/toy_benchmark.py --out toy-bench-base --no-lora   # ablation: memory read by the base alone

The same as `storymem toy-stories --out S --count 20 && storymem bench S --model toy --out B`,
plus the option to score other toy weights. Resumable: a re-run skips finished runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from storymem.eval import load_evaluators
from storymem.eval.bench import run_bench
from storymem.pipelines import StoryMemPipeline
from storymem.runner import write_json
from storymem.toyworld import make_story

METHODS = ["storymem", "independent", "chain"]
COLUMNS = ["identity", "identity_colour", "identity_intro", "consistency_overall"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("toy-bench"))
    parser.add_argument("--count", type=int, default=20, help="number of stories (seeds 0..count-1)")
    parser.add_argument("--weights", type=Path, default=None, help="toy weights folder (default: the package's)")
    parser.add_argument("--seed", type=int, default=0, help="generation seed")
    parser.add_argument(
        "--no-lora", action="store_true", help="ablation: the base model reads memory without the M2V LoRA"
    )
    args = parser.parse_args()

    stories = args.out / "stories"
    stories.mkdir(parents=True, exist_ok=True)
    for i in range(args.count):
        story, _ = make_story(i)
        write_json(stories / f"{story['story_name']}.json", story)

    if args.weights is None:
        pipe, lora = StoryMemPipeline.from_preset("toy", lora=False if args.no_lora else None), None
    else:
        from storymem.models.toy import build_toy_components

        pipe = StoryMemPipeline(**build_toy_components(weights=args.weights), preset="toy")
        lora = None if args.no_lora else str(args.weights / "lora")
        if lora:
            pipe.load_storymem_lora(lora)
    pipe.set_progress_bar_config(disable=True)
    video_text, aesthetic = load_evaluators("auto", "toy")
    start = time.perf_counter()
    result = run_bench(pipe, [stories], METHODS, args.out, video_text, aesthetic, seed=args.seed, lora=lora)
    elapsed = time.perf_counter() - start
    print(f"{args.count} stories x {len(METHODS)} methods; {result.generated} shots generated in {elapsed:.0f}s")
    print(f"{'method':12s} " + " ".join(f"{c:>20s}" for c in COLUMNS))
    for method in METHODS:
        row = result.summary[method]
        print(f"{method:12s} " + " ".join(f"{row.get(c, float('nan')):20.3f}" for c in COLUMNS))
    gain = result.summary["storymem"]["identity"] - result.summary["independent"]["identity"]
    print(f"identity: storymem - independent = {100 * gain:+.1f} pp; reports in {args.out}")


if __name__ == "__main__":
    main()
