"""`storymem` command line.

Every user-fixable problem is a `StoryMemError`, printed as one line ``error: ...`` on stderr
with exit status 1; no traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from .cli_options import pipeline_options, run_settings
from .errors import InputError, StoryMemError
from .options import PipelineOptions, RunSettings
from .story import load_story
from .train.config import TrainConfig

app = typer.Typer(
    name="storymem",
    help="Multi-shot long video storytelling with memory (StoryMem on Wan2.2).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def validate(
    stories: Annotated[list[Path], typer.Argument(help="Story script(s) in the ST-Bench JSON format.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the normalised story (cut as booleans).")] = False,
) -> None:
    """Check story scripts; print a one-line summary of each (or the normalised JSON)."""
    failed = 0
    for path in stories:
        try:
            story = load_story(path)
        except StoryMemError as e:
            _error(e)
            failed += 1
            continue
        if as_json:
            print(json.dumps(story.model_dump(exclude_none=True), ensure_ascii=False, indent=2))
        else:
            print(f"{path}: ok: {story.summary()}")
    if failed:
        raise typer.Exit(1)


WorkersOption = Annotated[
    int | None,
    typer.Option(help="Run this many stories at once as Ray tasks (one GPU each; one CPU core for toy/tiny)."),
]
RayAddressOption = Annotated[
    str | None, typer.Option(help="Join this Ray cluster (e.g. ray://head:10001) instead of starting a local one.")
]


ExtractorOption = Annotated[
    str, typer.Option(help="Video-text features: clip (CLIP ViT-L/14), viclip (needs --viclip), tiny, or auto.")
]
ViclipOption = Annotated[Path | None, typer.Option(help="ViCLIP checkpoint ViClip-InternVid-10M-FLT.pth.")]
HeadOption = Annotated[str, typer.Option(help="LAION aesthetic head: path or URL, none to skip, auto = VBench's head.")]


@app.command()
@pipeline_options
@run_settings(
    "references", "max_memory", "sink", "seed", "steps", "frames", "height", "width", "quality", "method",
    "keyframe_clip", "memory_policy",
)  # fmt: skip
def generate(
    story_paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="STORY.json", help="Story script(s) (ST-Bench format); several (or folders): one run each."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (several stories: OUT/<story name>/).")],
    options: PipelineOptions,
    settings: RunSettings,
    aesthetic_head: Annotated[
        Path | None, typer.Option(help="LAION aesthetic head weights, for --quality aesthetic.")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue a run after its last completed shot.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run in --out.")] = False,
    no_memory: Annotated[bool, typer.Option("--no-memory", help="Same as --method independent.")] = False,
    workers: WorkersOption = None,
    ray_address: RayAddressOption = None,
) -> None:
    """Generate a multi-shot story video with memory into a run folder (resumable)."""
    import time

    from .batch import Job, find_stories, generate_jobs
    from .build import check_inputs
    from .distributed.context_parallel import launched
    from .distributed.lockstep import lead_or_follow
    from .rundir import check_folder_of_runs
    from .runner import generate_story

    _check_workers(workers, ray_address)
    if no_memory:
        settings = settings.replace(method="independent")
    head = str(aesthetic_head) if aesthetic_head else None
    check_inputs(options, settings.keyframe_clip, uses_memory=settings.method == "storymem")
    start = time.perf_counter()
    from .build import build_pipeline

    build = functools.partial(build_pipeline, options, split_shots=True)
    if len(story_paths) > 1 or story_paths[0].is_dir() or workers is not None:
        if overwrite:
            raise InputError(
                "--overwrite works on one story; with several, existing runs continue: delete a run's folder to start it over"
            )
        check_folder_of_runs(out)
        stories = {name: load_story(path) for name, path in find_stories(story_paths).items()}
        jobs = [Job(name, story, out / name, settings, head) for name, story in stories.items()]

        def serially(pipe):
            with lead_or_follow(pipe, launched()) as leading:
                return generate_jobs(pipe, jobs) if leading else None

        batch = _generate_jobs(build, jobs, workers, ray_address, options, serially)
        if batch is not None:
            done = len(jobs) - len(batch.failures)
            print(f"{done} stories ({batch.generated} shots generated) in {time.perf_counter() - start:.1f}s: {out}")
            _fail_if_any(batch, len(jobs))
        return

    story_path = story_paths[0]
    story = load_story(story_path, check_images=not resume)  # a resume uses the run folder's copies
    pipe = build()
    pipe.set_progress_bar_config(leave=False, desc="steps")
    with lead_or_follow(pipe, launched()) as leading:
        if not leading:
            return
        try:
            result = generate_story(pipe, story, out, settings, resume=resume, overwrite=overwrite, aesthetic_head=head)
        except KeyboardInterrupt:
            sys.stderr.write(
                f"interrupted; completed shots are kept. Continue with: storymem generate {story_path} --out {out} --resume (and the same options)\n"
            )
            raise typer.Exit(130) from None
        print(
            f"{result.shots} shots ({result.generated} generated) in {time.perf_counter() - start:.1f}s: "
            f"{result.video} (storyboard: {result.storyboard})"
        )


@app.command()
@pipeline_options
@run_settings("seed", "steps", "frames", "height", "width")
def shot(
    prompt: Annotated[str, typer.Argument(help="What happens in the shot.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output video (.mp4).")] = Path("shot.mp4"),
    memory: Annotated[list[Path] | None, typer.Option(help="Memory keyframe image, oldest first; repeat.")] = None,
    first_frames: Annotated[
        list[Path] | None, typer.Option(help="Previous shot's last frame (MI2V) or last 5 frames (MM2V); repeat.")
    ] = None,
    options: PipelineOptions = None,
    settings: RunSettings = None,
) -> None:
    """Generate one shot conditioned on memory images (the building block of a story)."""
    from .distributed.context_parallel import launched
    from .distributed.lockstep import lead_or_follow
    from .story import visible
    from .video import load_image, write_video

    if not visible(prompt):
        raise InputError(f"PROMPT must not be empty (it has no visible characters), got {prompt!r}")
    if out.suffix.lower() != ".mp4":
        raise InputError(f"--out must name an .mp4 file, got {out}")
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder; name the .mp4 file to write")
    memory_images = [load_image(p) for p in memory or []]
    given = [load_image(p) for p in first_frames or []]
    from .build import build_pipeline

    pipe = build_pipeline(options.replace(load_t2v=not (memory_images or given)), split_shots=True)
    with lead_or_follow(pipe, launched()) as leading:
        if not leading:
            return
        video = pipe.generate_shot(
            prompt,
            memory_images,
            given,
            seed=settings.seed,
            num_inference_steps=settings.steps,
            num_frames=settings.frames,
            height=settings.height,
            width=settings.width,
        )
        write_video(video, out, fps=pipe.preset.fps)
        print(f"wrote {out} ({len(video)} frames, {video[0].width}x{video[0].height})")


def _check_workers(workers: int | None, ray_address: str | None) -> None:
    from .distributed.context_parallel import launched

    if workers is not None and launched():
        raise InputError("--workers starts its own processes; run it as one process, not under torchrun")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if ray_address and workers is None:
        raise InputError("--ray-address needs --workers N (how many runs at once)")


def _fail_if_any(batch, total: int) -> None:
    """After a batch: each failed run in one line, then exit 1 if any failed."""
    if not batch.failures:
        return
    for line in batch.report():
        sys.stderr.write(f"error: {line}\n")
    sys.stderr.write(f"{len(batch.failures)} of {total} runs failed; the others are done (run again to resume)\n")
    raise typer.Exit(1)


def _generate_jobs(build, jobs, workers, ray_address, options: PipelineOptions, serially):
    """The batch's result: by Ray tasks with --workers, else `serially(pipe)` in this process."""
    from .models.presets import get_preset

    if workers is None:
        pipe = build()
        pipe.set_progress_bar_config(disable=True)
        return serially(pipe)
    import torch

    from .build import choose_cpu_threads
    from .distributed.workers import run_jobs

    choose_cpu_threads(options.model, torch.device(_device()))  # the report is computed here, as in a serial run
    gpu = get_preset(options.model).build is None
    return run_jobs(build, repr(options), jobs, workers, ray_address, gpu=gpu)


def _device() -> str:
    from .acceleration import default_device

    return default_device()


@app.command("eval")
def eval_command(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder (from storymem generate).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print everything (per shot and per pair) as JSON.")] = False,
    extractor: ExtractorOption = "auto",
    viclip: ViclipOption = None,
    aesthetic_head: HeadOption = "auto",
) -> None:
    """ST-Bench metrics of one run: aesthetic, prompt following, cross-shot consistency."""
    from .eval import evaluate_run, load_evaluators
    from .rundir import RunDirectory

    run = RunDirectory(run_dir)
    if not run.state_file.is_file():
        raise InputError(f"{run_dir}: not a storymem run folder (no state.json)")
    model = run.read_state()["settings"].get("model")
    video_text, aesthetic = load_evaluators(extractor, model, viclip and str(viclip), aesthetic_head, _device())
    from .eval.report import metric_keys

    metrics = evaluate_run(run_dir, video_text, aesthetic, progress=not as_json)
    keys = metric_keys({"run": {"run": metrics}})  # the paper's five, then e.g. the toy identity
    undefined = _undefined_metrics(metrics, keys)
    if as_json:
        print(json.dumps(_json_safe({**metrics, "undefined": undefined}), indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{metrics['story']} ({metrics['method']}, {len(metrics['shots'])} shots)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in keys:
        value = metrics[key]
        table.add_row(key, f"- ({undefined[key]})" if key in undefined else f"{value:.4f}")
    Console().print(table)
    print(f"features: {metrics['extractor']}; aesthetic: {metrics['aesthetic_model'] or 'not measured'}")
    retaken = [f"{s['shot']} take {s['take']}" for s in metrics["shots"] if s["take"] != 1]
    stale = [s["shot"] for s in metrics["shots"] if s["stale"]]
    if retaken or stale:
        print(f"takes in use: {', '.join(retaken) or 'the first everywhere'}; stale: {', '.join(stale) or 'none'}")


@app.command()
@pipeline_options
@run_settings("seed", "steps", "frames", "keyframe_clip", "memory_policy")
def bench(
    stories: Annotated[list[Path], typer.Argument(help="Story scripts and/or folders of them.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Benchmark folder (runs, results, plots).")],
    methods: Annotated[str, typer.Option(help="Comma-separated: storymem, independent, chain.")] = (
        "storymem,independent,chain"
    ),
    extractor: ExtractorOption = "auto",
    viclip: ViclipOption = None,
    aesthetic_head: HeadOption = "auto",
    options: PipelineOptions = None,
    settings: RunSettings = None,
    workers: WorkersOption = None,
    ray_address: RayAddressOption = None,
) -> None:
    """Generate every story with every method (resumable), evaluate, and write the report."""
    from .batch import generate_jobs
    from .build import check_inputs
    from .eval import load_evaluators
    from .eval.bench import bench_jobs, parse_methods, report_bench
    from .rundir import check_folder_of_runs

    chosen = parse_methods(methods)
    _check_workers(workers, ray_address)
    check_folder_of_runs(out)
    jobs = bench_jobs(stories, chosen, out, settings)  # every script is checked before models load
    check_inputs(options, settings.keyframe_clip, uses_memory="storymem" in chosen)
    video_text, aesthetic = load_evaluators(extractor, options.model, viclip and str(viclip), aesthetic_head, _device())
    from .build import build_pipeline

    build = functools.partial(build_pipeline, options)
    batch = _generate_jobs(build, jobs, workers, ray_address, options, lambda pipe: generate_jobs(pipe, jobs))
    done = batch.succeeded(jobs)
    if done:
        files, _, evaluated = report_bench(done, out, options.model, video_text, aesthetic)
        print((out / "results.md").read_text())
        print(
            f"{batch.generated} shots generated, {evaluated} runs evaluated; "
            f"wrote {out / 'results.md'}, results.csv, results.json, metrics.png, heatmaps/"
        )
    _fail_if_any(batch, len(jobs))


@app.command("app")
@pipeline_options
@run_settings("seed", "steps")
def app_command(
    host: Annotated[str, typer.Option(help="Address to serve on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 7860,
    runs: Annotated[Path, typer.Option(help="Folder holding the app's run folders (CLI runs there show too).")] = Path(
        "runs"
    ),
    stories: Annotated[
        list[Path] | None, typer.Option(help="Story scripts or folders offered in the editor (e.g. ST-Bench); repeat.")
    ] = None,
    options: PipelineOptions = None,
    settings: RunSettings = None,
) -> None:
    """A web app: write a story, watch it being made shot by shot, see the memory, reopen runs.
    The pipeline options are the app's defaults (its Run tab changes model, memory mode, preview)."""
    try:
        from .app.jobs import Generator
        from .app.ui import CSS, build_app
    except ImportError as e:
        raise InputError(f"storymem app needs {e.name}: pip install 'storymem[app]'") from None
    from .batch import find_stories

    if isinstance(port, bool) or not 1 <= port <= 65535:
        raise InputError(f"--port must be a port number from 1 to 65535, got {port}")
    if runs.exists() and not runs.is_dir():
        raise InputError(f"--runs {runs}: is a file; give the folder that holds (or will hold) the app's runs")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    examples = {}
    bundled = Path(__file__).resolve().parents[2] / "examples"
    for source in ([bundled] if bundled.is_dir() else []) + list(stories or []):
        examples.update({name: path for name, path in find_stories([source]).items()})
    try:
        runs.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--runs {runs}: cannot create the folder ({e.strerror})") from None
    page = build_app(Generator(), runs, examples, options, settings)
    try:
        page.queue(default_concurrency_limit=4).launch(server_name=host, server_port=port, css=CSS, show_error=True)
    except OSError as e:  # the port is taken, or the address is not ours
        raise InputError(f"--host {host} --port {port}: cannot serve there ({e})") from None


train_app = typer.Typer(
    help="Fine-tune the StoryMem M2V LoRA on your clips (accelerate + peft); `train cache` precomputes latents.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(train_app, name="train")


@train_app.callback()
def train_command(
    ctx: typer.Context,
    data: Annotated[
        Path | None, typer.Option(help="Folder with clips and metadata.jsonl (video, caption, group).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Checkpoints, loss.png and lora/ go here.")] = None,
    model: Annotated[str, typer.Option(help="Model preset to fine-tune.")] = TrainConfig.model,
    i2v: Annotated[
        str | None,
        typer.Option("--i2v", help="Wan2.2 I2V-A14B weights to fine-tune (folder or hub id; no --t2v: M2V is I2V)."),
    ] = TrainConfig.i2v,
    expert: Annotated[
        str, typer.Option(help="high or low: each expert trains on its own timestep range.")
    ] = TrainConfig.expert,
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = TrainConfig.steps,
    lr: Annotated[float, typer.Option(help="AdamW learning rate (StoryMem: 1e-5).")] = TrainConfig.lr,
    rank: Annotated[int, typer.Option(help="LoRA rank (StoryMem: 128, alpha = rank, rsLoRA).")] = TrainConfig.rank,
    max_memory: Annotated[int, typer.Option(help="Memory frames per example: 1 to this.")] = TrainConfig.max_memory,
    p_first: Annotated[
        float, typer.Option(help="Probability of also giving the target's first frame(s).")
    ] = TrainConfig.p_first,
    variant: Annotated[str, typer.Option(help="mi2v (first frame) or mm2v (first 5 frames).")] = TrainConfig.variant,
    batch_size: int = TrainConfig.batch_size,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.")] = TrainConfig.grad_accum,
    mixed_precision: Annotated[str, typer.Option(help="no, bf16 or fp16.")] = TrainConfig.mixed_precision,
    gradient_checkpointing: bool = TrainConfig.gradient_checkpointing,
    keyframes_per_clip: Annotated[
        int, typer.Option(help="Memory candidates per clip (evenly spaced frames).")
    ] = TrainConfig.keyframes_per_clip,
    frames: Annotated[int | None, typer.Option(help="Frames per clip, 4k+1 (default: the preset's).")] = None,
    height: int | None = None,
    width: int | None = None,
    cache: Annotated[Path | None, typer.Option(help="Latent cache from `storymem train cache`.")] = None,
    checkpoint_every: int = TrainConfig.checkpoint_every,
    seed: int = TrainConfig.seed,
    resume: Annotated[bool, typer.Option(help="Continue from the latest checkpoint in --out.")] = False,
) -> None:
    """Train one expert's M2V LoRA; writes --out/lora/backbone_<expert>_noise.safetensors."""
    if ctx.invoked_subcommand is not None:
        return
    if data is None or out is None:
        raise InputError("storymem train needs --data DIR and --out DIR")
    from .train import train

    config = TrainConfig(
        data=str(data), out=str(out), model=model, expert=expert, steps=steps, lr=lr, rank=rank,
        max_memory=max_memory, p_first=p_first, variant=variant, batch_size=batch_size, grad_accum=grad_accum,
        mixed_precision=mixed_precision, gradient_checkpointing=gradient_checkpointing,
        keyframes_per_clip=keyframes_per_clip, frames=frames, height=height, width=width,
        cache=str(cache) if cache else None, checkpoint_every=checkpoint_every, seed=seed, i2v=i2v,
    )  # fmt: skip
    file = train(config, resume=resume)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun / accelerate launch: rank 0 reports
        return
    other = "low" if expert == "high" else "high"
    complete = len(list(file.parent.glob("backbone_*_noise.safetensors"))) == 2
    print(f"wrote {file}; loss plot: {out / expert / 'loss.png'}")
    print(
        f"use it with: storymem generate STORY --model {model} --lora {file.parent}"
        if complete
        else f"train the {other}-noise expert into the same --out (--expert {other}) to complete {file.parent}"
    )


@train_app.command("cache")
def train_cache(
    data: Annotated[Path, typer.Option(help="Folder with clips and metadata.jsonl.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Cache folder.")],
    model: Annotated[str, typer.Option(help="Model preset (its VAE and text encoder).")] = TrainConfig.model,
    i2v: Annotated[
        str | None, typer.Option("--i2v", help="Wan2.2 I2V-A14B weights (folder or hub id): its VAE and UMT5.")
    ] = None,
    variant: Annotated[str, typer.Option(help="mi2v or mm2v (which first frames to encode).")] = TrainConfig.variant,
    keyframes_per_clip: int = TrainConfig.keyframes_per_clip,
    frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
) -> None:
    """Precompute clip latents, memory-candidate latents and caption embeddings once."""
    from .pipelines import StoryMemPipeline
    from .train import EncodeSettings, load_metadata, write_cache

    clips = load_metadata(data)
    pipe = StoryMemPipeline.from_preset(model, lora=False, load_t2v=False, i2v=i2v)
    pipe.enable_memory_mode("resident")  # the experts are never activated here: they stay on the CPU
    preset = pipe.preset
    settings = EncodeSettings(
        model, height or preset.height, width or preset.width, frames or preset.num_frames, keyframes_per_clip, variant
    )
    index = write_cache(pipe, clips, settings, out)
    print(f"cached {len(clips)} clips in {out} ({index.name}); train with --cache {out}")


@app.command("toy-stories")
def toy_stories(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the story scripts.")],
    count: Annotated[int, typer.Option(help="How many stories.")] = 20,
    shots: Annotated[int, typer.Option(help="Shots per story (two scenes).")] = 6,
    seed: Annotated[int, typer.Option(help="Seed of the first story; story i uses seed + i.")] = 0,
    characters: Annotated[
        int, typer.Option(help="Characters per story (2 or more: each introduced in its own shot).")
    ] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace story files of the same names that differ.")] = False,
    references: Annotated[
        bool,
        typer.Option(
            help="A cast: each character gets a reference image (refs/), and no prompt says its look "
            "(run with --memory-policy entity)."
        ),
    ] = False,
) -> None:
    """Write toy-world stories (ST-Bench format) for the built-in `toy` model and its benchmark."""
    from .toyworld import write_stories

    if count < 1 or shots < 2:
        raise InputError("--count must be at least 1 and --shots at least 2")
    if not 1 <= characters <= 6 or (characters > 1 and shots <= characters):
        raise InputError("--characters must be 1 to 6, with more --shots than characters")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    if (out / "state.json").is_file():
        raise InputError(f"--out {out}: is a run folder; write the stories into a folder of their own")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--out {out}: cannot create the folder ({e.strerror})") from None
    written = write_stories(out, count, shots, seed, characters, overwrite=overwrite, references=references)
    kept = f" ({count - written} were there already)" if written < count else ""
    policy = " --memory-policy entity" if references or characters > 1 else ""
    print(
        f"wrote {written} toy stories to {out}{kept}; run them with: "
        f"storymem bench {out} --model toy --out toy-bench{policy}"
    )


@app.command()
def write(
    idea: Annotated[str, typer.Argument(help="What the story is about, in a sentence or two.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The story script to write (.json).")],
    shots: Annotated[int, typer.Option(help="Shots in all.")] = 6,
    scenes: Annotated[int, typer.Option(help="Scenes (the shots are spread evenly over them).")] = 2,
    characters: Annotated[
        str | None, typer.Option(help='Names of the characters, comma-separated ("Tam, Ole"); else invented.')
    ] = None,
    invent: Annotated[int, typer.Option(help="How many characters to invent when --characters is not given.")] = 1,
    llm: Annotated[
        str | None,
        typer.Option(
            help="The language model: a folder or hub id (run here), an OpenAI-compatible server "
            "(http://localhost:11434/v1; key from STORYMEM_LLM_API_KEY or OPENAI_API_KEY), or tiny (tests). "
            "Default: Qwen/Qwen2.5-0.5B-Instruct."
        ),
    ] = None,
    llm_model: Annotated[str | None, typer.Option(help="The model's name on a server (default: its first).")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds a server may take to answer.")] = 300.0,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Write a story script from an idea with a language model; always a valid story."""
    from .files import write_json
    from .write import DEFAULT_LLM, write_story

    if out.suffix.lower() != ".json":
        raise InputError(f"--out must name a .json file, got {out}")
    if out.exists() and not overwrite:
        raise InputError(f"--out {out}: exists; nothing was written (choose another name, or --overwrite)")
    if shots < 1 or scenes < 1 or invent < 1:
        raise InputError("--shots, --scenes and --invent must be at least 1")
    names = [n.strip() for n in characters.split(",")] if characters else []
    if characters is not None and not all(names):
        raise InputError(f"--characters: an empty name in {characters!r}; give names separated by commas")
    device = _device() if llm and not llm.startswith(("http://", "https://")) else "cpu"
    story = write_story(
        idea, shots, scenes, names, llm or DEFAULT_LLM, seed, llm_model, device, count=invent, timeout=timeout
    )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, story)
    except OSError as e:
        raise InputError(f"--out {out}: cannot write it ({e.strerror})") from None
    total = sum(len(s["video_prompts"]) for s in story["scenes"])
    print(f"wrote {out}: {len(story['scenes'])} scenes, {total} shots, {len(story['characters'])} characters")


@app.command()
def memory(
    run: Annotated[Path, typer.Argument(help="A run folder (storymem generate --out).")],
    action: Annotated[
        str | None, typer.Argument(help="pin, unpin or drop KEYFRAME (e.g. 01_01_f012); add IMAGE. None: list.")
    ] = None,
    target: Annotated[str | None, typer.Argument(help="The keyframe's name in the run folder, or the image.")] = None,
    character: Annotated[str | None, typer.Option(help="add: the story's character the image shows.")] = None,
) -> None:
    """List a run's memory (and write RUN/memory-sheet.png), or steer it by hand before its next
    shot; `storymem generate ... --resume` continues with the edits."""
    from .direct import Run

    actions = ("pin", "unpin", "drop", "add")
    if action is not None and action not in actions:
        raise InputError(f"memory: the action must be one of {', '.join(actions)}, got {action!r}")
    if action is not None and not target:
        what = "IMAGE" if action == "add" else "KEYFRAME"
        raise InputError(f"memory {action}: give the {what} (storymem memory RUN {action} {what})")
    if character is not None and action != "add":
        raise InputError("--character goes with add IMAGE")
    directed = Run(run)
    if action is not None:
        method = getattr(directed.memory, action)
        edit = method(target, character) if action == "add" else method(target)
        shots = [s.name for s in directed.story().shots]
        start = f"shot {shots[edit.start]} on" if edit.start < len(shots) else "the shots made from now on"
        print(f"{action} {Path(edit.file).stem}: applies from {start}")
        return
    for e in directed.memory.entries():
        flags = " ".join(f for f, on in (("pinned", e.pinned), ("dropped", e.dropped)) if on)
        who = ", ".join(e.characters) or "-"
        print(f"{e.name:<14} {e.place:<9} shot {e.shot:<6} frame {e.frame:<3} {who:<16} {flags}".rstrip())
    print(f"contact sheet: {directed.memory.sheet()}")


@app.command()
@pipeline_options
def reshoot(
    run: Annotated[Path, typer.Argument(help="A run folder (storymem generate --out).")],
    shot: Annotated[str, typer.Argument(help="The shot's name in the run folder (e.g. 01_03) or its number.")],
    options: PipelineOptions,
    prompt: Annotated[str | None, typer.Option(help="A new prompt for the shot (default: its own).")] = None,
    seed: Annotated[
        int | None, typer.Option(help="The shot's own seed (state.json records each; default: a new one).")
    ] = None,
    then: Annotated[
        str, typer.Option(help="keep: keep the later shots (marked stale); redo: make them again from the new memory.")
    ] = "keep",
) -> None:
    """Make one shot of a run again, with the memory it had; the old take is kept (takes/)."""
    from .build import build_pipeline
    from .direct import Run

    if then not in ("keep", "redo"):
        raise InputError(f"--then must be keep or redo, got {then!r}")
    directed = Run(run)
    name = directed.shot_name(int(shot) if shot.isdigit() else shot)
    pipe = build_pipeline(options)
    pipe.set_progress_bar_config(leave=False, desc="steps")
    take = directed.reshoot(pipe, name, prompt, seed, then)
    record = directed.takes(name)[take - 1]
    stale = directed.state().get("stale", [])
    print(
        f"shot {name}: take {take} (seed {record['seed']}) in use; the others are in {run / 'takes'}"
        + (f"; stale: {', '.join(stale)}" if stale else "")
    )


@app.command()
def takes(
    run: Annotated[Path, typer.Argument(help="A run folder.")],
    shot: Annotated[str, typer.Argument(help="The shot's name (e.g. 01_03) or its number.")],
    use: Annotated[int | None, typer.Option(help="Put take N back in use (story.mp4 is joined again).")] = None,
) -> None:
    """List the takes of a shot, or switch to one of them."""
    from .direct import Run

    directed = Run(run)
    name = directed.shot_name(int(shot) if shot.isdigit() else shot)
    if use is not None:
        directed.use_take(name, use)
    for t in directed.takes(name):
        mark = "*" if t["in_use"] else " "
        print(f"{mark} take {t['take']}  seed {t['seed']}  {t['video']}  {t['prompt']}")
    stale = directed.state().get("stale", [])
    if stale:
        print(f"stale (made after other takes): {', '.join(stale)}")


@app.command()
def presets() -> None:
    """List the model presets."""
    from .models.presets import PRESETS

    for preset in PRESETS.values():
        print(f"{preset.name:12s} {preset.width}x{preset.height}, {preset.num_frames} frames: {preset.description}")


def _undefined_metrics(metrics: dict, keys) -> dict[str, str]:
    """Why each metric without a number has none."""
    import math

    reasons = {}
    for key in keys:
        value = metrics.get(key)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            if key.startswith("consistency") and len(metrics.get("shots", [])) < 2:
                reasons[key] = "one shot: no pairs of shots to compare"
            elif key == "aesthetic":
                reasons[key] = "not measured (no aesthetic head)"
            else:
                reasons[key] = "not defined for this run"
    return reasons


def _json_safe(value):
    """Strict JSON: NaN and infinities become null (their reason is under "undefined")."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _error(e: BaseException) -> None:
    # Plain stderr, not rich: a long path must not be wrapped onto several lines. Progress bars
    # still open are closed first, so the error starts a line of its own.
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", [])):
        bar.close()
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone speaks
        sys.stderr.write(f"error: {e}\n")


def main() -> None:
    try:
        app()
    except StoryMemError as e:
        _error(e)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
