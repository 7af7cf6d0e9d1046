"""The memory-aware Wan transformer: diffusers' `WanTransformer3DModel` with the negative RoPE shift.

Weights and config are diffusers' own (a Wan2.2 I2V expert loads unchanged with
`from_pretrained`); the only differences are the RoPE module, which accepts explicit time
positions, and `forward(..., num_memory_frames=M)`, which says how many leading latent frames
are memory.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel

from .rope import MemoryRotaryPosEmbed, memory_time_positions


class StoryMemWanTransformer3DModel(WanTransformer3DModel):
    # diffusers' from_pretrained needs the full explicit signature (no *args/**kwargs).
    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 16,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        memory_rope_shift: int = 5,
    ) -> None:
        super().__init__(
            patch_size=patch_size,
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            text_dim=text_dim,
            freq_dim=freq_dim,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            cross_attn_norm=cross_attn_norm,
            qk_norm=qk_norm,
            eps=eps,
            image_dim=image_dim,
            added_kv_proj_dim=added_kv_proj_dim,
            rope_max_seq_len=rope_max_seq_len,
            pos_embed_seq_len=pos_embed_seq_len,
        )
        # Same attribute name as the stock module: context-parallel plans attach to `rope`.
        self.rope = MemoryRotaryPosEmbed(attention_head_dim, patch_size, rope_max_seq_len)
        # Context parallelism splits the token sequence into this many equal parts (1: none).
        self.sequence_multiple = 1

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.LongTensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: torch.Tensor | None = None,
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        num_memory_frames: int = 0,
    ):
        """As the stock forward; the first `num_memory_frames` latent frames are memory and get
        time positions -M*S..-S (S = config.memory_rope_shift); the rest get 0..f-1."""
        p_t, p_h, p_w = self.config.patch_size
        num_latent = hidden_states.shape[2] // p_t
        tokens_per_frame = (hidden_states.shape[3] // p_h) * (hidden_states.shape[4] // p_w)
        pad = padding_frames(num_latent, tokens_per_frame, self.sequence_multiple)
        positions = None
        if num_memory_frames or pad:
            positions = memory_time_positions(
                num_memory_frames, num_latent + pad - num_memory_frames, self.config.memory_rope_shift
            )
        if pad:
            hidden_states = torch.nn.functional.pad(hidden_states, (0, 0, 0, 0, 0, pad * p_t))
        real_tokens = num_latent * tokens_per_frame
        with (
            self.rope.time_positions(positions),
            _masked_keys(self, real_tokens, pad * tokens_per_frame, hidden_states.device),
        ):
            output = super().forward(
                hidden_states,
                timestep,
                encoder_hidden_states,
                encoder_hidden_states_image=encoder_hidden_states_image,
                return_dict=return_dict,
                attention_kwargs=attention_kwargs,
            )
        if not pad:
            return output
        trimmed = (output.sample if return_dict else output[0])[:, :, : num_latent * p_t]
        return Transformer2DModelOutput(sample=trimmed) if return_dict else (trimmed,)


def padding_frames(num_frames: int, tokens_per_frame: int, multiple: int) -> int:
    """How many empty latent frames to append so the token count divides by `multiple` (the
    context-parallel degree): the fewest k >= 0 with (num_frames + k) * tokens_per_frame % multiple == 0."""
    for k in range(multiple):
        if (num_frames + k) * tokens_per_frame % multiple == 0:
            return k
    raise ValueError(f"no padding makes {tokens_per_frame} tokens per frame divide by {multiple}")


@contextmanager
def _masked_keys(model, real_tokens: int, padded_tokens: int, device):
    """Inside the block, every self-attention ignores the last `padded_tokens` keys (padding):
    real queries then see exactly the real sequence, and padded outputs are cut off after."""
    if not padded_tokens:
        yield
        return
    mask = torch.zeros(1, 1, 1, real_tokens + padded_tokens, dtype=torch.bool, device=device)
    mask[..., :real_tokens] = True

    def add_mask(module, args, kwargs):  # blocks call attn1(hidden, None, None, rotary_emb)
        if len(args) > 2:
            return (*args[:2], mask, *args[3:]), kwargs
        return args, {**kwargs, "attention_mask": mask}

    handles = [block.attn1.register_forward_pre_hook(add_mask, with_kwargs=True) for block in model.blocks]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
