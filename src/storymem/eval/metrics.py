"""ST-Bench metrics of one run directory (the paper's table, reference section 7).

    aesthetic            LAION aesthetic / 10, mean over each shot's frames, then over shots
    prompt_shot          cos(video feature of shot i, text feature of prompt i), mean over shots
    prompt_global        cos(video feature of the whole story video, text of the story overview)
    consistency_overall  mean cos(video feature i, video feature j) over all shot pairs i < j
    consistency_top10    mean of the 10 most similar pairs (all pairs when there are fewer)

The video/text features come from a pluggable extractor (CLIP ViT-L/14 by default, ViCLIP);
its name is written with the numbers. The whole-story feature samples the concatenated shots the
way the extractor samples any video (CLIP: 8 evenly spaced frames; ViCLIP: 8 at stride len // 8);
when the script has no overview, the shot prompts joined stand in for it.

Runs of toy-world stories (every prompt a toy caption) also get `identity`: the share of later
shots whose character has the look its first shot introduced (see toyworld/identity.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError
from tqdm.auto import tqdm

from ..errors import InputError
from ..files import read_json
from ..rundir import RunDirectory
from ..story import Story
from ..toyworld.identity import identity_metrics
from ..video import read_video

TOP_PAIRS = 10
KEYS = ("aesthetic", "prompt_global", "prompt_shot", "consistency_overall", "consistency_top10")


def similarity_matrix(features: torch.Tensor) -> torch.Tensor:
    """Cosine similarities [N, N] of L2-normalised features [N, D]."""
    features = features.double()
    return features @ features.T


def consistency(features: torch.Tensor, top: int = TOP_PAIRS) -> tuple[float, float]:
    """(mean over all pairs i < j, mean over the `top` most similar pairs)."""
    n = len(features)
    if n < 2:
        return float("nan"), float("nan")
    rows, cols = torch.triu_indices(n, n, offset=1)
    pairs = similarity_matrix(features)[rows, cols]
    best = pairs.topk(min(top, len(pairs))).values
    return float(pairs.mean()), float(best.mean())


def story_frames(videos: list[np.ndarray], sample_indices) -> np.ndarray:
    """The frames the extractor would pick from the shots joined end to end (without joining them)."""
    offsets = np.cumsum([0] + [len(v) for v in videos])
    picked = []
    for index in sample_indices(int(offsets[-1])):
        shot = int(np.searchsorted(offsets, index, side="right")) - 1
        picked.append(videos[shot][index - offsets[shot]])
    return np.stack(picked)


def _finished_run(run_dir: Path) -> tuple[RunDirectory, dict, Story]:
    run = RunDirectory(run_dir)
    if not run.state_file.is_file() or not run.story_file.is_file():
        raise InputError(f"{run_dir}: not a storymem run folder (no state.json / story.json)")
    state = run.read_state()
    if not state.get("finished"):
        done = len(state["completed"])
        raise InputError(
            f"{run_dir}: the run is not finished ({done} shots done); complete it with storymem generate --resume"
        )
    fix = "restore it, or generate the run again"
    try:
        story = Story.model_validate(read_json(run.story_file, "normalised story", fix))
    except ValidationError:
        raise InputError(f"{run.story_file}: the normalised story is damaged; {fix}") from None
    missing = [s.name for s in story.shots if s.name not in state["shots"]]
    if missing:
        raise InputError(f"{run.state_file}: no record of shot {missing[0]} of the story; {fix}")
    run.check_files(state, range(0))
    return run, state, story


def toy_looks(story) -> dict:
    """The looks a story's characters are given in words, where they are toy-world looks (a cast
    story's characters: their prompts name them only)."""
    from ..story import Character
    from ..toyworld.stories import parse_look

    looks = {c.name: parse_look(c.look) for c in story.characters if isinstance(c, Character)}
    return {name: look for name, look in looks.items() if look is not None}


def evaluate_run(run_dir, extractor, aesthetic=None, extra=None, progress: bool = False) -> dict:
    """All metrics of a finished run, plus per-shot and per-pair values.

    extractor: a video-text extractor (see extractors.py); aesthetic: a LaionAesthetic or None
    (then "aesthetic" is None); extra: optional callable(run_dir, story, frames_by_shot) -> dict
    merged into the result (e.g. the toy world's identity metric).
    """
    run, state, story = _finished_run(Path(run_dir))
    shots = story.shots
    videos, features, aesthetics = [], [], []
    for shot in tqdm(shots, desc="eval", unit="shot", disable=not progress, leave=False):
        frames = read_video(run.root / state["shots"][shot.name]["video"])
        videos.append(frames)
        if aesthetic is not None and aesthetic.clip is extractor:  # one CLIP pass serves both metrics
            frame_features = extractor.frame_features(frames)
            features.append(extractor.pool(frame_features))
            aesthetics.append(float(aesthetic.feature_scores(frame_features).mean()))
            continue
        features.append(extractor.video_features(frames))
        if aesthetic is not None:
            aesthetics.append(aesthetic.score(frames))
    features = torch.stack(features)
    prompts = [shot.prompt for shot in shots]
    overview = story.story_overview.strip() or " ".join(prompts)
    texts = extractor.text_features([*prompts, overview])
    prompt_sims = (features.double() * texts[:-1].double()).sum(-1)
    story_feature = extractor.video_features(story_frames(videos, extractor.sample_indices))
    overall, top = consistency(features)
    matrix = similarity_matrix(features)

    result = {
        "aesthetic": float(np.mean(aesthetics)) if aesthetics else None,
        "prompt_global": float(story_feature.double() @ texts[-1].double()),
        "prompt_shot": float(prompt_sims.mean()),
        "consistency_overall": overall,
        "consistency_top10": top,
        "extractor": extractor.name,
        "aesthetic_model": aesthetic.name if aesthetic is not None else None,
        "story": story.story_name,
        "method": state["settings"].get("method", "storymem"),
        "shots": [
            {
                "shot": shot.name,
                "prompt": shot.prompt,
                "prompt_similarity": float(prompt_sims[i]),
                "aesthetic": aesthetics[i] if aesthetics else None,
                "take": state["shots"][shot.name].get("take", 1),  # which take is in use (storymem reshoot)
                "stale": shot.name in state.get("stale", []),  # made after another take of an earlier shot
            }
            for i, shot in enumerate(shots)
        ],
        "pairs": [
            {"a": shots[i].name, "b": shots[j].name, "similarity": float(matrix[i, j])}
            for i in range(len(shots))
            for j in range(i + 1, len(shots))
        ],
    }
    toy = identity_metrics(prompts, videos, toy_looks(story))  # toy-world captions: the look is known, so measure it
    if toy is not None:
        result.update(toy)
    if extra is not None:
        result.update(extra(run.root, story, videos))
    return result
