"""Image embedders and quality scorers, each behind one small interface.

embedder.embed(images) -> [N, D] L2-normalised float32 (CPU)
scorer.score(images)   -> [N] float32; scorer.threshold: frames scoring below are rejected
"""

from .clip import ClipImageEmbedder
from .quality import AestheticScorer, HPSv3Scorer, make_quality_scorer

__all__ = ["AestheticScorer", "ClipImageEmbedder", "HPSv3Scorer", "make_quality_scorer"]
