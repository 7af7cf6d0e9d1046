"""Does steering the memory by hand help? On two-character toy stories (the toy benchmark's
multi set), the official memory as it comes against the same memory steered the way a director
would, between every two shots (`storymem memory RUN ...`):

- pin each character's introduction (the first keyframe of the first shot naming it) for that
  character: dropped from the shared memory and added back with `--character`, so that only the
  shots naming the character get it (a pin is for every shot);
- drop every other keyframe that shows another character than the one the next shot names.

Each steered story is made one shot at a time (a run stopped after each shot, steered, resumed),
so the edits are exactly what the CLI records. Prints and writes per-character identity.

    python benchmarks/toy_steering.py --out toy-steering --count 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from storymem import Run
from storymem.eval import evaluate_run, load_evaluators
from storymem.files import write_json
from storymem.memory.entity import named_characters
from storymem.options import RunSettings
from storymem.pipelines import StoryMemPipeline
from storymem.runner import generate_story
from storymem.story import load_story
from storymem.toyworld import write_stories
from storymem.toyworld.model import toy_options

COLUMNS = ["identity", "identity_colour", "identity_intro"]


class StopBeforeNextShot:
    """A step callback that ends a (resumed) run at the first step of its second shot."""

    def __init__(self, steps: int):
        self.calls, self.steps = 0, steps

    def __call__(self, pipe, step, timestep, tensors):
        self.calls += 1
        if self.calls == self.steps + 1:
            raise KeyboardInterrupt
        return tensors


def direct(run_dir: Path, story, intros: dict[str, str]) -> None:
    """The director's edits after the shots made so far (intros: character -> pinned keyframe)."""
    run = Run(run_dir)
    state = run.state()
    names = story.character_names
    tags = {s.name: named_characters(s.prompt, names) for s in story.shots}
    done = state["completed"]
    for character in map(str.lower, names):  # a character's introduction, for it alone
        first = next((s for s in done if character in tags[s] and state["shots"][s]["keyframes"]), None)
        if character not in intros and first is not None:
            intros[character] = state["shots"][first]["keyframes"][0]
            run.memory.drop(intros[character])
            run.memory.add(run_dir / intros[character], character=character)
    if len(done) == len(story.shots):
        return
    wanted = tags[story.shots[len(done)].name]
    dropped = {e["file"] for e in Run(run_dir).state().get("edits", []) if e["op"] == "drop"}
    for shot in done:
        for file in state["shots"][shot]["keyframes"]:
            if file not in intros.values() and file not in dropped and tags[shot] and not tags[shot] & wanted:
                run.memory.drop(file)


def steered_run(pipe, story_file: Path, out: Path, settings: RunSettings) -> None:
    story = load_story(story_file)
    intros: dict[str, str] = {}
    while not (out / "state.json").is_file() or not json.loads((out / "state.json").read_text())["finished"]:
        try:
            generate_story(
                pipe, story, out, settings, resume=out.exists(), progress=False,
                callback_on_step_end=StopBeforeNextShot(settings.steps or pipe.preset.m2v.steps),
            )  # fmt: skip
        except KeyboardInterrupt:
            direct(out, story, intros)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("toy-steering"))
    parser.add_argument("--count", type=int, default=20, help="stories (seeds 0..count-1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the toy's 20)")
    args = parser.parse_args()
    start = time.perf_counter()
    stories = args.out / "stories"
    stories.mkdir(parents=True, exist_ok=True)
    write_stories(stories, args.count, 8, characters=2)
    pipe = StoryMemPipeline.from_options(toy_options())
    pipe.set_progress_bar_config(disable=True)
    extractor, aesthetic = load_evaluators("auto", "toy")
    settings = RunSettings(seed=args.seed, steps=args.steps)
    rows: dict[str, list[dict]] = {"automatic": [], "steered": []}
    for file in sorted(stories.glob("*.json")):
        for method in rows:
            out = args.out / "runs" / file.stem / method
            if method == "automatic":
                generate_story(pipe, load_story(file), out, settings, resume=out.exists(), progress=False)
            else:
                steered_run(pipe, file, out, settings)
            metrics = evaluate_run(out, extractor, aesthetic)
            rows[method].append({c: metrics[c] for c in COLUMNS})
        print(f"{file.stem}: " + ", ".join(f"{m} {rows[m][-1]['identity']:.3f}" for m in rows), flush=True)
    summary = {
        m: {c: float(np.mean([r[c] for r in rs if r[c] is not None])) for c in COLUMNS} for m, rs in rows.items()
    }
    write_json(
        args.out / "summary.json",
        {"stories": args.count, "summary": summary, "command": "python benchmarks/toy_steering.py"},
    )
    for method, means in summary.items():
        print(f"{method:>10}: " + "  ".join(f"{c} {v:.3f}" for c, v in means.items()))
    gain = 100 * (summary["steered"]["identity"] - summary["automatic"]["identity"])
    print(f"steered - automatic = {gain:+.1f} pp of per-character identity ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
