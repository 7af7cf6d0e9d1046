"""Keyframe selection after each shot (reference section 5), as a pure function of embeddings.

1. Scan the frames in order: the first frame that passes the quality filter is a keyframe; a
   later frame is one when its similarity to the LAST accepted keyframe is below `threshold`
   and it passes the quality filter.
2. While more than `max_keyframes` are selected, lower the threshold by `step` and scan again.
3. Drop candidates more than `dedup_threshold` similar to any keyframe already in memory.
A shot may yield no keyframe.
"""

from __future__ import annotations

import torch


def _scan(similarity: torch.Tensor, passes: list[bool], threshold: float) -> list[int]:
    chosen: list[int] = []
    for i, ok in enumerate(passes):
        if ok and (not chosen or similarity[i, chosen[-1]] < threshold):
            chosen.append(i)
    return chosen


def select_keyframes(
    embeddings: torch.Tensor,
    quality: torch.Tensor | None = None,
    quality_threshold: float | None = None,
    memory_embeddings: torch.Tensor | None = None,
    threshold: float = 0.9,
    max_keyframes: int = 3,
    step: float = 0.01,
    dedup_threshold: float = 0.9,
) -> list[int]:
    """Indices of the chosen frames. `embeddings` [F, D] and `memory_embeddings` [M, D] are
    L2-normalised (cosine similarity = dot product)."""
    embeddings = embeddings.float()
    similarity = embeddings @ embeddings.T
    if quality is None or quality_threshold is None:
        passes = [True] * len(embeddings)
    else:
        passes = [bool(q >= quality_threshold) for q in quality]
    # Integer hundredths avoid float drift in 0.9 - k * 0.01.
    hundredths = round(threshold / step)
    chosen = _scan(similarity, passes, hundredths * step)
    while len(chosen) > max_keyframes:
        hundredths -= 1
        chosen = _scan(similarity, passes, hundredths * step)
    if memory_embeddings is not None and len(memory_embeddings):
        to_memory = embeddings[chosen] @ memory_embeddings.float().T
        chosen = [i for i, row in zip(chosen, to_memory, strict=True) if row.max() <= dedup_threshold]
    return chosen
