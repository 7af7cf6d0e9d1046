"""The `toy` preset's model: the built-in model that runs `storymem generate` on any laptop.

Same classes as the real preset, at toy size:
- codec: `PixelPackCodec` (codec.py), an exact invertible packing of pixels behind the VAE
  interface (2x2 pixels and 2 frames per latent, frame 0 alone as in Wan's causal VAE);
- text: a word-level tokenizer over the toy world's vocabulary and a small UMT5 encoder
  (random, frozen: the transformer learns to read it);
- experts: one trained I2V network (`StoryMemWanTransformer3DModel`) serves all noise levels
  (the toy's boundary is 0); the T2V expert is the same network with the condition channels
  folded into its patch-embedding bias, which is exact (see `t2v_from_i2v`).

The weights (`weights/`) come from `scripts/train_toy_model.py`: a base model trained on
single toy clips, then the StoryMem M2V LoRA trained with `storymem.train` on grouped clips.
"""

from __future__ import annotations

import copy
import string
from pathlib import Path

import torch
from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

from ..errors import WeightsNotFoundError
from ..models.transformer import StoryMemWanTransformer3DModel
from ..options import PipelineOptions
from ..sampling import flow_scheduler
from ..weights import read_weights
from .codec import TEMPORAL, Z_DIM, PixelPackCodec
from .world import ACTIONS, COLOURS, NAMES, PATTERNS, PLACES, SHAPES, SHOTS

TOY_WEIGHTS = Path(__file__).parent / "weights"  # shipped in the package
BASE_FILE = "base.safetensors"
TEXT_DIM = 64
# A token (1 x 2 x 2 latents) carries 96 numbers; the transformer's width must exceed that, or
# it cannot carry the noise it has to predict (a width of 128 with 4-frame packing, 192 numbers
# a token, left visible noise in every sample).
# Latent normalisation: pixels in [-1, 1] -> roughly unit scale for toy-world frames.
LATENT_MEAN, LATENT_STD = -0.1, 0.6
REPRODUCE = "python scripts/train_toy_model.py"


def toy_vocabulary() -> list[str]:
    words = [
        *NAMES,
        *COLOURS,
        *PATTERNS,
        *SHAPES,
        *ACTIONS,
        *PLACES,
        *SHOTS,
        "a",
        "an",
        "in",
        "the",
        "of",
        "day",
        "life",
    ]
    return list(dict.fromkeys(words))


def toy_tokenizer() -> T5Tokenizer:
    """One token per toy-world word (sentencepiece pieces "▁word"), characters as a fallback."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0), (",", -1.0), (".", -1.0)]
    pieces += [(f"▁{w}", -1.0) for w in toy_vocabulary()]
    pieces += [(c, -3.0) for c in string.ascii_letters + string.digits + "-'"]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def toy_text_encoder(vocab_size: int) -> UMT5EncoderModel:
    config = UMT5Config(
        vocab_size=vocab_size,
        d_model=TEXT_DIM,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
    )
    return UMT5EncoderModel(config)


def toy_transformer_config(in_channels: int) -> dict:
    return dict(
        num_attention_heads=6,
        attention_head_dim=32,
        in_channels=in_channels,
        out_channels=Z_DIM,
        text_dim=TEXT_DIM,
        freq_dim=64,
        ffn_dim=512,
        num_layers=4,
        rope_max_seq_len=64,
    )


I2V_CHANNELS = Z_DIM + TEMPORAL + Z_DIM  # noisy | mask | condition


def toy_codec() -> PixelPackCodec:
    return PixelPackCodec(latents_mean=[LATENT_MEAN] * Z_DIM, latents_std=[LATENT_STD] * Z_DIM).eval()


def zero_condition_value() -> float:
    """The normalised latent of a black (all-zero) pixel: what the condition channels hold
    where nothing is given."""
    return (0.0 - LATENT_MEAN) / LATENT_STD


@torch.no_grad()
def t2v_from_i2v(i2v: StoryMemWanTransformer3DModel) -> StoryMemWanTransformer3DModel:
    """The T2V expert, exactly: with no memory and no given frame, the I2V input is
    [noisy | mask 0 | condition = the zero video's latents, a constant], and the patch embedding
    is a convolution with stride = kernel, so the constant channels add a fixed vector that the
    bias can hold."""
    config = {k: v for k, v in i2v.config.items() if not k.startswith("_")}
    config["in_channels"] = Z_DIM
    t2v = StoryMemWanTransformer3DModel(**config)
    state = i2v.state_dict()
    weight, bias = state["patch_embedding.weight"], state["patch_embedding.bias"]
    condition = weight[:, Z_DIM + TEMPORAL :].sum(dim=(1, 2, 3, 4)) * zero_condition_value()
    state["patch_embedding.weight"] = weight[:, :Z_DIM].clone()
    state["patch_embedding.bias"] = bias + condition
    t2v.load_state_dict(state)
    return t2v.eval()


def build_toy_components(weights: str | Path | None = TOY_WEIGHTS, seed: int = 0) -> dict:
    """The toy pipeline's components; `weights=None` gives the untrained model (the training
    script starts there). The text encoder is always the seeded random one."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = toy_tokenizer()
        text_encoder = toy_text_encoder(len(tokenizer)).eval()
        i2v = StoryMemWanTransformer3DModel(**toy_transformer_config(I2V_CHANNELS)).eval()
    if weights is not None:
        file = Path(weights) / BASE_FILE
        if not file.is_file():
            raise WeightsNotFoundError(f"toy model weights not found at {file}; make them with: {REPRODUCE}")
        fetch = (
            "git checkout -- src/storymem/toyworld/weights (or reinstall storymem)"
            if Path(weights) == TOY_WEIGHTS
            else REPRODUCE
        )
        state, _ = read_weights(file, "toy model weights", WeightsNotFoundError, fetch=fetch)
        for prefix, module in (("text_encoder.", text_encoder), ("transformer.", i2v)):
            part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(part)
            except RuntimeError as e:  # other tensors than the toy model's
                first = str(e).strip().splitlines()[0][:200]
                raise WeightsNotFoundError(f"{file}: not weights of the toy model ({first})") from None
    # One trained network serves both noise ranges (boundary 0): the low-noise slots hold copies.
    t2v = t2v_from_i2v(i2v)
    i2v_low, t2v_low = copy.deepcopy(i2v), copy.deepcopy(t2v)
    return dict(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=toy_codec(),
        scheduler=flow_scheduler(),
        transformer=i2v,
        transformer_2=i2v_low,
        t2v_transformer=t2v,
        t2v_transformer_2=t2v_low,
    )


def toy_options(weights: str | Path | None = None, lora: bool = True) -> PipelineOptions:
    """The pipeline options of toy weights from `scripts/train_toy_model.py` (None: the shipped
    ones), with their M2V LoRA (the folder's lora/) or, `lora=False`, memory read by the base."""
    if not lora:
        source = False
    elif weights is not None:
        source = str(Path(weights) / "lora")
    else:
        source = None
    return PipelineOptions(model="toy", weights=str(weights) if weights is not None else None, lora=source)
