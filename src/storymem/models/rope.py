"""Wan's 3D RoPE with explicit time positions: the negative RoPE shift of memory frames.

For a shot with M memory latent frames and f video latent frames the time positions are

    {-M*S, -(M-1)*S, ..., -S, 0, 1, ..., f-1}        (S = 5 in the released weights)

so memory sits "before" the video at a distance, oldest first. Height/width positions are the
stock ones (memory shares the video's spatial grid). With M = 0 the output is bit-identical to
diffusers' `WanRotaryPosEmbed`.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed


def memory_time_positions(num_memory: int, num_video: int, shift: int = 5) -> torch.Tensor:
    """Time positions of the latent frames: memory (chronological) then video."""
    if num_memory < 0 or num_video < 1 or shift < 1:
        raise ValueError(f"bad sizes: num_memory={num_memory}, num_video={num_video}, shift={shift}")
    memory = torch.arange(-num_memory, 0, dtype=torch.int64) * shift
    return torch.cat([memory, torch.arange(num_video, dtype=torch.int64)])


class MemoryRotaryPosEmbed(WanRotaryPosEmbed):
    """Drop-in replacement for `WanRotaryPosEmbed` that accepts explicit time positions.

    The stock module slices a table of positions 0..max_seq_len-1, which cannot express negative
    positions (indexing with -1 silently wraps). Here the time angles are computed from the
    positions themselves with the same arithmetic (float64 outer product), so positions 0..F-1
    give the stock numbers exactly.
    """

    def __init__(self, attention_head_dim, patch_size, max_seq_len, theta: float = 10000.0):
        super().__init__(attention_head_dim, patch_size, max_seq_len, theta)
        self.theta = theta
        self._time_positions: torch.Tensor | None = None
        self._time_tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    @contextmanager
    def time_positions(self, positions: torch.Tensor | None):
        """Use these time positions (one per latent frame, after patching) inside the block."""
        previous, self._time_positions = self._time_positions, positions
        try:
            yield
        finally:
            self._time_positions = previous

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._time_positions is None:
            return super().forward(hidden_states)
        _, _, num_frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.patch_size
        ppf, pph, ppw = num_frames // p_t, height // p_h, width // p_w
        positions = self._time_positions
        if positions.numel() != ppf:
            raise ValueError(f"{positions.numel()} time positions given for {ppf} latent frames")

        time_cos, time_sin = self._time_table(positions)
        split = [self.t_dim, self.h_dim, self.w_dim]
        _, cos_h, cos_w = self.freqs_cos.split(split, dim=1)
        _, sin_h, sin_w = self.freqs_sin.split(split, dim=1)

        def grid(t, h, w):
            return torch.cat(
                [
                    t.view(ppf, 1, 1, -1).expand(ppf, pph, ppw, -1),
                    h[:pph].view(1, pph, 1, -1).expand(ppf, pph, ppw, -1),
                    w[:ppw].view(1, 1, ppw, -1).expand(ppf, pph, ppw, -1),
                ],
                dim=-1,
            ).reshape(1, ppf * pph * ppw, 1, -1)

        return grid(time_cos, cos_h, cos_w), grid(time_sin, sin_h, sin_w)

    def _time_table(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin of the time angles, computed on the CPU like the stock table (so the numbers
        match it exactly) and cached: a story reuses a handful of position sets."""
        device = self.freqs_cos.device
        key = (tuple(positions.tolist()), device)
        if key not in self._time_tables:
            # The stock module uses float32 on MPS machines, float64 elsewhere; so do we.
            dtype = torch.float32 if torch.backends.mps.is_available() else torch.float64
            cos, sin = get_1d_rotary_pos_embed(
                self.t_dim, positions.cpu(), self.theta, use_real=True, repeat_interleave_real=True, freqs_dtype=dtype
            )
            self._time_tables[key] = (cos.to(device), sin.to(device))
        return self._time_tables[key]
