"""StoryMemPipeline: one call = one shot, conditioned on a memory of keyframes.

A diffusers pipeline (offloading, `to()`, progress bars, `load_lora_weights` come from
diffusers) holding both Wan2.2 I2V experts with the StoryMem LoRA, and optionally both T2V
experts for a first shot without memory. The VAE and text encoder are shared. Its parts:
`encoders.py` (prompts, keyframes, the condition), `adapters.py` (LoRAs), `placement.py` (memory
modes, T2V experts), and the denoising loop in `storymem.sampling`.

    pipe = StoryMemPipeline.from_preset("tiny")
    frames = pipe.generate_shot("a red fox runs", memory=[img1, img2], seed=0)
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.loaders import WanLoraLoaderMixin
from diffusers.utils import BaseOutput
from diffusers.video_processor import VideoProcessor

from ..conditioning import GIVEN_FRAMES, ShotMode, kept_frames, mode_for, num_latent_frames
from ..distributed.lockstep import in_lockstep
from ..errors import InputError, StoryMemWarning
from ..models import lora as lora_io
from ..models.loading import load_components, locate_weights, t2v_loader
from ..models.presets import Preset, get_preset
from ..models.preview import find_preview_files
from ..models.transformer import StoryMemWanTransformer3DModel
from ..options import PipelineOptions
from ..pixels import Image
from ..sampling import Sampling, check_sigma_grid, denoise, guided_prediction, initial_noise, make_scheduler
from ..story import visible
from .adapters import AdaptersMixin
from .encoders import ShotEncodersMixin
from .placement import T2V_MISSING, PlacementMixin


@dataclass
class ShotOutput(BaseOutput):
    """What `generate_shot(..., return_dict=True)` returns: the shot's frames, which kind of shot
    it was, and where its time went (seconds: encode, place, denoise, decode)."""

    frames: object
    mode: ShotMode
    timings: dict[str, float]


# The mixins come first: PlacementMixin's `_execution_device` wraps DiffusionPipeline's.
class StoryMemPipeline(PlacementMixin, ShotEncodersMixin, AdaptersMixin, DiffusionPipeline, WanLoraLoaderMixin):
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
        self.options = PipelineOptions(model=preset)  # what built it (from_options sets the real ones)
        self.sources: dict[str, list] = {}  # weight files by kind, when built from files (from_options)
        self.temporal_scale = vae.config.scale_factor_temporal
        self.spatial_scale = vae.config.scale_factor_spatial
        self.video_processor = VideoProcessor(vae_scale_factor=self.spatial_scale)
        self._init_caches()
        self._init_adapters()
        self._init_placement((t2v_transformer, t2v_transformer_2))
        self.set_memory_rope_shift(self.preset.rope_shift)

    # ------------------------------------------------------------------ construction
    @classmethod
    def locate(cls, options: PipelineOptions, torch_dtype: torch.dtype | None = None) -> dict:
        """Every weight file `options` name, found and checked (folders, LoRA, preview files:
        there and whole) without reading gigabytes: what `from_options` then loads. A front end
        may call it first to report a broken input before slower checks."""
        preset = get_preset(options.model)
        built_in = preset.build is not None
        if built_in and (options.i2v or options.t2v):
            raise InputError(
                f"--i2v / --t2v give real Wan2.2 weights; the {preset.name} preset is built in (use --model wan2.2-a14b)"
            )
        if options.weights and not preset.takes_weights:
            raise InputError(f"--weights gives the toy model's own weights; the {preset.name} preset has none")
        i2v_folder, loader = None, None
        if not built_in:
            i2v_folder = str(locate_weights(options.i2v or preset.i2v_source, "i2v"))
            loader = t2v_loader(preset, options.t2v, torch_dtype) if options.load_t2v else None
        lora = cls._lora_source(preset, options)
        lora_files = []
        if lora:
            fetch = lora_io.fetch_command(preset)
            found = lora_io.resolve_lora_files(lora, options.variant, preset.lora_subfolders, fetch)
            lora_files = list(found.values())
        if options.preview:
            cls._check_preview(preset)
            find_preview_files(options.preview)
        check_sigma_grid(options.sigma_grid)
        own = options.weights or preset.weights_folder
        sources = {  # the files each kind of weights comes from (a run records their fingerprints)
            "model": [i2v_folder] if not built_in else ([own] if own else []),
            "t2v": [loader.folder] if loader is not None else [],
            "lora": lora_files,
            "preview": [options.preview] if options.preview else [],
        }
        return {"preset": preset, "i2v": i2v_folder, "t2v_loader": loader, "lora": lora, "sources": sources}

    @classmethod
    def from_options(
        cls, options: PipelineOptions, *, torch_dtype: torch.dtype | None = None, device=None
    ) -> StoryMemPipeline:
        """The pipeline `options` name, with its LoRAs loaded, not yet placed (`build_pipeline`
        places it). Every input is found and checked (`locate`) before weights are read."""
        found = cls.locate(options, torch_dtype)
        preset, source = found["preset"], found["lora"]
        if preset.build is not None:
            components = load_components(preset, weights=options.weights)
            if not options.load_t2v:
                components.update(t2v_transformer=None, t2v_transformer_2=None)
            pipe = cls(**components, preset=preset.name)
        else:
            pipe = cls(**load_components(preset, i2v=found["i2v"], torch_dtype=torch_dtype), preset=preset.name)
            pipe.t2v_loader, pipe._t2v_releasable = found["t2v_loader"], True
        pipe.options, pipe.sources = options, found["sources"]
        if device is not None:
            pipe.to(device)
        if source:
            pipe.load_storymem_lora(source, variant=options.variant)
        if options.preview:
            pipe.load_preview_lora(options.preview)
        return pipe

    @staticmethod
    def _lora_source(preset: Preset, options: PipelineOptions) -> str | None:
        """The StoryMem LoRA to load: the option's; None: a weights folder's own lora/ (if it
        has one), else the preset's; False: none."""
        if options.lora is False:
            return None
        if options.lora:
            return options.lora
        if options.weights:
            own = Path(options.weights) / "lora"
            return str(own) if own.is_dir() else None
        return preset.lora_source

    @classmethod
    def from_preset(
        cls, name: str, *, torch_dtype: torch.dtype | None = None, device: str | torch.device | None = None, **options
    ) -> StoryMemPipeline:
        """Build a pipeline from a named preset (``tiny``, ``toy``, ``wan2.2-a14b``); `options` are
        `PipelineOptions` fields (i2v, t2v, load_t2v, lora, variant, preview, weights)."""
        return cls.from_options(PipelineOptions(model=name, **options), torch_dtype=torch_dtype, device=device)

    def set_memory_rope_shift(self, shift: int) -> None:
        """S of the negative RoPE shift (5 for the released weights; 1 = the first code release)."""
        for expert in (self.transformer, self.transformer_2):
            expert.register_to_config(memory_rope_shift=int(shift))

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

    def _warn_untrained(self, height: int, width: int, num_memory: int) -> None:
        trained = self.preset.trained_resolutions
        if trained and (height, width) not in trained:
            sizes = ", ".join(f"{w}x{h}" for h, w in trained)
            warnings.warn(
                f"{width}x{height} is not a resolution the {self.preset.name} weights were trained on ({sizes}); "
                "expect weaker results",
                StoryMemWarning,
                stacklevel=6,  # past check_inputs, generate_shot and its two wrappers, to the caller
            )
        if num_memory > self.preset.max_trained_memory:
            warnings.warn(
                f"{num_memory} memory frames; the {self.preset.name} weights were trained with at most "
                f"{self.preset.max_trained_memory}",
                StoryMemWarning,
                stacklevel=6,  # past check_inputs, generate_shot and its two wrappers, to the caller
            )

    def sampling_for(self, mode: ShotMode) -> Sampling:
        """The sampler of a kind of shot: the preset's, or the preview recipe when preview mode
        is on (for a T2V shot only if the preview folder has a T2V pair)."""
        if mode is ShotMode.T2V:
            preview = self.preview is not None and self.preview.t2v is not None
            return self.preset.preview_t2v if preview else self.preset.t2v
        return self.preset.preview_m2v if self.preview is not None else self.preset.m2v

    def uses_guidance(self, mode: ShotMode) -> bool:
        sampling = self.sampling_for(mode)
        return max(sampling.guidance, sampling.guidance_2) > 1

    def check_inputs(
        self, prompt, memory, first_frames, height, width, num_frames, num_inference_steps, guidance_scale,
        guidance_scale_2, sigma_grid,
    ) -> tuple[ShotMode, tuple[int, int, int], Sampling]:  # fmt: skip
        """Step 1 of a shot: (its mode, (height, width, frames), its sampler), every argument
        checked. None means the preset's; 0 or less is refused (never silently the default)."""
        if not isinstance(prompt, str) or not visible(prompt):
            raise InputError(f"the prompt must not be empty (it has no visible characters), got {prompt!r}")
        try:
            mode = mode_for(len(memory), len(first_frames))
        except ValueError as e:
            raise InputError(str(e)) from None
        height = self.preset.height if height is None else height
        width = self.preset.width if width is None else width
        num_frames = self.preset.num_frames if num_frames is None else num_frames
        if num_inference_steps is not None and (
            isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1
        ):
            raise InputError(f"num_inference_steps must be a whole number of at least 1, got {num_inference_steps!r}")
        self.check_size(height, width, num_frames)
        self._warn_untrained(height, width, len(memory))
        if GIVEN_FRAMES[mode] >= num_frames:
            raise InputError(
                f"{mode.value} gives {GIVEN_FRAMES[mode]} frames; num_frames must be larger, got {num_frames}"
            )
        if mode is ShotMode.T2V and not self.can_make_t2v():
            raise InputError(T2V_MISSING)
        check_sigma_grid(sigma_grid)
        base = self.sampling_for(mode)
        sampling = Sampling(
            steps=base.steps if num_inference_steps is None else num_inference_steps,
            shift=base.shift,
            boundary=base.boundary,
            guidance=base.guidance if guidance_scale is None else guidance_scale,
            guidance_2=base.guidance_2 if guidance_scale_2 is None else guidance_scale_2,
            solver=base.solver,
            grid=sigma_grid or self.options.sigma_grid or base.grid,
        )
        return mode, (height, width, num_frames), sampling

    # ------------------------------------------------------------------ generation
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
        callback_on_step_end: Callable | None = None,
        return_dict: bool = False,
    ):
        """Generate one shot.

        memory: keyframes (oldest first); empty + no first_frames = a T2V shot.
        first_frames: the previous shot's last frame (MI2V) or last 5 frames (MM2V).
        prompt_embeds / negative_prompt_embeds: ready UMT5 embeddings [1, L, D] (a story encodes
        all its prompts once, see `encode_story_prompts`); otherwise the prompts are encoded.
        sigma_grid: "official" (Wan's), "diffusers" or "lightning"; default: the pipeline's
        option, else the preset's.
        callback_on_step_end: diffusers' convention, `callback(pipe, step, timestep,
        {"latents": latents})` after each denoising step; it may return {"latents": new ones}.
        `pipe.num_timesteps` is the shot's number of steps.
        Returns the shot's own frames: all of them for M2V/T2V, without the given ones for
        MI2V (num_frames - 1) and MM2V (num_frames - 5). output_type: "pil", "np", "pt", or
        "latent" (the shot's normalised video latents [1, 16, T, h, w], given frames included).
        return_dict: a `ShotOutput` (frames, mode, timings) instead of the frames alone.
        """
        memory, first_frames = list(memory or []), list(first_frames or [])
        # 1. check the inputs
        mode, (height, width, num_frames), sampling = self.check_inputs(
            prompt, memory, first_frames, height, width, num_frames, num_inference_steps, guidance_scale, guidance_scale_2,
            sigma_grid,
        )  # fmt: skip
        clock = _Clock(self._execution_device)

        # 2. prepare the condition: prompts, memory latents, the video condition; place the experts
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

        # 3. denoise the memory slots and the shot together
        device = self._execution_device
        shape = (
            1,
            self.vae.config.z_dim,
            len(memory) + num_latent_frames(num_frames, self.temporal_scale),
            height // self.spatial_scale,
            width // self.spatial_scale,
        )
        scheduler = make_scheduler(sampling, device)
        self._num_timesteps = len(scheduler.timesteps)
        predict = guided_prediction(
            experts, sampling, condition, prompt_embeds, negative_prompt_embeds if guided else None, len(memory),
            device,
        )  # fmt: skip
        latents = denoise(
            predict, initial_noise(shape, seed, device), scheduler, self.progress_bar, self._step_callback(
                callback_on_step_end
            ),
        )  # fmt: skip
        latents = latents[:, :, len(memory) :]  # memory slots are dropped, never decoded
        clock.lap("denoise_s")

        # 4. decode
        if output_type == "latent":
            self.maybe_free_model_hooks()
            frames = latents
        else:
            video = self.vae_decode(latents)
            video = video[:, :, kept_frames(num_frames, GIVEN_FRAMES[mode])]
            self.maybe_free_model_hooks()
            frames = self.video_processor.postprocess_video(video, output_type=output_type)[0]
            clock.lap("decode_s")
        return ShotOutput(frames=frames, mode=mode, timings=clock.laps) if return_dict else frames

    @property
    def num_timesteps(self) -> int:
        """Denoising steps of the shot being made (diffusers' name)."""
        return getattr(self, "_num_timesteps", 0)

    def _step_callback(self, callback_on_step_end: Callable | None):
        if callback_on_step_end is None:
            return None

        def on_step(step: int, t, latents: torch.Tensor) -> torch.Tensor:
            returned = callback_on_step_end(self, step, t, {"latents": latents}) or {}
            return returned.get("latents", latents)

        return on_step


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
