"""StoryMemPipeline: one call = one shot, conditioned on a memory of keyframes.

A diffusers pipeline (offloading, `to()`, progress bars, `load_lora_weights` come from
diffusers) holding both Wan2.2 I2V experts with the StoryMem LoRA, and optionally both T2V
experts for a first shot without memory. The VAE and text encoder are shared.

    pipe = StoryMemPipeline.from_preset("tiny")
    frames = pipe.generate_shot("a red fox runs", memory=[img1, img2], seed=0)
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from diffusers.loaders import WanLoraLoaderMixin
from diffusers.pipelines.wan.pipeline_wan import prompt_clean
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor

from .. import acceleration
from ..conditioning import (
    GIVEN_FRAMES,
    ShotMode,
    condition_input,
    condition_mask,
    condition_pixels,
    kept_frames,
    mode_for,
    model_input,
    num_latent_frames,
)
from ..distributed import context_parallel
from ..distributed.lockstep import in_lockstep
from ..errors import InputError, LoraError, NumericalError
from ..models import lora as lora_io
from ..models.loading import load_components, locate_weights, t2v_loader
from ..models.presets import Preset, get_preset
from ..models.preview import PREVIEW_ADAPTER, find_preview_files, load_preview_lora
from ..models.transformer import StoryMemWanTransformer3DModel
from ..sampling import Sampling, check_sigma_grid, make_scheduler

Image = PIL.Image.Image | np.ndarray


class StoryMemWarning(UserWarning):
    """Settings that work but leave what the weights were trained for."""


class _Lru(OrderedDict):
    """A small least-recently-used cache (prompt embeddings, keyframe latents)."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity

    def get_or_make(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return self.put(key, make())

    def cached(self, keys) -> dict:
        """{key: value} for the keys held (each marked as just used). The caller keeps the dict,
        so values it needs survive evictions caused by what it adds next."""
        found = {}
        for key in keys:
            if key in self:
                self.move_to_end(key)
                found[key] = self[key]
        return found

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.capacity:
            self.popitem(last=False)
        return value


def _as_pil(image: Image, what: str) -> PIL.Image.Image:
    if isinstance(image, PIL.Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise InputError(f"{what}: expected a PIL image or an HxWx3 uint8 array, got {array.dtype} {array.shape}")
    return PIL.Image.fromarray(array)


def image_to_tensor(image: PIL.Image.Image, height: int, width: int) -> torch.Tensor:
    """[1, 3, H, W] in [-1, 1]; other sizes are resized bicubically, as the published code does."""
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0
    if pixels.shape[-2:] != (height, width):
        pixels = F.interpolate(pixels, size=(height, width), mode="bicubic", align_corners=False)
    return pixels


class StoryMemPipeline(DiffusionPipeline, WanLoraLoaderMixin):
    model_cpu_offload_seq = "text_encoder->t2v_transformer->t2v_transformer_2->transformer->transformer_2->vae"
    _optional_components = ["t2v_transformer", "t2v_transformer_2"]

    def __init__(
        self,
        tokenizer,
        text_encoder,
        vae,
        scheduler,
        transformer: StoryMemWanTransformer3DModel,
        transformer_2: StoryMemWanTransformer3DModel,
        t2v_transformer=None,
        t2v_transformer_2=None,
        preset: str = "wan2.2-a14b",
    ):
        super().__init__()
        for name, expert in (("transformer", transformer), ("transformer_2", transformer_2)):
            if not isinstance(expert, StoryMemWanTransformer3DModel):
                # A stock Wan transformer would silently give memory the wrong time positions.
                raise InputError(f"{name} must be a StoryMemWanTransformer3DModel, got {type(expert).__name__}")
        self.register_modules(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            scheduler=scheduler,
            transformer=transformer,
            transformer_2=transformer_2,
            t2v_transformer=t2v_transformer,
            t2v_transformer_2=t2v_transformer_2,
        )
        self.register_to_config(preset=preset)
        self.preset: Preset = get_preset(preset)
        self.temporal_scale = vae.config.scale_factor_temporal
        self.spatial_scale = vae.config.scale_factor_spatial
        self.video_processor = VideoProcessor(vae_scale_factor=self.spatial_scale)
        self.lora_variant: str | None = None
        self._prompt_cache = _Lru(64)
        self._latent_cache = _Lru(64)
        self.set_memory_rope_shift(self.preset.rope_shift)
        # Loads the T2V experts when a shot needs them and they are not loaded (None: cannot).
        given = (t2v_transformer, t2v_transformer_2)
        self.t2v_loader = (lambda: given) if t2v_transformer is not None else None
        self._t2v_releasable = False  # experts built in code stay; loaded ones can be freed
        self.placement: acceleration.Placement | None = None
        self.preview = None  # PreviewFiles when preview mode is on
        self._storymem_lora_on = True
        self._compile = False
        self._attention: str | None = None
        self._context_parallel = 1  # ranks each shot is split over (torchrun)
        self.lockstep = None  # rank 0 of a torchrun launch: tells the other ranks each shot
        self.on_step = None  # called with (step, steps) after each denoising step (the web app's bar)
        self.last_shot_timings: dict[str, float] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_preset(
        cls,
        name: str,
        *,
        t2v: str | None = None,
        i2v: str | None = None,
        load_t2v: bool = True,
        lora: str | bool | None = None,
        variant: str = "mi2v",
        preview: str | Path | None = None,
        torch_dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
    ) -> StoryMemPipeline:
        """Build a pipeline from a named preset (``tiny``, ``toy``, ``wan2.2-a14b``).

        t2v / i2v: diffusers-format folders or hub ids overriding the preset's (real weights).
        load_t2v: whether the T2V experts can be used (real weights load them when a shot first
        needs them, and `release_t2v_experts` frees them). lora: a LoRA source (folder, file or
        hub id); None = the preset's own (if any); False = none. preview: a folder of
        step-distilled LoRAs (see `load_preview_lora`).
        """
        preset = get_preset(name)
        # Every input is found and checked before gigabytes of weights are read: the weight
        # folders, the LoRA, the preview files.
        if preset.build is not None and (i2v or t2v):
            raise InputError(
                f"--i2v / --t2v give real Wan2.2 weights; the {name} preset is built in (use --model wan2.2-a14b)"
            )
        if preset.build is None:
            i2v_folder = str(locate_weights(i2v or preset.i2v_source, "i2v"))
            loader = t2v_loader(preset, t2v, torch_dtype) if load_t2v else None
        source = preset.lora_source if lora is None else lora
        if source:
            lora_io.resolve_lora_files(source, variant, preset.lora_subfolders)
        if preview:
            cls._check_preview(preset)
            find_preview_files(preview)
        if preset.build is not None:
            components = load_components(preset)
            if not load_t2v:
                components.update(t2v_transformer=None, t2v_transformer_2=None)
            pipe = cls(**components, preset=name)
        else:
            pipe = cls(**load_components(preset, i2v=i2v_folder, torch_dtype=torch_dtype), preset=name)
            pipe.t2v_loader, pipe._t2v_releasable = loader, True
        if device is not None:
            pipe.to(device)
        if source:
            pipe.load_storymem_lora(source, variant=variant)
        if preview:
            pipe.load_preview_lora(preview)
        return pipe

    def set_memory_rope_shift(self, shift: int) -> None:
        """S of the negative RoPE shift (5 for the released weights; 1 = the first code release)."""
        for expert in (self.transformer, self.transformer_2):
            expert.register_to_config(memory_rope_shift=int(shift))

    # ------------------------------------------------------------------ placement and speed
    @property
    def _execution_device(self) -> torch.device:
        if self.placement is not None and not self.placement.hooks_move_models:
            return self.placement.device
        return super()._execution_device

    def loaded_experts(self) -> list[torch.nn.Module]:
        experts = (self.transformer, self.transformer_2, self.t2v_transformer, self.t2v_transformer_2)
        return [e for e in experts if e is not None]

    def enable_memory_mode(
        self,
        mode: str = "auto",
        device: str | torch.device | None = None,
        *,
        compile: bool = False,
        attention: str | None = None,
    ) -> str:
        """Place the components for one GPU (or the CPU): ``auto``, ``resident``, ``fp8``,
        ``group-offload`` or ``model-offload`` (see `storymem.acceleration`). Merges the LoRAs
        into the weights (except in fp8, where they stay beside), optionally compiles the
        experts' blocks and sets an attention backend. Returns the mode chosen."""
        if self.placement is not None:
            raise InputError("the memory mode is set once per pipeline; build a new pipeline to change it")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        expert_gib = acceleration.module_gib(self.transformer)
        models = [m for m in self.components.values() if isinstance(m, torch.nn.Module)]
        held = acceleration.gib_on(models, device) if mode == "auto" and device.type == "cuda" else 0.0
        chosen = acceleration.resolve_memory_mode(mode, device, expert_gib, held)
        if self._context_parallel > 1 and chosen not in ("resident", "fp8"):
            raise InputError(
                f"context parallelism keeps each expert whole on every GPU; memory mode {chosen} is not supported "
                "with it: use --memory-mode resident or fp8"
            )
        if attention is not None:
            if self._context_parallel > 1:
                context_parallel.check_attention(attention)
            acceleration.set_attention_backend(self.loaded_experts(), attention, device)
        self.placement = acceleration.Placement(chosen, device)
        self._configure_adapters()
        self.placement.prepare(self)
        if compile:
            for expert in self.loaded_experts():
                acceleration.compile_model(expert)
        self._compile, self._attention = compile, attention
        return chosen

    def enable_context_parallel(self, degree: int) -> None:
        """Split every shot's token sequence over `degree` ranks (run under torchrun, one
        process per GPU; see `storymem.distributed`). Call before `enable_memory_mode`."""
        if self.placement is not None:
            raise InputError("enable context parallelism before the memory mode")
        for expert in self.loaded_experts():
            context_parallel.enable(expert, degree)
        self._context_parallel = degree

    def t2v_experts(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        """The T2V experts, loaded (and placed) now if they are not."""
        if self.t2v_transformer is None or self.t2v_transformer_2 is None:
            if self.t2v_loader is None:
                raise InputError(
                    "a shot with no memory and no first frames needs the T2V experts, which are not loaded; "
                    "load them (load_t2v=True) or give reference images as memory"
                )
            high, low = self.t2v_loader()
            self.register_modules(t2v_transformer=high, t2v_transformer_2=low)
            self._set_up_added_experts((high, low))
        return self.t2v_transformer, self.t2v_transformer_2

    def _set_up_added_experts(self, experts) -> None:
        if self.preview is not None and self.preview.t2v:
            for expert, which in zip(experts, ("high", "low"), strict=True):
                load_preview_lora(expert, self.preview.t2v[which])
        if self._context_parallel > 1:
            for expert in experts:
                context_parallel.enable(expert, self._context_parallel)
        if self.placement is not None:
            for expert in experts:
                if self._attention:
                    expert.set_attention_backend(self._attention)
                acceleration.activate_adapters(expert, [PREVIEW_ADAPTER], self.placement.fuses_lora)
                self.placement.prepare_expert(expert)
                if self._compile:
                    acceleration.compile_model(expert)
            self.placement.added_expert(self)

    @in_lockstep
    def release_t2v_experts(self) -> None:
        """Free the T2V experts (the runner calls this once no later shot needs them); they are
        loaded again if a T2V shot comes after all."""
        if not self._t2v_releasable or (self.t2v_transformer is None and self.t2v_transformer_2 is None):
            return
        self.register_modules(t2v_transformer=None, t2v_transformer_2=None)
        if self.placement is not None:
            self.placement.added_expert(self)
        acceleration.free_memory()

    # ------------------------------------------------------------------ LoRA
    def load_storymem_lora(
        self, path: str | Path | None = None, variant: str = "mi2v", alpha: float | None = None, strict: bool = True
    ) -> None:
        """Load StoryMem LoRA weights into both I2V experts with the rsLoRA scale alpha/sqrt(r).

        path: a folder with backbone_high_noise/low_noise.safetensors, the released repo's root
        (variant subfolders), one expert's file, or a hub id. alpha defaults to the file's
        metadata, else r (the released weights: scale sqrt(128) = 11.31).
        """
        if variant not in ("mi2v", "mm2v"):
            raise InputError(f"LoRA variant must be 'mi2v' or 'mm2v', got {variant!r}")
        source = path or self.preset.lora_source
        if not source:
            raise LoraError(f"the {self.preset.name} preset has no default StoryMem LoRA; pass a path")
        files = lora_io.resolve_lora_files(source, variant, self.preset.lora_subfolders)
        for expert in (self.transformer, self.transformer_2):  # a merged adapter is unmerged before it is replaced
            if acceleration.is_fused(expert):
                expert.unfuse_lora()
        if Path(source).is_dir() and len(files) != 2:
            missing = [lora_io.EXPERT_FILES[e] for e in lora_io.EXPERT_FILES if e not in files]
            raise LoraError(f"{source}: missing {', '.join(missing)}.safetensors (one file per expert)")
        for expert, file in files.items():
            weights, metadata = lora_io.read_lora_file(file)
            file_alpha = (
                alpha if alpha is not None else (float(metadata["lora_alpha"]) if "lora_alpha" in metadata else None)
            )
            model = self.transformer if expert == "high" else self.transformer_2
            lora_io.load_expert_lora(model, weights, str(file), alpha=file_alpha, strict=strict)
        self.lora_variant = variant
        self._configure_adapters()

    def save_storymem_lora(self, folder: str | Path) -> list[Path]:
        """Write the loaded/trained StoryMem LoRA in the official format (one file per expert)."""
        written = []
        for expert, model in (("high", self.transformer), ("low", self.transformer_2)):
            config = getattr(model, "peft_config", {}).get(lora_io.ADAPTER_NAME)
            if config is None:
                continue
            path = Path(folder) / f"{lora_io.EXPERT_FILES[expert]}.safetensors"
            lora_io.save_lora_file(path, lora_io.expert_state_dict(model), rank=config.r, alpha=config.lora_alpha)
            written.append(path)
        if not written:
            raise LoraError("no StoryMem LoRA is loaded in either expert; nothing to save")
        return written

    def load_preview_lora(self, folder: str | Path) -> None:
        """Preview mode: stack a step-distilled Wan2.2 LoRA (Lightning / LightX2V, one file per
        expert) on the StoryMem LoRA and sample with its recipe (4 steps, Euler, no CFG). A T2V
        pair in the same folder serves a first shot without memory."""
        self._check_preview(self.preset)
        files = find_preview_files(folder)
        for expert, which in ((self.transformer, "high"), (self.transformer_2, "low")):
            load_preview_lora(expert, files.i2v[which])
        if files.t2v:
            for expert, which in ((self.t2v_transformer, "high"), (self.t2v_transformer_2, "low")):
                if expert is not None:  # real T2V experts get theirs when they are loaded
                    load_preview_lora(expert, files.t2v[which])
        self.preview = files
        self._configure_adapters()

    @staticmethod
    def _check_preview(preset: Preset) -> None:
        if preset.preview_m2v is None:
            raise InputError(f"the {preset.name} preset has no preview mode (it is for wan2.2-a14b)")

    def _configure_adapters(self) -> None:
        """The active adapters of every expert: StoryMem (I2V experts, unless switched off for a
        baseline) and preview (if loaded); merged into the weights when the placement says so."""
        fuse = self.placement is not None and self.placement.fuses_lora
        storymem = [lora_io.ADAPTER_NAME] if self._storymem_lora_on else []
        for expert in (self.transformer, self.transformer_2):
            acceleration.activate_adapters(expert, [*storymem, PREVIEW_ADAPTER], fuse)
        for expert in (self.t2v_transformer, self.t2v_transformer_2):
            if expert is not None:
                acceleration.activate_adapters(expert, [PREVIEW_ADAPTER], fuse)

    @contextlib.contextmanager
    def lora_disabled(self):
        """Run the I2V experts without the StoryMem LoRA inside this block (the `chain` baseline);
        a preview LoRA stays. A merged LoRA is unmerged for the block and merged again after.
        Nested blocks change nothing (a bench wraps all of a baseline's stories in one)."""
        if not self._storymem_lora_on:
            yield
            return
        self._switch_storymem_lora(False)
        try:
            yield
        finally:
            self._switch_storymem_lora(True)

    @in_lockstep
    def _switch_storymem_lora(self, on: bool) -> None:
        self._storymem_lora_on = on
        self._configure_adapters()

    # ------------------------------------------------------------------ encoders (cached)
    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """UMT5 embeddings [1, L, D], zero past the prompt's tokens (as Wan). Cached per prompt."""
        return self.encode_prompts([prompt])

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """encode_prompt for a batch [B, L, D]: the prompts not cached yet go through UMT5 together."""
        device = self._execution_device
        found = {p: e for (p, _), e in self._prompt_cache.cached((p, device) for p in prompts).items()}
        todo = [p for p in dict.fromkeys(prompts) if p not in found]
        if todo:
            with self._text_encoder_ready():
                self._encode_uncached(todo, device, found)
        return torch.cat([found[p] for p in prompts])

    def _text_encoder_ready(self):
        return self.placement.text_encoder(self) if self.placement is not None else contextlib.nullcontext()

    def _encode_uncached(self, todo: list[str], device, found: dict) -> None:
        self._warn_long_prompts(todo)
        tokens = self.tokenizer(
            [prompt_clean(p) for p in todo],
            padding="max_length",
            max_length=self.preset.max_sequence_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
        hidden = self.text_encoder(ids, mask).last_hidden_state
        hidden = hidden * mask[..., None].to(hidden.dtype)
        for i, prompt in enumerate(todo):
            found[prompt] = self._prompt_cache.put((prompt, device), hidden[i : i + 1])

    def _warn_long_prompts(self, prompts: list[str]) -> None:
        """A prompt past the text encoder's limit is cut there: say so, with its token count."""
        limit = self.preset.max_sequence_length
        counts = self.tokenizer([prompt_clean(p) for p in prompts], add_special_tokens=True).input_ids
        for prompt, ids in zip(prompts, counts, strict=True):
            if len(ids) > limit and prompt != self.preset.negative_prompt:
                warnings.warn(
                    f"a prompt has {len(ids)} tokens; the text encoder reads the first {limit}, the rest is "
                    f"ignored: {prompt[:80]!r}{'...' if len(prompt) > 80 else ''}",
                    StoryMemWarning,
                    stacklevel=4,
                )

    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, self.vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(self.vae.config.latents_mean).view(shape).to(like.device, torch.float32)
        std = torch.tensor(self.vae.config.latents_std).view(shape).to(like.device, torch.float32)
        return mean, std

    def vae_encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels [B, 3, F, H, W] in [-1, 1] -> normalised latents (distribution mode), fp32."""
        device = self._execution_device
        posterior = self.vae.encode(pixels.to(device, self.vae.dtype)).latent_dist
        latents = posterior.mode().float()
        mean, std = self._latent_stats(latents)
        return (latents - mean) / std

    def vae_decode(self, latents: torch.Tensor) -> torch.Tensor:
        mean, std = self._latent_stats(latents)
        return self.vae.decode((latents.float() * std + mean).to(self.vae.dtype), return_dict=False)[0]

    def encode_keyframes(self, images: Sequence[Image], height: int, width: int) -> torch.Tensor:
        """Memory latents [1, 16, M, h, w]: each keyframe encoded alone as a 1-frame video, once.

        Latents are cached by image content and size, so a keyframe that stays in memory for
        ten shots is encoded once.
        """
        pils = [_as_pil(img, f"memory[{i}]") for i, img in enumerate(images)]
        keys = [(hashlib.sha1(p.tobytes()).hexdigest(), p.size, height, width) for p in pils]
        found = self._latent_cache.cached(keys)
        todo = {}  # key -> the first image with it
        for i, key in enumerate(keys):
            if key not in found:
                todo.setdefault(key, i)
        if todo:
            batch = torch.cat([image_to_tensor(pils[i], height, width) for i in todo.values()])  # [n, 3, H, W]
            latents = self.vae_encode(batch[:, :, None])  # [n, 16, 1, h, w]
            for j, key in enumerate(todo):
                found[key] = self._latent_cache.put(key, latents[j : j + 1])  # [1, 16, 1, h, w]
        device = self._execution_device
        return torch.cat([found[k].to(device) for k in keys], dim=2)

    def encode_video_condition(
        self, first_frames: Sequence[Image], num_frames: int, height: int, width: int
    ) -> torch.Tensor:
        """Latents [1, 16, T, h, w] of the zero video with the given frames in front (MI2V: 1,
        MM2V: 5). The plain zero video (M2V) is the same for every shot and is encoded once."""
        given = None
        if first_frames:
            pils = [_as_pil(img, f"first_frames[{i}]") for i, img in enumerate(first_frames)]
            given = torch.stack([image_to_tensor(p, height, width)[0] for p in pils], dim=1)[None]
            return self.vae_encode(condition_pixels(given, num_frames, height, width))
        key = ("zero-video", num_frames, height, width)
        return self._latent_cache.get_or_make(
            key, lambda: self.vae_encode(condition_pixels(None, num_frames, height, width))
        )

    def prepare_condition(
        self,
        memory: Sequence[Image],
        first_frames: Sequence[Image] = (),
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
    ) -> torch.Tensor:
        """[1, 20, M + T, h, w] = [mask 4 | memory latents ++ video condition latents 16]."""
        height, width, num_frames = (
            height or self.preset.height,
            width or self.preset.width,
            num_frames or self.preset.num_frames,
        )
        video = self.encode_video_condition(first_frames, num_frames, height, width)
        memory_latents = self.encode_keyframes(memory, height, width) if memory else None
        return self.assemble_condition(memory_latents, video, len(first_frames), num_frames)

    def assemble_condition(
        self, memory_latents: torch.Tensor | None, video_latents: torch.Tensor, num_given: int, num_frames: int
    ) -> torch.Tensor:
        """The condition from latents (inference and training both build it here):
        memory [B, 16, M, h, w] or None, video condition [B, 16, T, h, w] -> [B, 20, M + T, h, w]."""
        b, c, _, h, w = video_latents.shape
        if memory_latents is None:
            memory_latents = video_latents.new_zeros(b, c, 0, h, w)
        mask = condition_mask(memory_latents.shape[2], num_frames, num_given, h, w, self.temporal_scale)
        return condition_input(memory_latents, video_latents, mask.expand(b, -1, -1, -1, -1).to(video_latents.device))

    # ------------------------------------------------------------------ checks
    def check_size(self, height: int, width: int, num_frames: int) -> None:
        """One line for a shot size the model cannot make."""
        step = self.spatial_scale * 2  # VAE stride x patch size
        for name, value in (("height", height), ("width", width), ("num_frames", num_frames)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a whole number of at least 1, got {value!r}")
        if height % step or width % step:
            raise InputError(f"height and width must be positive multiples of {step}, got {height}x{width}")
        if (num_frames - 1) % self.temporal_scale:
            raise InputError(f"num_frames must be {self.temporal_scale}k+1 (e.g. 81), got {num_frames}")

    def _check_settings(self, height: int, width: int, num_frames: int, num_memory: int, mode: ShotMode) -> None:
        self.check_size(height, width, num_frames)
        trained = self.preset.trained_resolutions
        if trained and (height, width) not in trained:
            sizes = ", ".join(f"{w}x{h}" for h, w in trained)
            warnings.warn(
                f"{width}x{height} is not a resolution the {self.preset.name} weights were trained on ({sizes}); "
                "expect weaker results",
                StoryMemWarning,
                stacklevel=4,  # past the no_grad wrapper, to the caller
            )
        if GIVEN_FRAMES[mode] >= num_frames:
            raise InputError(
                f"{mode.value} gives {GIVEN_FRAMES[mode]} frames; num_frames must be larger, got {num_frames}"
            )
        if num_memory > self.preset.max_trained_memory:
            warnings.warn(
                f"{num_memory} memory frames; the {self.preset.name} weights were trained with at most "
                f"{self.preset.max_trained_memory}",
                StoryMemWarning,
                stacklevel=4,  # past the no_grad wrapper, to the caller
            )
        t2v_missing = self.t2v_transformer is None or self.t2v_transformer_2 is None
        if mode is ShotMode.T2V and t2v_missing and self.t2v_loader is None:
            raise InputError(
                "a shot with no memory and no first frames needs the T2V experts, which are not loaded; "
                "load them (load_t2v=True) or give reference images as memory"
            )

    # ------------------------------------------------------------------ generation
    def generate_story(self, story, out_dir, **kwargs):
        """Generate a whole story into a run directory (see `storymem.runner.generate_story`)."""
        from ..runner import generate_story

        return generate_story(self, story, out_dir, **kwargs)

    def sampling_for(self, mode: ShotMode) -> Sampling:
        """The sampler of a kind of shot: the preset's, or the preview recipe when preview mode
        is on (for a T2V shot only if the preview folder has a T2V pair)."""
        if mode is ShotMode.T2V:
            preview = self.preview is not None and self.preview.t2v is not None
            return self.preset.preview_t2v if preview else self.preset.t2v
        return self.preset.preview_m2v if self.preview is not None else self.preset.m2v

    def encode_story_prompts(self, prompts: Sequence[str], negative: bool = True) -> dict[str, torch.Tensor]:
        """Every prompt of a story (and the negative prompt, if CFG will use it) in one pass, with
        the text encoder on the device only meanwhile. {prompt: [1, L, D]}."""
        wanted = list(dict.fromkeys(prompts))
        if negative:
            wanted.append(self.preset.negative_prompt)
        embeds = self.encode_prompts(wanted)
        return {p: embeds[i : i + 1] for i, p in enumerate(wanted)}

    def uses_guidance(self, mode: ShotMode) -> bool:
        sampling = self.sampling_for(mode)
        return max(sampling.guidance, sampling.guidance_2) > 1

    @torch.no_grad()
    @in_lockstep
    def generate_shot(
        self,
        prompt: str,
        memory: Sequence[Image] | None = None,
        first_frames: Sequence[Image] | None = None,
        seed: int = 0,
        *,
        negative_prompt: str | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        guidance_scale_2: float | None = None,
        sigma_grid: str | None = None,
        output_type: str = "pil",
    ):
        """Generate one shot.

        memory: keyframes (oldest first); empty + no first_frames = a T2V shot.
        first_frames: the previous shot's last frame (MI2V) or last 5 frames (MM2V).
        prompt_embeds / negative_prompt_embeds: ready UMT5 embeddings [1, L, D] (a story encodes
        all its prompts once, see `encode_story_prompts`); otherwise the prompts are encoded.
        sigma_grid: "official" (Wan's), "diffusers" or "lightning"; default: the preset's.
        Returns the shot's own frames: all of them for M2V/T2V, without the given ones for
        MI2V (num_frames - 1) and MM2V (num_frames - 5). output_type: "pil", "np", "pt", or "latent" (the shot's
        normalised video latents [1, 16, T, h, w], given frames included).
        `last_shot_timings` then holds where the time went (seconds): encode, denoise, decode.
        """
        memory, first_frames = list(memory or []), list(first_frames or [])
        try:
            mode = mode_for(len(memory), len(first_frames))
        except ValueError as e:
            raise InputError(str(e)) from None
        # None means the preset's; 0 or less is refused (never silently the default).
        height = self.preset.height if height is None else height
        width = self.preset.width if width is None else width
        num_frames = self.preset.num_frames if num_frames is None else num_frames
        if num_inference_steps is not None and (
            isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1
        ):
            raise InputError(f"num_inference_steps must be a whole number of at least 1, got {num_inference_steps!r}")
        self._check_settings(height, width, num_frames, len(memory), mode)
        check_sigma_grid(sigma_grid)

        base = self.sampling_for(mode)
        sampling = Sampling(
            steps=base.steps if num_inference_steps is None else num_inference_steps,
            shift=base.shift,
            boundary=base.boundary,
            guidance=base.guidance if guidance_scale is None else guidance_scale,
            guidance_2=base.guidance_2 if guidance_scale_2 is None else guidance_scale_2,
            solver=base.solver,
            grid=sigma_grid or base.grid,
        )
        clock = _Clock(self._execution_device)
        guided = max(sampling.guidance, sampling.guidance_2) > 1
        if prompt_embeds is None:
            prompt_embeds = self.encode_prompt(prompt)
        if guided and negative_prompt_embeds is None:
            negative = self.preset.negative_prompt if negative_prompt is None else negative_prompt
            negative_prompt_embeds = self.encode_prompt(negative)

        if mode is ShotMode.T2V:
            experts, others, condition = self.t2v_experts(), (self.transformer, self.transformer_2), None
        else:
            experts = (self.transformer, self.transformer_2)
            others = (self.t2v_transformer, self.t2v_transformer_2)
            condition = self.prepare_condition(memory, first_frames, height, width, num_frames)
        clock.lap("encode_s")
        if self.placement is not None:
            self.placement.activate(experts, others)
        clock.lap("place_s")

        shape = (
            1,
            self.vae.config.z_dim,
            len(memory) + num_latent_frames(num_frames, self.temporal_scale),
            height // self.spatial_scale,
            width // self.spatial_scale,
        )
        negative_embeds = negative_prompt_embeds if guided else None
        latents = self._denoise(experts, sampling, shape, prompt_embeds, negative_embeds, condition, len(memory), seed)
        latents = latents[:, :, len(memory) :]  # memory slots are dropped, never decoded
        clock.lap("denoise_s")
        if output_type == "latent":
            self.maybe_free_model_hooks()
            self.last_shot_timings = clock.laps
            return latents
        video = self.vae_decode(latents)
        video = video[:, :, kept_frames(num_frames, GIVEN_FRAMES[mode])]
        self.maybe_free_model_hooks()
        frames = self.video_processor.postprocess_video(video, output_type=output_type)
        clock.lap("decode_s")
        self.last_shot_timings = clock.laps
        return frames[0]

    def _denoise(self, experts, sampling: Sampling, shape, positive, negative, condition, num_memory: int, seed: int):
        """Flow-matching sampling with two experts and classifier-free guidance (no unconditional
        branch when the guidance is 1). Both CFG branches see the same memory conditioning."""
        device = self._execution_device
        scheduler = make_scheduler(sampling, device)
        boundary = sampling.boundary * scheduler.config.num_train_timesteps
        # Noise from a CPU generator: the same seed gives the same shot on any device.
        generator = torch.Generator("cpu").manual_seed(int(seed))
        latents = randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32).to(device)
        extra = {"num_memory_frames": num_memory} if num_memory else {}

        for step, t in enumerate(self.progress_bar(scheduler.timesteps)):
            high_noise = t >= boundary
            model = experts[0] if high_noise else experts[1]
            scale = sampling.guidance if high_noise else sampling.guidance_2
            x = model_input(latents, condition).to(model.dtype)
            timestep = t.expand(1).to(device)
            prediction = model(x, timestep, positive.to(device, model.dtype), return_dict=False, **extra)[0].float()
            if scale > 1 and negative is not None:
                negative_branch = model(x, timestep, negative.to(device, model.dtype), return_dict=False, **extra)
                unconditional = negative_branch[0].float()
                prediction = unconditional + scale * (prediction - unconditional)
            if not torch.isfinite(prediction).all():  # a black shot must never be saved as done
                raise NumericalError(
                    f"the {'high' if high_noise else 'low'}-noise expert produced NaN or infinite values at "
                    f"step {int(step) + 1} of {len(scheduler.timesteps)}; its weights (a LoRA with huge or damaged "
                    "values?) or the settings are broken; nothing was saved for this shot"
                )
            latents = scheduler.step(prediction, t, latents, return_dict=False)[0]
            if self.on_step is not None:
                self.on_step(step + 1, len(scheduler.timesteps))
        return latents


class _Clock:
    """Wall-clock laps of one shot; waits for the GPU at each lap so the split is true."""

    def __init__(self, device: torch.device):
        self.cuda = torch.device(device).type == "cuda"
        self.laps: dict[str, float] = {}
        self.last = self._now()

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def lap(self, name: str) -> None:
        now = self._now()
        self.laps[name] = round(now - self.last, 4)
        self.last = now
