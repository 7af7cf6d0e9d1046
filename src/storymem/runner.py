"""The shot loop: a story script in, a multi-shot video out, resumable at any shot boundary.

    for each shot:
        memory = bank keyframes (+ previous shot's last 1 / 5 frames if cut = false)
        frames = pipe.generate_shot(prompt, memory, first_frames, seed)
        save the shot (atomic), its last frames (PNG, lossless: continuations read them back)
        keyframes = select(frames, memory); bank.add(keyframes); save state (atomic)
    join the listed shots -> story.mp4; storyboard.png

The run directory holds everything needed to resume; a resumed run equals an uninterrupted
one because every input of a shot (memory PNGs, continuation PNGs, seed) is read from disk the
same way in both cases.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import PIL.Image
import torch
from tqdm.auto import tqdm

from .conditioning import ShotMode, mode_for
from .errors import InputError, StoryMemError
from .memory import Keyframe, MemoryBank, select_keyframes
from .story import Shot, Story
from .storyboard import evenly_spaced, render_storyboard
from .video import concat_videos, load_image, write_video

STATE_VERSION = 1
CONTINUATION_FRAMES = {"mi2v": 1, "mm2v": 5}
# storymem: ours. independent: T2V per shot, no memory. chain: each shot I2V from the previous
# shot's last frame (the first shot T2V), no memory, no LoRA -- the usual "keep going" baseline.
METHODS = ("storymem", "independent", "chain")
TAIL = max(CONTINUATION_FRAMES.values())


@dataclass
class RunSettings:
    """Everything that decides a run's output. A resume with other settings is refused."""

    model: str
    story_sha: str
    lora: str | None = None
    variant: str = "mi2v"
    references: list[str] = field(default_factory=list)
    max_memory: int = 10
    sink: int = 3
    seed: int = 0
    steps: int | None = None
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    method: str = "storymem"
    quality: str = "none"
    preview: str | None = None  # folder of step-distilled LoRAs (preview mode)
    sigma_grid: str | None = None  # None: the preset's
    keyframe_clip: str | None = None  # keyframe-selection CLIP (folder or hub id); None: the preset's

    def differences(self, saved: dict) -> list[str]:
        mine = asdict(self)
        # Runs saved before a field existed hold its default.
        defaults = asdict(RunSettings(model="", story_sha=""))
        return [
            f"{k}: saved {saved.get(k, defaults[k])!r}, now {mine[k]!r}"
            for k in mine
            if saved.get(k, defaults[k]) != mine[k]
        ]


def story_sha(story: Story) -> str:
    return hashlib.sha256(json.dumps(story.model_dump(), sort_keys=True).encode()).hexdigest()[:16]


def shot_seed(run_seed: int, global_index: int) -> int:
    """A distinct seed per shot of the story (the published code repeats seeds across scenes)."""
    digest = hashlib.sha256(f"storymem/{run_seed}/{global_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def write_json(path: Path, data) -> None:
    """Atomic: a crash leaves the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    os.replace(tmp, path)


class RunDirectory:
    """The files of one run. Owns naming; knows nothing about models."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.shots, self.memory, self.tails = self.root / "shots", self.root / "memory", self.root / "tails"
        self.state_file, self.story_file = self.root / "state.json", self.root / "story.json"
        self.video, self.storyboard = self.root / "story.mp4", self.root / "storyboard.png"

    def prepare(self, resume: bool, overwrite: bool) -> dict | None:
        """Create the folder; returns the saved state when resuming."""
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"{self.root}: exists and is not a folder")
        existing = list(self.root.iterdir()) if self.root.exists() else []
        if resume:
            if not self.state_file.is_file():
                raise InputError(f"{self.root}: nothing to resume (no state.json)")
            return json.loads(self.state_file.read_text())
        if existing:
            if not overwrite:
                raise InputError(f"{self.root}: output folder is not empty; use --resume to continue it or --overwrite")
            if not self.state_file.is_file():
                raise InputError(f"{self.root}: not a storymem run folder (no state.json); refusing to overwrite it")
            shutil.rmtree(self.root)
        try:
            for folder in (self.shots, self.memory, self.tails):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"{self.root}: cannot create the run folder ({e.strerror})") from None
        return None

    def shot_video(self, shot: Shot) -> Path:
        return self.shots / f"{shot.name}.mp4"

    def tail_frame(self, shot_name: str, i: int) -> Path:
        return self.tails / f"{shot_name}_{i}.png"

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))


@dataclass
class StoryResult:
    run_dir: Path
    video: Path
    storyboard: Path
    shots: int
    seconds: float
    generated: int  # shots generated by this call (fewer than `shots` on a resume)


class StoryRunner:
    def __init__(self, pipe, embedder=None, quality=None, keyframe_clip=None, release_t2v=True):
        """embedder: image embedder for keyframe selection (else built from `keyframe_clip` or
        the preset's); quality: a quality scorer or None (no filter). Both are loaded once per
        runner. release_t2v: free the T2V experts once the story needs them no more (a bench,
        whose next story starts with a T2V shot again, keeps them)."""
        self.pipe = pipe
        self.embedder = embedder
        self.quality = quality
        self.keyframe_clip = keyframe_clip
        self.release_t2v = release_t2v
        self._embeddings: dict[str, torch.Tensor] = {}  # keyframe file -> embedding

    def _embed(self, images) -> torch.Tensor:
        if self.embedder is None:
            from .scoring import ClipImageEmbedder

            name = self.keyframe_clip or self.pipe.preset.keyframe_embedder
            device = self.pipe._execution_device
            self.embedder = (
                ClipImageEmbedder.tiny() if name == "tiny" else ClipImageEmbedder.from_pretrained(name, device)
            )
        return self.embedder.embed(images)

    def run(
        self,
        story: Story,
        out_dir,
        settings: RunSettings,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
    ) -> StoryResult:
        start = time.perf_counter()
        run = RunDirectory(out_dir)
        saved = run.prepare(resume, overwrite)
        if saved is not None:
            changed = settings.differences(saved.get("settings", {}))
            if changed:
                raise InputError(
                    f"{run.root}: settings differ from the saved run ({'; '.join(changed)}); use the same settings or --overwrite"
                )
            state = saved
            bank = MemoryBank.from_state(state["memory"])
        else:
            write_json(run.story_file, story.model_dump())
            bank = MemoryBank(settings.max_memory, settings.sink)
            for i, ref in enumerate(settings.references):
                target = run.memory / f"ref_{i:02d}.png"
                load_image(ref).save(target)
                bank.add(Keyframe(run.relative(target), "ref", i))
            state = {
                "version": STATE_VERSION,
                "settings": asdict(settings),
                "completed": [],
                "shots": {},
                "memory": bank.state(),
                "finished": False,
            }
            write_json(run.state_file, state)

        shots = story.shots
        todo = [s for s in shots if s.name not in state["completed"]]
        if not todo and state.get("finished") and run.video.is_file() and run.storyboard.is_file():
            return StoryResult(run.root, run.video, run.storyboard, len(shots), time.perf_counter() - start, 0)
        bar = tqdm(total=len(shots), initial=len(shots) - len(todo), desc="shots", unit="shot", disable=not progress)
        embeds = self._encode_prompts(todo, settings) if todo else {}
        ours = settings.method == "storymem"
        # The chain baseline runs the plain experts: the LoRA is switched off once for the run.
        with contextlib.nullcontext() if ours else self.pipe.lora_disabled():
            for shot in todo:
                previous = shots[shot.global_index - 1] if shot.global_index else None
                record = self._generate(run, shot, previous, bank, settings, embeds)
                state["completed"].append(shot.name)
                state["shots"][shot.name] = record
                state["memory"] = bank.state()
                write_json(run.state_file, state)
                if self.release_t2v and not self._may_need_t2v(settings, bank):
                    self.pipe.release_t2v_experts()
                bar.update(1)
        bar.close()

        concat_videos([run.shot_video(s) for s in shots], run.video)
        self._storyboard(run, shots, state)
        state["finished"] = True
        write_json(run.state_file, state)
        return StoryResult(run.root, run.video, run.storyboard, len(shots), time.perf_counter() - start, len(todo))

    def _encode_prompts(self, shots: list[Shot], settings: RunSettings) -> dict:
        """Every prompt still to generate (and the negative prompt) in one pass at the start;
        the text encoder then leaves the GPU for the rest of the story."""
        negative = any(self.pipe.uses_guidance(mode) for mode in (ShotMode.T2V, ShotMode.M2V))
        return self.pipe.encode_story_prompts([s.prompt for s in shots], negative=negative)

    @staticmethod
    def _may_need_t2v(settings: RunSettings, bank: MemoryBank) -> bool:
        """Whether a later shot can still be text-to-video: every shot of `independent`; for
        storymem only while memory is empty (it never empties again); chain only its first shot."""
        if settings.method == "independent":
            return True
        if settings.method == "storymem":
            return len(bank) == 0
        return False

    def _generate(
        self,
        run: RunDirectory,
        shot: Shot,
        previous: Shot | None,
        bank: MemoryBank,
        settings: RunSettings,
        embeds: dict,
    ) -> dict:
        ours = settings.method == "storymem"
        memory = bank.keyframes if ours else []
        memory_images = [load_image(run.root / k.file) for k in memory]
        given_count = 0
        if previous is not None and ours and not shot.cut:
            given_count = CONTINUATION_FRAMES[settings.variant]
        elif previous is not None and settings.method == "chain":
            given_count = 1
        given = [load_image(run.tail_frame(previous.name, i)) for i in range(TAIL - given_count, TAIL)]
        seed = shot_seed(settings.seed, shot.global_index)

        t0 = time.perf_counter()
        frames = self.pipe.generate_shot(
            shot.prompt,
            memory_images,
            given,
            seed=seed,
            prompt_embeds=embeds[shot.prompt],
            negative_prompt_embeds=embeds.get(self.pipe.preset.negative_prompt),
            num_inference_steps=settings.steps,
            num_frames=settings.frames,
            height=settings.height,
            width=settings.width,
            sigma_grid=settings.sigma_grid,
        )
        generate_s = time.perf_counter() - t0
        timings = dict(self.pipe.last_shot_timings)
        write_video(frames, run.shot_video(shot), fps=self.pipe.preset.fps)
        tail = frames[-TAIL:]  # numbered from the end: the last frame is always TAIL - 1, even in short shots
        for i, frame in enumerate(tail, start=TAIL - len(tail)):
            frame.save(run.tail_frame(shot.name, i))

        t1 = time.perf_counter()
        keyframes = self._select(run, shot, frames, bank) if ours else []
        bank.extend(keyframes)
        select_s = time.perf_counter() - t1
        mode = mode_for(len(memory), len(given)).value
        return {
            "video": run.relative(run.shot_video(shot)),
            "frames": len(frames),
            "seed": seed,
            "mode": mode,
            "memory": [k.file for k in memory],
            "keyframes": [k.file for k in keyframes],
            "generate_s": round(generate_s, 4),
            "select_s": round(select_s, 4),
            "timings": timings,  # inside generate_s: encode, place, denoise, decode
            "memory_mode": self.pipe.placement.mode if self.pipe.placement is not None else None,
        }

    def _select(self, run: RunDirectory, shot: Shot, frames: list[PIL.Image.Image], bank: MemoryBank) -> list[Keyframe]:
        embeddings = self._embed(frames)
        for k in bank.keyframes:
            if k.file not in self._embeddings:  # after a resume: from the saved PNG
                self._embeddings[k.file] = self._embed([load_image(run.root / k.file)])[0]
        memory = torch.stack([self._embeddings[k.file] for k in bank.keyframes]) if len(bank) else None
        scores = self.quality.score(frames) if self.quality is not None else None
        threshold = self.quality.threshold if self.quality is not None else None
        chosen = select_keyframes(embeddings, scores, threshold, memory)
        keyframes = []
        for i in chosen:
            path = run.memory / f"{shot.name}_f{i:03d}.png"
            frames[i].save(path)
            keyframe = Keyframe(run.relative(path), shot.name, i)
            self._embeddings[keyframe.file] = embeddings[i]
            keyframes.append(keyframe)
        return keyframes

    def _storyboard(self, run: RunDirectory, shots: list[Shot], state: dict) -> None:
        from .video import read_video

        rows = []
        for shot in shots:
            record = state["shots"][shot.name]
            video = read_video(run.root / record["video"])
            frames = [PIL.Image.fromarray(video[i]) for i in evenly_spaced(4, len(video))]
            memory = [load_image(run.root / f) for f in record["memory"]]
            label = f"{shot.name}  {record['mode'].upper()}  {shot.prompt[:90]}"
            rows.append((label, frames, memory))
        render_storyboard(rows, run.storyboard)


def generate_story(
    pipe,
    story: Story,
    out_dir,
    *,
    embedder=None,
    scorer=None,
    aesthetic_head=None,
    resume=False,
    overwrite=False,
    progress=True,
    release_t2v=True,
    **settings,
) -> StoryResult:
    """Generate (or resume) a whole story into `out_dir`.

    settings: RunSettings fields (method, seed, max_memory, sink, variant, references, steps,
    frames, height, width, quality, lora, preview, sigma_grid, keyframe_clip). embedder / scorer:
    ready-made keyframe models; by default the CLIP named by `keyframe_clip` (else the preset's)
    and the quality filter named by `quality` are loaded once. release_t2v: see `StoryRunner`.
    """
    settings = {k: v for k, v in settings.items() if v is not None}
    settings.setdefault("model", pipe.preset.name)
    settings.setdefault("quality", pipe.preset.quality)
    settings.setdefault("max_memory", pipe.preset.max_trained_memory)
    settings.setdefault("variant", pipe.lora_variant or "mi2v")
    if settings.get("variant") not in (None, *CONTINUATION_FRAMES):
        raise InputError(f"variant must be mi2v or mm2v, got {settings['variant']!r}")
    settings.setdefault("references", list(story.references))
    loaded_preview = str(pipe.preview.folder) if pipe.preview is not None else None
    settings.setdefault("preview", loaded_preview)
    frames = settings.get("frames") or pipe.preset.num_frames
    if settings["variant"] == "mm2v" and frames - CONTINUATION_FRAMES["mm2v"] < TAIL:
        raise InputError(f"mm2v continuations need more than {2 * TAIL - 1} frames per shot (e.g. 13), got {frames}")
    if settings.get("method", "storymem") not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {settings['method']!r}")
    run_settings = RunSettings(story_sha=story_sha(story), **settings)
    if run_settings.preview != loaded_preview:  # the setting records the pipeline's state, never changes it
        raise InputError(
            f"preview={run_settings.preview!r} but the pipeline's preview LoRAs are from {loaded_preview!r}; "
            "load them with from_preset(..., preview=DIR)"
        )
    if run_settings.references and run_settings.method != "storymem":
        raise InputError(f"reference images need memory; they cannot be used with the {run_settings.method} baseline")
    if scorer is None and run_settings.method == "storymem":
        from .scoring import make_quality_scorer

        scorer = make_quality_scorer(run_settings.quality, device=pipe._execution_device, aesthetic_head=aesthetic_head)
    runner = StoryRunner(
        pipe, embedder=embedder, quality=scorer, keyframe_clip=run_settings.keyframe_clip, release_t2v=release_t2v
    )
    try:
        return runner.run(story, out_dir, run_settings, resume=resume, overwrite=overwrite, progress=progress)
    except OSError as e:
        raise StoryMemError(f"{out_dir}: {e.strerror or e} (disk full or no permission?)") from None
