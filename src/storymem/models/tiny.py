"""The `tiny` preset: Wan2.2's architecture at toy size with random weights, built in code.

Every class is the one the real preset uses (UMT5 text encoder, AutoencoderKLWan, the memory-aware
transformer for the I2V experts, the same transformer (with no memory) for the T2V experts, UniPC), so tests run
every line of the real path in seconds on a CPU. Built from a fixed seed: two builds are equal.
"""

from __future__ import annotations

import string

import torch
from diffusers import AutoencoderKLWan
from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

from ..sampling import flow_scheduler
from .transformer import StoryMemWanTransformer3DModel

TEXT_DIM = 32


def tiny_tokenizer() -> T5Tokenizer:
    """A character-level sentencepiece-style vocabulary, built in memory (no download)."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -1.0) for c in string.ascii_lowercase + string.digits + ",.'"]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def tiny_transformer_config(in_channels: int) -> dict:
    return dict(
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=in_channels,
        out_channels=16,
        text_dim=TEXT_DIM,
        ffn_dim=32,
        num_layers=2,
        rope_max_seq_len=32,
    )


def build_tiny_components(seed: int = 0) -> dict:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = tiny_tokenizer()
        text_encoder = UMT5EncoderModel(
            UMT5Config(
                vocab_size=len(tokenizer),
                d_model=TEXT_DIM,
                d_kv=8,
                d_ff=64,
                num_layers=2,
                num_heads=4,
                relative_attention_num_buckets=8,
            )
        )
        vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
        i2v = tiny_transformer_config(in_channels=36)
        t2v = tiny_transformer_config(in_channels=16)
        components = dict(
            tokenizer=tokenizer,
            text_encoder=text_encoder.eval(),
            vae=vae.eval(),
            scheduler=flow_scheduler(),
            transformer=StoryMemWanTransformer3DModel(**i2v).eval(),
            transformer_2=StoryMemWanTransformer3DModel(**i2v).eval(),
            t2v_transformer=StoryMemWanTransformer3DModel(**t2v).eval(),
            t2v_transformer_2=StoryMemWanTransformer3DModel(**t2v).eval(),
        )
    return components
