"""What a shot is conditioned on, encoded once: prompts (UMT5), keyframes and the video condition
(VAE), assembled into the M2V condition. A mixin of `StoryMemPipeline`.

Prompt embeddings and keyframe latents are cached (least recently used), so a keyframe that stays
in memory for ten shots is encoded once, and a story encodes all its prompts in one pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from collections import OrderedDict
from collections.abc import Sequence

import torch
from diffusers.pipelines.wan.pipeline_wan import prompt_clean

from ..conditioning import condition_input, condition_mask, condition_pixels
from ..errors import StoryMemWarning
from ..pixels import Image, as_pil, image_to_tensor


class Lru(OrderedDict):
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


class ShotEncodersMixin:
    """Needs: tokenizer, text_encoder, vae, preset, placement, temporal_scale, _execution_device,
    and the two caches made by `_init_caches`."""

    def _init_caches(self, capacity: int = 64) -> None:
        self._prompt_cache = Lru(capacity)
        self._latent_cache = Lru(capacity)

    # ------------------------------------------------------------------ text
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

    def encode_story_prompts(self, prompts: Sequence[str], negative: bool = True) -> dict[str, torch.Tensor]:
        """Every prompt of a story (and the negative prompt, if CFG will use it) in one pass, with
        the text encoder on the device only meanwhile. {prompt: [1, L, D]}."""
        wanted = list(dict.fromkeys(prompts))
        if negative:
            wanted.append(self.preset.negative_prompt)
        embeds = self.encode_prompts(wanted)
        return {p: embeds[i : i + 1] for i, p in enumerate(wanted)}

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

    # ------------------------------------------------------------------ pixels <-> latents
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
        """Memory latents [1, 16, M, h, w]: each keyframe encoded alone as a 1-frame video, once
        (cached by image content and size)."""
        pils = [as_pil(img, f"memory[{i}]") for i, img in enumerate(images)]
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
        if first_frames:
            pils = [as_pil(img, f"first_frames[{i}]") for i, img in enumerate(first_frames)]
            given = torch.stack([image_to_tensor(p, height, width)[0] for p in pils], dim=1)[None]
            return self.vae_encode(condition_pixels(given, num_frames, height, width))
        key = ("zero-video", num_frames, height, width)
        return self._latent_cache.get_or_make(
            key, lambda: self.vae_encode(condition_pixels(None, num_frames, height, width))
        )

    # ------------------------------------------------------------------ the condition
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
