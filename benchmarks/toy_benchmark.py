"""The toy benchmark the README quotes: toy stories on the built-in `toy` model, evaluated with
the identity metric and the ST-Bench metrics.

Two sets of stories (seeds 0..count-1):
    single   one character per story (6 shots): storymem, independent, chain
    multi    --characters per story (8 shots), each introduced in its own first shot:
             storymem with the official memory, storymem with entity-aware memory
             (`--memory-policy entity`), independent, chain; identity is per named character
    cast2, cast3   2 or 3 characters per story (8 shots), none of whose looks any prompt says:
             each has a reference image (`storymem toy-stories --references`). Entity memory
             with each character's own reference (cast), with all of them as the story's
             references (global: today's MR2V), and with none (a floor: the looks cannot be known)

    python benchmarks/toy_benchmark.py --out toy-bench                  # the shipped weights, both sets
    python benchmarks/toy_benchmark.py --out toy-bench-2 --weights DIR  # weights from scripts/train_toy_model.py
    python benchmarks/toy_benchmark.py --out toy-bench-base --no-lora   # ablation: memory read by the base alone
    python benchmarks/toy_benchmark.py --sets single --count 20         # the README's first table
    python benchmarks/toy_benchmark.py --sets cast2,cast3 --no-lora      # per-character references

The single set equals `storymem toy-stories --out S --count N && storymem bench S --model toy
--out B`. Resumable: a re-run skips finished runs. Writes summary.json (set -> method -> means).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from storymem.eval import load_evaluators
from storymem.eval.bench import run_bench
from storymem.files import write_json
from storymem.options import RunSettings
from storymem.pipelines import StoryMemPipeline
from storymem.toyworld import write_stories
from storymem.toyworld.model import toy_options

BASELINES = ["storymem", "independent", "chain"]
COLUMNS = ["identity", "identity_colour", "identity_intro", "consistency_overall"]
SHOTS = {"single": 6, "multi": 8, "cast2": 8, "cast3": 8}
CAST_METHODS = ["cast", "global", "none"]


def write_story_set(folder: Path, name: str, count: int, characters: int) -> Path:
    """Stories 0..count-1 as `storymem toy-stories` writes them (single: 6 shots, 1 character)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_stories(folder, count, SHOTS[name], characters=1 if name == "single" else characters)
    return folder


def cast_story_sets(folder: Path, count: int, characters: int) -> dict[str, Path]:
    """The cast stories and their two variants, each in a folder of its own: global (the same
    images as the story's references, characters by name) and none (no images). Every variant
    keeps the looks in words under "characters", where only the identity metric reads them."""
    import json

    from storymem.files import write_json

    cast = folder / "cast"
    cast.mkdir(parents=True, exist_ok=True)
    write_stories(cast, count, SHOTS[f"cast{characters}"], characters=characters, references=True)
    sets = {"cast": cast}
    for variant in ("global", "none"):
        sets[variant] = folder / variant
        sets[variant].mkdir(exist_ok=True)
        for file in sorted(cast.glob("*.json")):
            story = json.loads(file.read_text())
            refs = [f"../cast/{r}" for c in story["characters"] for r in c.pop("references")]
            if variant == "global":
                story["references"] = refs
            write_json(sets[variant] / file.name, story)
    return sets


def bench_cast_set(pipe, name: str, args, evaluators) -> tuple[dict, int]:
    characters = int(name.removeprefix("cast"))
    sets = cast_story_sets(args.out / name / "stories", args.count, characters)
    settings = RunSettings(seed=args.seed, memory_policy="entity")
    rows, generated = {}, 0
    for variant, stories in sets.items():
        result = run_bench(
            pipe, [stories], ["storymem"], args.out / name / variant, *evaluators, progress=False, settings=settings
        )
        rows[variant] = result.summary["storymem"]
        generated += result.generated
    return rows, generated


def bench_set(pipe, name: str, args, evaluators) -> tuple[dict, int]:
    """{method label: means} for one set, and the shots generated."""
    if name.startswith("cast"):
        return bench_cast_set(pipe, name, args, evaluators)
    stories = write_story_set(args.out / name / "stories", name, args.count, args.characters)
    settings = RunSettings(seed=args.seed)
    result = run_bench(
        pipe, [stories], BASELINES, args.out / name / "official", *evaluators, progress=False, settings=settings
    )
    rows = {m: result.summary[m] for m in BASELINES}
    generated = result.generated
    if name == "multi":  # the policy is a run setting: its runs get a folder of their own
        entity_settings = settings.replace(memory_policy="entity")
        entity = run_bench(
            pipe, [stories], ["storymem"], args.out / name / "entity", *evaluators, progress=False,
            settings=entity_settings,
        )  # fmt: skip
        rows = {"storymem": rows["storymem"], "storymem-entity": entity.summary["storymem"], **rows}
        generated += entity.generated
    return rows, generated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("toy-bench"))
    parser.add_argument("--sets", default="single,multi", help=f"some of {', '.join(SHOTS)} (comma-separated)")
    parser.add_argument("--count", type=int, default=40, help="stories per set (seeds 0..count-1)")
    parser.add_argument("--characters", type=int, default=2, help="characters per story in the multi set (2-6)")
    parser.add_argument("--weights", type=Path, default=None, help="toy weights folder (default: the package's)")
    parser.add_argument("--seed", type=int, default=0, help="generation seed")
    parser.add_argument(
        "--no-lora", action="store_true", help="ablation: the base model reads memory without the M2V LoRA"
    )
    args = parser.parse_args()
    sets = [s.strip() for s in args.sets.split(",")]
    if not sets or set(sets) - set(SHOTS):
        parser.error(f"--sets: expected some of {', '.join(SHOTS)} (comma-separated), got {args.sets!r}")

    pipe = StoryMemPipeline.from_options(toy_options(args.weights, lora=not args.no_lora))
    pipe.set_progress_bar_config(disable=True)
    evaluators = load_evaluators("auto", "toy")
    summary, generated, start = {}, 0, time.perf_counter()
    for name in sets:
        summary[name], shots = bench_set(pipe, name, args, evaluators)
        generated += shots
    write_json(args.out / "summary.json", summary)

    elapsed = time.perf_counter() - start
    print(
        f"{args.count} stories a set; {generated} shots generated in {elapsed:.0f}s; weights: {args.weights or 'shipped'}"
    )
    print(f"{'set':7s} {'method':16s} " + " ".join(f"{c:>20s}" for c in COLUMNS))
    for name, rows in summary.items():
        for method, row in rows.items():
            print(f"{name:7s} {method:16s} " + " ".join(f"{row.get(c, float('nan')):20.3f}" for c in COLUMNS))
    if "single" in summary:
        rows = summary["single"]
        print(
            f"single: storymem - independent = {100 * (rows['storymem']['identity'] - rows['independent']['identity']):+.1f} pp"
        )
    if "multi" in summary:
        rows = summary["multi"]
        print(
            f"multi: entity - official = {100 * (rows['storymem-entity']['identity'] - rows['storymem']['identity']):+.1f} pp"
        )
    for name in (n for n in summary if n.startswith("cast")):
        rows = summary[name]
        print(f"{name}: cast - global = {100 * (rows['cast']['identity'] - rows['global']['identity']):+.1f} pp")
    print(f"reports in {args.out}")


if __name__ == "__main__":
    main()
