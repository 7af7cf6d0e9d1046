"""The `toy` preset: the built-in model that runs `storymem generate` on any laptop.

Same classes as the real preset, at toy size:
- codec: `PixelPackCodec`, an exact invertible packing of pixels behind the VAE interface
  (2x2 pixels and 2 frames per latent, frame 0 alone as in Wan's causal VAE);
- text: a word-level tokenizer over the toy world's vocabulary and a small UMT5 encoder
  (random, frozen: the transformer learns to read it);
- experts: one trained I2V network (`StoryMemWanTransformer3DModel`) serves all noise levels
  (the toy's boundary is 0); the T2V expert is the same network with the condition channels
  folded into its patch-embedding bias, which is exact (see `t2v_from_i2v`).

The weights (`toy_weights/`) come from `scripts/train_toy_model.py`: a base model trained on
single toy clips, then the StoryMem M2V LoRA trained with `storymem.train` on grouped clips.
"""

from __future__ import annotations

import copy
import string
from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from safetensors.torch import load_file
from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

from ..errors import WeightsNotFoundError
from ..sampling import flow_scheduler
from .transformer import StoryMemWanTransformer3DModel

TOY_WEIGHTS = Path(__file__).parent / "toy_weights"  # shipped in the package
BASE_FILE = "base.safetensors"
TEXT_DIM = 64
Z_DIM = 24  # 3 colours x 2 frames x 2 x 2 pixels
TEMPORAL, SPATIAL = 2, 2
# A token (1 x 2 x 2 latents) carries 96 numbers; the transformer's width must exceed that, or
# it cannot carry the noise it has to predict (a width of 128 with 4-frame packing, 192 numbers
# a token, left visible noise in every sample).
# Latent normalisation: pixels in [-1, 1] -> roughly unit scale for toy-world frames.
LATENT_MEAN, LATENT_STD = -0.1, 0.6
REPRODUCE = "python scripts/train_toy_model.py"


class PixelPackCodec(ModelMixin, ConfigMixin):
    """Pixels [B, 3, tk+1, H, W] <-> latents [B, 3 t s s, k+1, H/s, W/s], losslessly
    (t = scale_factor_temporal, s = scale_factor_spatial).

    Frame 0 is repeated t times so that it fills a latent frame of its own, as Wan's causal
    VAE gives it one; every later latent frame holds t consecutive frames. Decoding frame 0
    averages its copies (exact when they are equal)."""

    @register_to_config
    def __init__(
        self,
        z_dim: int = Z_DIM,
        scale_factor_temporal: int = TEMPORAL,
        scale_factor_spatial: int = SPATIAL,
        latents_mean: list[float] | None = None,
        latents_std: list[float] | None = None,
    ):
        super().__init__()
        if z_dim != 3 * scale_factor_temporal * scale_factor_spatial**2:
            raise ValueError("z_dim must equal 3 x temporal x spatial^2 for an exact packing")
        self.register_to_config(latents_mean=latents_mean or [0.0] * z_dim, latents_std=latents_std or [1.0] * z_dim)
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # gives the codec a device/dtype

    def pack(self, pixels: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = pixels.shape
        t, s = self.config.scale_factor_temporal, self.config.scale_factor_spatial
        if (f - 1) % t or h % s or w % s:
            raise ValueError(f"cannot pack {f} frames of {h}x{w}: need {t}k+1 frames and sizes divisible by {s}")
        video = torch.cat([pixels[:, :, :1].expand(-1, -1, t, -1, -1), pixels[:, :, 1:]], dim=2)
        video = video.reshape(b, c, f // t + 1, t, h // s, s, w // s, s)
        return video.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, c * t * s * s, f // t + 1, h // s, w // s)

    def unpack(self, latents: torch.Tensor) -> torch.Tensor:
        b, z, n, hh, ww = latents.shape
        t, s = self.config.scale_factor_temporal, self.config.scale_factor_spatial
        video = latents.reshape(b, 3, t, s, s, n, hh, ww).permute(0, 1, 5, 2, 6, 3, 7, 4)
        video = video.reshape(b, 3, n * t, hh * s, ww * s)
        return torch.cat([video[:, :, :t].mean(2, keepdim=True), video[:, :, t:]], dim=2)

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        mean = self.pack(x)
        # A point mass: the "distribution" has the packing as its mode and (almost) no spread.
        dist = DiagonalGaussianDistribution(torch.cat([mean, torch.full_like(mean, -30.0)], dim=1))
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        video = self.unpack(z).clamp(-1, 1)
        if return_dict:
            from diffusers.models.autoencoders.vae import DecoderOutput

            return DecoderOutput(sample=video)
        return (video,)


def toy_vocabulary() -> list[str]:
    from ..toyworld.world import ACTIONS, COLOURS, NAMES, PATTERNS, PLACES, SHAPES, SHOTS

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
        state = load_file(str(file))
        for prefix, module in (("text_encoder.", text_encoder), ("transformer.", i2v)):
            module.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
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


def load_toy_pipeline(weights: str | Path | None = None, lora: bool = True):
    """(pipeline, LoRA folder or None) for toy weights from `scripts/train_toy_model.py`
    (None: the shipped ones); `lora=False` leaves the M2V LoRA out (memory read by the base)."""
    from ..pipelines import StoryMemPipeline

    if weights is None:
        return StoryMemPipeline.from_preset("toy", lora=None if lora else False), None
    pipe = StoryMemPipeline(**build_toy_components(weights=weights), preset="toy")
    source = str(Path(weights) / "lora") if lora else None
    if source:
        pipe.load_storymem_lora(source)
    return pipe, source
