"""How the built-in `toy` model is made: StoryMem's recipe at toy scale, in three stages.

1. base: the I2V network trained from scratch on single toy clips. Half have their first frame
   given (I2V), half not (T2V); 10% have an empty caption (for guidance). T2V captions spell the
   look out ("Pip, a red striped circle, walks in the forest."); I2V captions mostly (90%) name
   the character only ("Pip walks in the forest."), so the base model learns to carry a look over
   from a given frame, as Wan's I2V does. With `p_memory` > 0 (default 0), that share of base
   steps are memory examples instead (`memory_example`).
2. memory (`train_memory`): the base continued on memory examples (p_memory 0.8: the look must
   come from 1-3 frames of the same look in other scenes) in six warm restarts of 2000 steps. This
   is what makes the shape carry from memory (12000 steps: shape from another scene 0.60 against
   0.40, single-story identity +42 to +47 points over independent shots on two seeds; the
   experiments are in docs/notes/toy-experiments.md).
3. lora: the M2V LoRA, `storymem.train` on grouped clips (a group is one look under one random
   name, its captions mostly naming the character only). The shipped toy has none: on the
   memory-trained base it lowered identity.

`scripts/train_toy_model.py` runs base and memory by default (the shipped weights' recipe); both
resume after an interruption (a checkpoint every `checkpoint_every` base steps, and each memory
cycle). `--init DIR` starts the first stage run from weights already made instead of random ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..conditioning import condition_pixels, model_input
from ..files import read_json, write_json
from ..models.lora import EXPERT_FILES
from ..train.trainer import TrainConfig, sample_sigmas, train
from .model import BASE_FILE, build_toy_components
from .stories import ToyShot
from .world import ACTIONS, ALL_LOOKS, NAMES, PLACES, SHOTS, render_clip


@dataclass
class RecipeConfig:
    out: str
    base_steps: int = 10000
    base_lr: float = 1e-3
    base_batch: int = 8
    ema: float = 0.999
    groups: int = 300
    clips_per_group: int = 5
    lora_steps: int = 1000
    lora_lr: float = 3e-4
    lora_rank: int = 32
    lora_batch: int = 8
    max_memory: int = 6
    p_look_caption: float = 0.1  # share of M2V captions that still spell the look out
    p_look_given: float = 0.1  # share of base I2V captions (first frame given) that spell the look out
    p_memory: float = 0.0  # share of base steps whose batch reads its look from memory frames (M2V)
    mixed_precision: str = "no"  # no | bf16: autocast for every stage (weights stay fp32; bf16 is for GPUs)
    clip_format: str = "mp4"  # mp4 (lossless H.264) | tif (multi-page, for machines without ffmpeg)
    init: str = ""  # a weights folder the first stage run continues from ("": random weights)
    memory_cycles: int = 6  # memory stage: base training on memory examples, in warm restarts
    memory_steps: int = 2000  # steps per cycle (each: fresh optimiser, warm-up, cosine decay)
    memory_lr: float = 5e-4
    memory_p: float = 0.8  # share of memory-stage steps that are memory examples
    memory_shot_frames: int = 0  # frames of a memory example's shot (0: the preset's; 1: one random frame)
    checkpoint_every: int = 500  # base steps between checkpoints (an interrupted stage resumes from the last)
    seed: int = 0


def random_shot(rng: np.random.Generator, look=None, name=None, describe: bool = True) -> tuple[ToyShot, object]:
    look = look or ALL_LOOKS[rng.integers(len(ALL_LOOKS))]
    shot = ToyShot(
        name or NAMES[rng.integers(len(NAMES))],
        ACTIONS[rng.integers(len(ACTIONS))],
        list(PLACES)[rng.integers(len(PLACES))],
        SHOTS[rng.integers(len(SHOTS))],
        look if describe else None,
    )
    return shot, look


def to_pixels(clip: np.ndarray) -> torch.Tensor:
    """uint8 [F, H, W, 3] -> [3, F, H, W] in [-1, 1]."""
    return torch.from_numpy(clip).permute(3, 0, 1, 2).float() / 127.5 - 1.0


def base_batch(pipe, rng: np.random.Generator, size: int, frames: int, config: RecipeConfig):
    """(x0, condition, text) for single-clip base training."""
    clips, givens, captions = [], [], []
    for _ in range(size):
        given = 1 if rng.random() < 0.5 else 0
        # With its first frame given, a clip's caption often names the character only: the base
        # model must then copy the look from the given frame, which M2V builds on.
        describe = given == 0 or rng.random() < config.p_look_given
        shot, look = random_shot(rng, describe=describe)
        clips.append(to_pixels(render_clip(look, shot.place, shot.action, shot.shot, frames=frames)))
        givens.append(given)
        captions.append(shot.caption() if rng.random() >= 0.1 else "")
    pixels = torch.stack(clips)
    x0 = pipe.vae_encode(pixels)
    video_conditions = pipe.vae_encode(
        torch.cat(
            [condition_pixels(p[None, :, :g], frames, *p.shape[-2:]) for p, g in zip(pixels, givens, strict=True)]
        )
    )
    condition = torch.cat(
        [pipe.assemble_condition(None, v[None], g, frames) for v, g in zip(video_conditions, givens, strict=True)]
    )
    return x0, condition, pipe.encode_prompts(captions)


def memory_example(rng: np.random.Generator, frames: int, count: int, config: RecipeConfig):
    """(shot, look, clip, memory): a clip whose caption mostly names the character only, and
    `count` (scene, frame) pairs showing the same look in other random scenes. With
    `config.memory_shot_frames` 1 the clip is one random frame of the shot: 1.6x faster steps,
    but measured on seed 1 the shape no longer carried from memory into 5-frame shots (README)."""
    shot, look = random_shot(rng, describe=rng.random() < config.p_look_given)
    clip = render_clip(look, shot.place, shot.action, shot.shot, frames=frames)
    if config.memory_shot_frames == 1:
        start = rng.integers(frames)
        clip = clip[start : start + 1]
    elif config.memory_shot_frames != 0:
        raise ValueError(f"memory_shot_frames: expected 0 (the whole shot) or 1, got {config.memory_shot_frames}")
    memory = []
    for _ in range(count):
        scene, _ = random_shot(rng, look)
        memory.append(
            (scene, render_clip(look, scene.place, scene.action, scene.shot, frames=frames)[rng.integers(frames)])
        )
    return shot, look, clip, memory


def memory_batch(pipe, rng: np.random.Generator, size: int, frames: int, count: int, config: RecipeConfig):
    """(x0 = [memory | video], condition, text) for base examples whose look must come from
    `count` memory frames (`memory_example`); nothing else is given."""
    clips, memories, captions = [], [], []
    for _ in range(size):
        shot, _, clip, memory = memory_example(rng, frames, count, config)
        clips.append(to_pixels(clip))
        memories += [to_pixels(frame[None]) for _, frame in memory]
        captions.append(shot.caption() if rng.random() >= 0.1 else "")
    video = pipe.vae_encode(torch.stack(clips))
    memory = pipe.vae_encode(torch.stack(memories))  # [B * count, C, 1, h, w]
    memory = memory.unflatten(0, (size, count)).squeeze(3).transpose(1, 2)  # [B, C, count, h, w]
    shot_frames = clips[0].shape[1]
    nothing_given = pipe.encode_video_condition([], shot_frames, *clips[0].shape[-2:])  # encoded once, cached
    condition = pipe.assemble_condition(memory, nothing_given.expand(size, -1, -1, -1, -1), 0, shot_frames)
    return torch.cat([memory, video], dim=2), condition, pipe.encode_prompts(captions)


def train_base(pipe, config: RecipeConfig, work: Path, progress: bool = True, label: str = "base model") -> list[float]:
    """Trains pipe.transformer from its current weights (random, or `init`'s), on a CUDA GPU when
    there is one; leaves the EMA weights in it, on the CPU. Clips, noise and noise levels are drawn on the CPU, so a GPU
    sees the same examples as a CPU."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pipe.to(device)
    model = pipe.transformer.train().requires_grad_(True)
    ema = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.base_lr, weight_decay=0.01)
    warmup = min(200, config.base_steps // 10 + 1)

    def schedule(step: int) -> float:  # linear warm-up, cosine decay
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, config.base_steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    frames, shift = pipe.preset.num_frames, pipe.preset.m2v.shift
    losses = []
    checkpoint = work / CHECKPOINT
    settings = {"start": weights_fingerprint(model)} | train_base_settings(config)
    state = _read_checkpoint(checkpoint, settings)
    if state is not None:  # an interrupted run of the same settings from the same weights
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["rng"]
        generator.set_state(state["generator"])
        losses = list(state["losses"])
    first = len(losses)
    bar = tqdm(range(first, config.base_steps), desc=label, initial=first, total=config.base_steps,
               disable=not progress)  # fmt: skip
    for step in bar:
        # (no draw at all when p_memory is 0, so the shipped recipe's examples stay as they were)
        num_memory = int(rng.integers(1, 4)) if config.p_memory > 0 and rng.random() < config.p_memory else 0
        with torch.no_grad():
            if num_memory:
                x0, condition, text = memory_batch(pipe, rng, config.base_batch, frames, num_memory, config)
            else:
                x0, condition, text = base_batch(pipe, rng, config.base_batch, frames, config)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        sigma = sample_sigmas(len(x0), "high", shift, 0.0, generator).to(device).view(-1, 1, 1, 1, 1)
        x = model_input((1 - sigma) * x0 + sigma * noise, condition)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=config.mixed_precision == "bf16"):
            prediction = model(x, sigma.flatten() * 1000, text, return_dict=False, num_memory_frames=num_memory)[0]
        # the loss covers the shot only, as in the M2V trainer
        loss = torch.nn.functional.mse_loss(prediction.float()[:, :, num_memory:], (noise - x0)[:, :, num_memory:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
        ema.update_parameters(model)
        losses.append(loss.item())
        if step % 50 == 49:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.base_steps:
            _write_checkpoint(checkpoint, settings, model, ema, optimizer, scheduler, rng, generator, losses)
    model.load_state_dict(ema.module.state_dict())
    model.eval().requires_grad_(False)
    pipe.to("cpu")
    work.mkdir(parents=True, exist_ok=True)
    write_json(work / "base_losses.json", losses)
    checkpoint.unlink(missing_ok=True)
    return losses


CHECKPOINT = "base-checkpoint.pt"


def train_base_settings(config: RecipeConfig) -> dict:
    return {k: v for k, v in asdict(config).items() if k in TRAIN_BASE_SETTINGS}


def _write_checkpoint(path: Path, settings, model, ema, optimizer, scheduler, rng, generator, losses) -> None:
    """Everything the next step depends on, so a resumed base stage equals an uninterrupted one."""
    state = {
        "settings": json.dumps(settings, sort_keys=True),
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng.bit_generator.state,
        "generator": generator.get_state(),
        "losses": losses,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # a crash leaves the last whole checkpoint


def _read_checkpoint(path: Path, settings: dict) -> dict | None:
    """The saved state of an interrupted run with these settings, or None (none, or other)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged checkpoint: start the stage again
        return None
    return state if state.get("settings") == json.dumps(settings, sort_keys=True) else None


def write_groups(folder: Path, config: RecipeConfig, frames: int) -> Path:
    """The M2V training set: `groups` looks, each under a random name, `clips_per_group` clips."""
    import imageio.v3 as iio

    from ..video import write_lossless_video

    if config.clip_format not in ("mp4", "tif"):
        raise ValueError(f"clip_format: expected mp4 or tif, got {config.clip_format!r}")

    rng = np.random.default_rng(config.seed + 1)
    lines = []
    for g in range(config.groups):
        look, name = ALL_LOOKS[rng.integers(len(ALL_LOOKS))], NAMES[rng.integers(len(NAMES))]
        for c in range(config.clips_per_group):
            shot, _ = random_shot(rng, look, name, describe=rng.random() < config.p_look_caption)
            path = f"clips/{g:04d}-{c}.{config.clip_format}"
            clip = render_clip(look, shot.place, shot.action, shot.shot, frames=frames)
            if config.clip_format == "mp4":
                write_lossless_video(clip, folder / path)
            else:  # both are read back bit for bit by read_video
                (folder / path).parent.mkdir(parents=True, exist_ok=True)
                iio.imwrite(folder / path, clip)
            lines.append(json.dumps({"video": path, "caption": shot.caption(), "group": f"group-{g:04d}"}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def save_base(pipe, folder: Path) -> Path:
    state = {f"transformer.{k}": v.contiguous() for k, v in pipe.transformer.state_dict().items()}
    state |= {f"text_encoder.{k}": v.clone().contiguous() for k, v in pipe.text_encoder.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / BASE_FILE))
    return folder / BASE_FILE


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of a module's parameters, in order: which weights a memory cycle started from."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


# What train_base reads from its config: a saved memory cycle is reused only if these match.
TRAIN_BASE_SETTINGS = (
    "base_steps",
    "base_lr",
    "base_batch",
    "ema",
    "p_look_given",
    "p_memory",
    "memory_shot_frames",
    "mixed_precision",
    "seed",
)


def memory_cycle_config(config: RecipeConfig, cycle: int) -> RecipeConfig:
    """The base-stage settings of memory cycle `cycle`, with a seed of its own so that each cycle
    draws new examples: 100, 101, 102, 200, 201, 202, ... for seed 0 (the measured run, made as two
    runs of three cycles), 110, 111, 112, 210, ... for seed 1 (seeds 0-9 never share one)."""
    return replace(
        config,
        base_steps=config.memory_steps,
        base_lr=config.memory_lr,
        p_memory=config.memory_p,
        seed=100 * (cycle // 3 + 1) + 10 * config.seed + cycle % 3,
    )


def train_memory(pipe, config: RecipeConfig, work: Path, progress: bool = True) -> list[float]:
    """The memory stage: continues pipe.transformer with `train_base` on memory examples for
    `memory_cycles` cycles, each from the last one's EMA weights with a fresh optimiser, warm-up
    and cosine decay (the schedule measured in the README). Each cycle's weights are saved in
    work/memory/cycle-N; run again with the same settings from the same weights, it starts after
    the last cycle saved."""
    losses = []
    bar = tqdm(range(config.memory_cycles), desc="memory cycles", disable=not progress)
    for cycle in bar:
        cycle_config = memory_cycle_config(config, cycle)
        folder = work / "memory" / f"cycle-{cycle}"
        settings = {"start": weights_fingerprint(pipe.transformer)}
        settings |= train_base_settings(cycle_config)
        fix = f"delete {folder} to train this cycle again"
        if (folder / "settings.json").is_file() and read_json(
            folder / "settings.json", "cycle's settings", fix
        ) == settings:
            state = build_toy_components(weights=folder)["transformer"].state_dict()
            pipe.transformer.load_state_dict(state)
            losses += read_json(folder / "base_losses.json", "cycle's loss history", fix)
            continue
        losses += train_base(pipe, cycle_config, folder, progress, f"memory cycle {cycle + 1}/{config.memory_cycles}")
        save_base(pipe, folder)
        write_json(folder / "settings.json", settings)  # last: a cycle without it is trained again
    return losses


STAGES = ("base", "memory", "lora")


def make_toy_model(
    config: RecipeConfig, weights_out: Path, progress: bool = True, stages: tuple[str, ...] = STAGES
) -> dict:
    """Writes base.safetensors (stages "base" and "memory") and lora/ (stage "lora") into
    `weights_out`. The first stage run starts from `config.init` when set; otherwise the base
    stage starts from random weights and the others from the base already in `weights_out` (so
    the stages can run on different machines). Returns the losses of the stages run."""
    from ..pipelines import StoryMemPipeline

    torch.manual_seed(config.seed)
    work = Path(config.out)
    work.mkdir(parents=True, exist_ok=True)
    start = config.init or (None if "base" in stages else weights_out)
    pipe = StoryMemPipeline(**build_toy_components(weights=start), preset="toy")
    losses = {stage: [] for stage in STAGES}
    if "base" in stages:
        losses["base"] = train_base(pipe, config, work, progress)
        save_base(pipe, weights_out)
    if "memory" in stages:
        losses["memory"] = train_memory(pipe, config, work, progress)
        save_base(pipe, weights_out)
    if "lora" not in stages:
        return losses

    data = write_groups(work / "groups", config, pipe.preset.num_frames)
    lora_config = TrainConfig(
        data=str(data),
        out=str(work / "m2v"),
        model="toy",
        expert="high",  # boundary 0: the high-noise expert covers every noise level
        steps=config.lora_steps,
        lr=config.lora_lr,
        rank=config.lora_rank,
        max_memory=config.max_memory,
        batch_size=config.lora_batch,
        keyframes_per_clip=3,
        mixed_precision=config.mixed_precision,
        checkpoint_every=max(config.lora_steps // 3, 1),
        seed=config.seed,
    )
    if (work / "m2v").exists():
        shutil.rmtree(work / "m2v")
    high = train(lora_config, pipe=pipe, progress=progress)
    lora_dir = weights_out / "lora"
    lora_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(high, lora_dir / f"{EXPERT_FILES['high']}.safetensors")
    # The same network serves both noise ranges, so the low-noise expert gets the same LoRA.
    shutil.copy(high, lora_dir / f"{EXPERT_FILES['low']}.safetensors")
    lora_losses = json.loads((work / "m2v" / "high" / f"checkpoint-{config.lora_steps}" / "state.json").read_text())
    return losses | {"lora": lora_losses["losses"]}
