import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from storymem import InputError, StoryMemPipeline
from storymem.eval import ClipVideoText, LaionAesthetic, consistency, evaluate_run, load_evaluators
from storymem.eval.bench import run_bench
from storymem.eval.preprocess import clip_frames, viclip_frame_indices, viclip_frames
from storymem.runner import write_json
from storymem.video import read_video, write_video

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])


def fake_run(root, videos, prompts=None, overview="a story", method="storymem"):
    """A finished run folder holding the given shot videos (uint8 [T, H, W, 3] each)."""
    prompts = prompts or [f"shot {i}" for i in range(len(videos))]
    (root / "shots").mkdir(parents=True)
    names = [f"01_{i + 1:02d}" for i in range(len(videos))]
    for name, video in zip(names, videos, strict=True):
        write_video(video, root / "shots" / f"{name}.mp4", fps=8)
    story = {
        "story_name": "fake",
        "story_overview": overview,
        "scenes": [{"scene_num": 1, "video_prompts": prompts, "cut": [True] * len(videos)}],
    }
    write_json(root / "story.json", story)
    shots = {n: {"video": f"shots/{n}.mp4"} for n in names}
    memory = {"max_memory": 10, "sink": 3, "sink_keyframes": [], "window_keyframes": []}
    state = {"version": 1, "finished": True, "completed": names, "shots": shots, "memory": memory}
    write_json(root / "state.json", {**state, "settings": {"method": method}})
    return root


class MeanColour:
    """A transparent extractor for tests: a video's feature is its centred mean colour."""

    name = "mean-colour"

    @staticmethod
    def sample_indices(total):
        return list(range(total))

    def video_features(self, frames):
        f = torch.as_tensor(np.asarray(frames), dtype=torch.float64).mean(dim=(0, 1, 2)) - 127.5
        return f / f.norm()

    def text_features(self, texts):
        return torch.nn.functional.normalize(torch.ones(len(texts), 3, dtype=torch.float64), dim=-1)


def smooth_video(rng, frames=9, size=48):
    """Large flat colour blocks: survive H.264 and differ a lot between draws."""
    blocks = rng.integers(0, 256, (frames, 3, 3, 3), dtype=np.uint8)
    return blocks.repeat(size // 3, axis=1).repeat(size // 3, axis=2)


def test_consistency_pure_function():
    features = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), dim=-1)
    overall, top = consistency(features, top=1)
    s = 2**-0.5
    assert overall == pytest.approx((s + 0 + s) / 3) and top == pytest.approx(s)
    overall, top = consistency(features, top=10)  # fewer than 10 pairs: all of them
    assert top == pytest.approx(overall)


def test_repeated_video_is_perfectly_consistent_and_random_videos_are_not(tmp_path):
    rng = np.random.default_rng(0)
    one = smooth_video(rng)
    tiny = ClipVideoText.tiny()
    same = evaluate_run(fake_run(tmp_path / "same", [one] * 6), tiny)
    assert same["consistency_overall"] == pytest.approx(1.0, abs=1e-6)
    assert same["consistency_top10"] == pytest.approx(1.0, abs=1e-6)
    assert len(same["pairs"]) == 15 and all(p["similarity"] == pytest.approx(1.0, abs=1e-6) for p in same["pairs"])

    videos = [smooth_video(rng) for _ in range(6)]
    for extractor in (tiny, MeanColour()):
        other = evaluate_run(fake_run(tmp_path / f"random-{extractor.name}", videos), extractor)
        assert other["consistency_overall"] < 1.0 - 1e-4
        assert other["consistency_top10"] >= other["consistency_overall"]
        pairs = sorted(p["similarity"] for p in other["pairs"])
        assert other["consistency_top10"] == pytest.approx(np.mean(pairs[-10:]))
        assert other["consistency_overall"] == pytest.approx(np.mean(pairs))
    assert other["consistency_overall"] < 0.5  # mean colours of random blocks are nearly unrelated


def test_prompt_following_uses_each_prompt_and_the_overview(tmp_path):
    rng = np.random.default_rng(1)
    videos = [smooth_video(rng) for _ in range(3)]
    tiny = ClipVideoText.tiny()
    run = fake_run(tmp_path / "run", videos, ["a red fox", "a blue bird", "a cat"], "forest")
    metrics = evaluate_run(run, tiny)
    videos = [read_video(run / "shots" / f"01_0{i}.mp4") for i in (1, 2, 3)]  # what the metric sees (H.264)
    texts = tiny.text_features(["a red fox", "a blue bird", "a cat", "forest"])
    features = [tiny.video_features(v) for v in videos]
    expected = [float(f.double() @ t.double()) for f, t in zip(features, texts[:3], strict=True)]
    assert [s["prompt_similarity"] for s in metrics["shots"]] == pytest.approx(expected, abs=1e-5)
    assert metrics["prompt_shot"] == pytest.approx(np.mean(expected), abs=1e-5)
    whole = tiny.video_features(np.concatenate(videos))
    assert metrics["prompt_global"] == pytest.approx(float(whole.double() @ texts[3].double()), abs=1e-5)


def test_clip_preprocessing_matches_vbench_on_an_832x480_frame():
    # Red rises with the column, green with the row: every output pixel says where it came from.
    x, y = np.meshgrid(np.arange(832), np.arange(480))
    frame = np.stack([x * 255 / 831, y * 255 / 479, np.full_like(x, 128.0)], -1).round().astype(np.uint8)
    out = clip_frames(frame[None]).numpy()[0]
    assert out.shape == (3, 224, 224)
    # Hand computation: short side 480 -> 224, long side int(224 * 832 / 480) = 388, centre crop
    # from column round((388 - 224) / 2) = 82; output pixel (i, j) samples the source at
    # x = (j + 82 + 0.5) * 832 / 388 - 0.5, y = (i + 0.5) * 480 / 224 - 0.5.
    j, i = np.arange(224), np.arange(224)
    red = np.round(((j + 82 + 0.5) * 832 / 388 - 0.5) * 255 / 831) / 255
    green = np.round(((i + 0.5) * 480 / 224 - 0.5) * 255 / 479) / 255
    tolerance = 1.01 / 255 / CLIP_STD  # one uint8 level (bicubic rounding)
    np.testing.assert_allclose(out[0, 100, 2:-2], ((red - CLIP_MEAN[0]) / CLIP_STD[0])[2:-2], atol=tolerance[0])
    np.testing.assert_allclose(out[1, 2:-2, 100], ((green - CLIP_MEAN[1]) / CLIP_STD[1])[2:-2], atol=tolerance[1])
    np.testing.assert_allclose(out[2], (128 / 255 - CLIP_MEAN[2]) / CLIP_STD[2], atol=1e-6)
    # A portrait frame crops rows instead
    assert clip_frames(frame.transpose(1, 0, 2)[None]).shape == (1, 3, 224, 224)


def test_viclip_sampling_and_preprocessing():
    assert viclip_frame_indices(81) == [0, 10, 20, 30, 40, 50, 60, 70]
    assert viclip_frame_indices(8) == list(range(8))
    video = np.zeros((17, 448, 448, 3), np.uint8)
    video[:, :, :, 0] = np.arange(17)[:, None, None] * 10
    out = viclip_frames(video)
    assert out.shape == (1, 8, 3, 224, 224)
    expected = (np.arange(0, 16, 2) * 10 / 255 - 0.485) / 0.229  # frames 0, 2, ..., 14 (stride 17 // 8)
    np.testing.assert_allclose(out[0, :, 0, 50, 50].numpy(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="at least 8 frames"):
        viclip_frame_indices(5)


def test_aesthetic_is_the_mean_head_score_over_frames_divided_by_ten():
    tiny = ClipVideoText.tiny()
    scorer = LaionAesthetic.tiny(tiny)
    frames = smooth_video(np.random.default_rng(2), frames=5, size=36)
    expected = scorer.head(tiny.frame_features(frames)).squeeze(-1) / 10
    assert scorer.score(frames) == pytest.approx(float(expected.mean()))
    assert len(scorer.frame_scores(frames)) == 5


def test_unfinished_or_foreign_folders_are_refused(tmp_path):
    with pytest.raises(InputError, match="not a storymem run folder"):
        evaluate_run(tmp_path, ClipVideoText.tiny())
    run = fake_run(tmp_path / "run", [smooth_video(np.random.default_rng(0))] * 2)
    state = json.loads((run / "state.json").read_text())
    write_json(run / "state.json", {**state, "finished": False})
    with pytest.raises(
        InputError, match=r"the run is not finished \(2 shots done\); complete it with storymem generate --resume"
    ):
        evaluate_run(run, ClipVideoText.tiny())
    with pytest.raises(InputError, match="extractor must be one of auto, clip, viclip, tiny"):
        load_evaluators("dino")
    with pytest.raises(InputError, match="--extractor viclip needs --viclip PATH"):
        load_evaluators("viclip")


def two_stories(folder):
    folder.mkdir()
    for name, prompts, cuts in (
        ("hike", ["a fox walks", "the fox climbs"], [True, False]),
        ("nap", ["a cat", "the cat sleeps"], [True, True]),
    ):
        story = {
            "story_name": name,
            "story_overview": f"{name} story",
            "scenes": [{"scene_num": 1, "video_prompts": prompts, "cut": cuts}],
        }
        (folder / f"{name}.json").write_text(json.dumps(story))
    return folder


def test_bench_writes_every_report_and_a_rerun_generates_nothing(tmp_path, monkeypatch):
    stories = two_stories(tmp_path / "stories")
    pipe = StoryMemPipeline.from_preset("tiny")
    pipe.set_progress_bar_config(disable=True)
    extractor, aesthetic = load_evaluators("tiny")
    methods = ["storymem", "independent", "chain"]
    result = run_bench(pipe, [stories], methods, tmp_path / "bench", extractor, aesthetic, progress=False)
    out = tmp_path / "bench"
    assert result.generated == 12 and result.evaluated == 6
    for name in ("results.md", "results.csv", "results.json", "metrics.png", "heatmaps/hike.png", "heatmaps/nap.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    table = (out / "results.md").read_text().splitlines()
    assert (
        table[2]
        == "| method | aesthetic | prompt (global) | prompt (single-shot) | consistency overall | consistency top-10 |"
    )
    assert [row.split(" | ")[0] for row in table[4:7]] == ["| storymem", "| independent", "| chain"]
    data = json.loads((out / "results.json").read_text())
    assert set(data["stories"]) == {"hike", "nap"} and list(data["mean"]) == methods
    runs = [
        json.loads((out / "runs" / s / m / "eval-tiny-clip.json").read_text()) for s in ("hike", "nap") for m in methods
    ]
    assert data["mean"]["chain"]["prompt_shot"] == pytest.approx(np.mean([r["prompt_shot"] for r in runs[2::3]]))
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 2 * 3 + 3
    states = {m: json.loads((out / "runs" / "hike" / m / "state.json").read_text()) for m in methods}
    assert [s["mode"] for s in states["chain"]["shots"].values()] == ["t2v", "mi2v"]
    assert [s["mode"] for s in states["independent"]["shots"].values()] == ["t2v", "t2v"]

    def no_generation(*args, **kwargs):
        raise AssertionError("a finished run was generated again")

    monkeypatch.setattr(pipe, "generate_shot", no_generation)
    again = run_bench(pipe, [stories], methods, tmp_path / "bench", extractor, aesthetic, progress=False)
    assert again.generated == 0 and again.evaluated == 0 and again.summary == result.summary


def test_eval_cli_prints_json_with_the_paper_keys(tmp_path):
    run = fake_run(tmp_path / "run", [smooth_video(np.random.default_rng(3)) for _ in range(3)])
    state = json.loads((run / "state.json").read_text())
    write_json(run / "state.json", {**state, "settings": {"model": "tiny", "method": "chain"}})
    proc = subprocess.run(
        [sys.executable, "-m", "storymem.cli", "eval", str(run), "--json"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    for key in ("aesthetic", "prompt_global", "prompt_shot", "consistency_overall", "consistency_top10"):
        assert isinstance(metrics[key], float)
    assert len(metrics["shots"]) == 3 and len(metrics["pairs"]) == 3 and metrics["method"] == "chain"
    proc = subprocess.run([sys.executable, "-m", "storymem.cli", "eval", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr == f"error: {tmp_path}: not a storymem run folder (no state.json)\n"
