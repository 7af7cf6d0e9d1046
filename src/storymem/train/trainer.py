"""M2V LoRA fine-tuning of one Wan2.2 I2V expert with accelerate + peft (reference section 6).

One step, per example of the batch:
    draw the target clip, 1..max_memory memory frames from other clips of its group, and (with
    probability p_first) its own first 1 / 5 frames as given frames
    condition = pipe.assemble_condition(memory latents, video condition latents)   # = inference
    x0 = [memory latents | target video latents]   (memory first in time, as at inference)
    sigma from the expert's range of the preset's shifted schedule (high: sigma >= boundary)
    x_t = (1 - sigma) x0 + sigma noise;  target velocity = noise - x0   (rectified flow)
    loss = MSE(expert([x_t | condition], 1000 sigma, text, M), velocity) on the VIDEO latents only

The memory slots of x_t carry the memory latents noised like the rest: at inference they start
as noise and are denoised along with the video, then dropped.

Layout of --out (train both experts into the same folder to get a complete LoRA):
    <expert>/checkpoint-<step>/   LoRA weights, optimizer, RNG states, loss history
    <expert>/latest.json, <expert>/loss.png
    lora/backbone_<expert>_noise.safetensors   the official StoryMem format

Checkpoints hold the LoRA weights, the optimizer, every RNG state and the
loss history, so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..conditioning import model_input
from ..errors import InputError
from ..files import write_json
from ..models import lora as lora_io
from .cache import EncodeSettings, encode_dataset, read_cache
from .config import TrainConfig, check_config
from .data import Draw, MemorySampler, group_indices, load_metadata

EXPERTS = {"high": "transformer", "low": "transformer_2"}


def sigma_range(expert: str, boundary: float) -> tuple[float, float]:
    """The expert's noise levels: high-noise expert sigma in [boundary, 1], low-noise [0, boundary)."""
    return (boundary, 1.0) if expert == "high" else (0.0, boundary)


def shifted_sigmas(u: torch.Tensor, shift: float) -> torch.Tensor:
    """The flow schedule's shift (as the UniPC/Euler flow schedulers): sigma = s u / (1 + (s - 1) u)."""
    return shift * u / (1 + (shift - 1) * u)


def sample_sigmas(n: int, expert: str, shift: float, boundary: float, generator: torch.Generator) -> torch.Tensor:
    """Uniform u mapped through the shift, restricted to the expert's range (inverse shift of the bounds)."""
    low, high = sigma_range(expert, boundary)

    def unshift(sigma: float) -> float:
        return sigma / (shift - (shift - 1) * sigma)

    u = unshift(low) + (unshift(high) - unshift(low)) * torch.rand(n, generator=generator)
    return shifted_sigmas(u, shift)


def lora_config(config: TrainConfig, transformer):
    from peft import LoraConfig

    return LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha if config.alpha is not None else config.rank,
        use_rslora=True,
        lora_dropout=config.dropout,
        target_modules=sorted(lora_io.target_layers(transformer)),
        init_lora_weights=True,
    )


def build_batch(draws: list[Draw], encoded: list[dict], zero_video: torch.Tensor, pipe, frames: int):
    """(x0 [B, 16, M + T, h, w], condition [B, 20, M + T, h, w], text [B, L, D], M) for a batch."""
    memory = torch.stack([torch.stack([encoded[c]["keyframes"][k] for c, k in d.memory], dim=1) for d in draws])
    video = torch.stack([encoded[d.target]["video"] for d in draws])
    conditions = []
    for d, m in zip(draws, memory, strict=True):
        video_condition = encoded[d.target]["given"] if d.given else zero_video
        conditions.append(pipe.assemble_condition(m[None], video_condition[None], d.given, frames))
    text = torch.stack([encoded[d.target]["text"] for d in draws])
    return torch.cat([memory, video], dim=2), torch.cat(conditions), text, memory.shape[2]


class Trainer:
    def __init__(self, config: TrainConfig, pipe=None, progress: bool = True):
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState

        from ..pipelines import StoryMemPipeline

        c = self.config = config
        if c.expert not in EXPERTS:
            raise InputError(f"--expert must be high or low, got {c.expert!r}")
        check_config(c)
        self.out = Path(c.out)
        self.work = self.out / c.expert
        self.progress = progress
        # accelerate keeps one process-wide state; a second training in the same process (the toy
        # recipe, a notebook) may ask for another precision, so start from a clean state
        AcceleratorState._reset_state(reset_partial_state=True)
        self.accelerator = Accelerator(mixed_precision=c.mixed_precision, gradient_accumulation_steps=c.grad_accum)
        clips = load_metadata(c.data)
        self.pipe = pipe or StoryMemPipeline.from_preset(c.model, lora=False, load_t2v=False, i2v=c.i2v)
        self.pipe.to(self.accelerator.device)
        preset = self.pipe.preset
        self.frames = c.frames or preset.num_frames
        self.settings = EncodeSettings(
            c.model, c.height or preset.height, c.width or preset.width, self.frames, c.keyframes_per_clip, c.variant
        )
        if c.cache:
            self.encoded, self.zero_video = read_cache(Path(c.cache), clips, self.settings)
        else:
            self.encoded, self.zero_video = encode_dataset(self.pipe, clips, self.settings, progress)
        self.sampler = MemorySampler(group_indices(clips), c.keyframes_per_clip, c.max_memory, c.p_first, c.variant)
        self.sampling = preset.m2v

        from accelerate.utils import set_seed

        set_seed(c.seed)  # LoRA init and dropout draw from the global RNGs
        model = getattr(self.pipe, EXPERTS[c.expert])
        model.requires_grad_(False)
        if lora_io.ADAPTER_NAME in getattr(model, "peft_config", {}):
            model.delete_adapters(lora_io.ADAPTER_NAME)
        model.add_adapter(lora_config(c, model), adapter_name=lora_io.ADAPTER_NAME)
        if c.init_lora:
            self._load_lora_weights(model, load_file(c.init_lora))
        if c.gradient_checkpointing:
            model.enable_gradient_checkpointing()
        model.train()
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        for p in self.trainable:
            p.data = p.data.float()  # LoRA weights train in fp32 under mixed precision
        optimizer = torch.optim.AdamW(self.trainable, lr=c.lr, weight_decay=0.0)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        rank = self.accelerator.process_index  # each process draws its own examples and noise
        self.generator = torch.Generator().manual_seed(c.seed * 65536 + rank)
        self.rng = np.random.default_rng((c.seed, rank))
        self.step, self.losses = 0, []

    # ---------------------------------------------------------------- the step
    def loss(self, draws: list[Draw]) -> torch.Tensor:
        device = self.accelerator.device
        x0, condition, text, num_memory = build_batch(draws, self.encoded, self.zero_video, self.pipe, self.frames)
        x0, condition, text = x0.to(device), condition.to(device), text.to(device)
        noise = torch.randn(x0.shape, generator=self.generator).to(device)
        sigma = sample_sigmas(
            len(draws), self.config.expert, self.sampling.shift, self.sampling.boundary, self.generator
        )
        sigma = sigma.to(device).view(-1, 1, 1, 1, 1)
        noisy = (1 - sigma) * x0 + sigma * noise
        x = model_input(noisy, condition)
        timestep = (sigma.flatten() * 1000).to(device)
        with self.accelerator.autocast():
            prediction = self.model(x, timestep, text, return_dict=False, num_memory_frames=num_memory)[0]
        velocity = noise - x0
        return torch.nn.functional.mse_loss(prediction.float()[:, :, num_memory:], velocity[:, :, num_memory:])

    def train(self) -> Path:
        c = self.config
        bar = tqdm(total=c.steps, initial=self.step, desc="train", unit="step", disable=not self.progress)
        while self.step < c.steps:
            total = 0.0
            for _ in range(c.grad_accum):
                with self.accelerator.accumulate(self.model):
                    loss = self.loss(self.sampler.draw_batch(self.rng, c.batch_size))
                    self.accelerator.backward(loss)
                    self.optimizer.step()
                    self.optimizer.zero_grad()
                total += float(loss.detach()) / c.grad_accum
            self.step += 1
            self.losses.append(total)
            bar.update(1)
            bar.set_postfix(loss=f"{total:.4f}")
            if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                self.save_checkpoint()
        bar.close()
        return self.finish()

    # ---------------------------------------------------------------- outputs
    def _lora_state(self) -> dict[str, torch.Tensor]:
        model = self.accelerator.unwrap_model(self.model)
        return {n: p.detach().float().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}

    def _load_lora_weights(self, model, weights: dict[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        for name, value in weights.items():
            params[name].data.copy_(value)

    def save_checkpoint(self) -> Path:
        folder = self.work / f"checkpoint-{self.step}"
        folder.mkdir(parents=True, exist_ok=True)
        rng = {
            "torch": torch.get_rng_state(),
            "generator": self.generator.get_state(),
            "numpy": self.rng.bit_generator.state,
        }
        torch.save(rng, folder / f"rng-{self.accelerator.process_index}.pt")  # one per process
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return folder
        save_file(self._lora_state(), str(folder / "lora.safetensors"))
        torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
        write_json(folder / "state.json", {"step": self.step, "losses": self.losses, "config": asdict(self.config)})
        write_json(self.work / "latest.json", {"checkpoint": folder.name, "step": self.step})
        self.plot_losses()
        return folder

    def resume(self) -> None:
        latest = self.work / "latest.json"
        if not latest.is_file():
            raise InputError(f"{self.work}: nothing to resume (no checkpoint yet)")
        folder = self.work / json.loads(latest.read_text())["checkpoint"]
        state = json.loads((folder / "state.json").read_text())
        saved = {k: v for k, v in state["config"].items() if k not in ("steps", "checkpoint_every")}
        now = {k: v for k, v in asdict(self.config).items() if k not in ("steps", "checkpoint_every")}
        changed = [f"{k}: saved {saved[k]!r}, now {now[k]!r}" for k in now if saved.get(k) != now[k]]
        if changed:
            raise InputError(f"{self.work}: settings differ from the checkpoint ({'; '.join(changed)})")
        self._load_lora_weights(self.accelerator.unwrap_model(self.model), load_file(str(folder / "lora.safetensors")))
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        rng = torch.load(folder / f"rng-{self.accelerator.process_index}.pt", weights_only=True)
        torch.set_rng_state(rng["torch"])  # LoRA dropout
        self.generator.set_state(rng["generator"])  # noise and timesteps
        self.rng.bit_generator.state = rng["numpy"]  # examples
        self.step, self.losses = state["step"], state["losses"]

    def finish(self) -> Path:
        """This expert's file of the LoRA, in the official StoryMem format."""
        file = self.out / "lora" / f"{lora_io.EXPERT_FILES[self.config.expert]}.safetensors"
        if self.accelerator.is_main_process:
            model = self.accelerator.unwrap_model(self.model)
            config = model.peft_config[lora_io.ADAPTER_NAME]
            lora_io.save_lora_file(file, lora_io.expert_state_dict(model), rank=config.r, alpha=config.lora_alpha)
            self.plot_losses()
        self.accelerator.wait_for_everyone()
        return file

    def plot_losses(self) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = self.work / "loss.png"
        steps = np.arange(1, len(self.losses) + 1)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(steps, self.losses, lw=0.8, alpha=0.5, label="loss")
        window = max(1, len(self.losses) // 20)
        if window > 1:
            smooth = np.convolve(self.losses, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1 :], smooth, lw=1.6, label=f"mean of {window}")
        ax.set_xlabel("step")
        ax.set_ylabel("flow-matching MSE (video latents)")
        ax.set_yscale("log" if min(self.losses, default=1) > 0 else "linear")
        ax.set_title(f"{self.config.model}, {self.config.expert}-noise expert")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def train(config: TrainConfig, resume: bool = False, pipe=None, progress: bool = True) -> Path:
    trainer = Trainer(config, pipe=pipe, progress=progress)
    if resume:
        trainer.resume()
    elif (trainer.work / "latest.json").is_file():
        raise InputError(f"{trainer.work}: holds checkpoints already; use --resume to continue or another --out")
    return trainer.train()
