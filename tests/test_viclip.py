import numpy as np
import pytest
import torch

from storymem import InputError
from storymem.eval import ViClip, ViClipConfig, ViClipVideoText, load_viclip
from storymem.eval.extractors import tiny_clip_tokenizer

SMALL = ViClipConfig(
    image_size=28,
    patch_size=14,
    vision_width=16,
    vision_layers=2,
    vision_heads=2,
    embed_dim=8,
    text_width=16,
    text_layers=2,
    text_heads=2,
    vocab_size=514,
)


def published_layout(c: ViClipConfig) -> dict[str, tuple]:
    """Key names and shapes of ViClip-InternVid-10M-FLT.pth's "model" dict (InternVid's ViCLIP:
    a CLIP ViT with a Conv3d patch embedding and temporal position embeddings, plus CLIP's text
    transformer), written out by hand so the test does not trust the model's own naming."""
    w, t, p = c.vision_width, c.text_width, c.patch_size
    layout = {
        "temp": (),
        "vision_encoder.class_embedding": (w,),
        "vision_encoder.positional_embedding": ((c.image_size // p) ** 2 + 1, w),
        "vision_encoder.temporal_positional_embedding": (1, c.num_frames, w),
        "vision_encoder.conv1.weight": (w, 3, 1, p, p),
        "vision_encoder.ln_pre.weight": (w,),
        "vision_encoder.ln_pre.bias": (w,),
        "vision_encoder.ln_post.weight": (w,),
        "vision_encoder.ln_post.bias": (w,),
        "vision_encoder.proj": (w, c.embed_dim),
        "text_encoder.token_embedding.weight": (c.vocab_size, t),
        "text_encoder.positional_embedding": (c.context_length, t),
        "text_encoder.ln_final.weight": (t,),
        "text_encoder.ln_final.bias": (t,),
        "text_encoder.text_projection": (t, c.embed_dim),
    }
    for tower, width, layers in (("vision_encoder", w, c.vision_layers), ("text_encoder", t, c.text_layers)):
        for i in range(layers):
            block = f"{tower}.transformer.resblocks.{i}"
            layout |= {
                f"{block}.attn.in_proj_weight": (3 * width, width),
                f"{block}.attn.in_proj_bias": (3 * width,),
                f"{block}.attn.out_proj.weight": (width, width),
                f"{block}.attn.out_proj.bias": (width,),
                f"{block}.ln_1.weight": (width,),
                f"{block}.ln_1.bias": (width,),
                f"{block}.mlp.c_fc.weight": (4 * width, width),
                f"{block}.mlp.c_fc.bias": (4 * width,),
                f"{block}.mlp.c_proj.weight": (width, 4 * width),
                f"{block}.mlp.c_proj.bias": (width,),
                f"{block}.ln_2.weight": (width,),
                f"{block}.ln_2.bias": (width,),
            }
    return layout


def random_checkpoint(path, config=SMALL, drop=None, extra=None, reshape=None):
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=g) * 0.2 for k, shape in published_layout(config).items()}
    state.pop(drop, None)
    state.update(extra or {})
    if reshape:
        state[reshape] = torch.zeros(3)
    torch.save({"model": state}, path)
    return state


def test_full_size_model_has_the_published_layout():
    with torch.device("meta"):
        model = ViClip()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == published_layout(ViClipConfig())
    assert 420e6 < sum(v.numel() for v in model.state_dict().values()) < 440e6  # ViCLIP-L: ~428M


def test_random_checkpoint_with_the_published_keys_loads_strictly(tmp_path):
    state = random_checkpoint(tmp_path / "viclip.pth")
    model = load_viclip(tmp_path / "viclip.pth", SMALL)
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)

    extractor = ViClipVideoText(model, tiny_clip_tokenizer())
    video = np.random.default_rng(0).integers(0, 256, (16, 40, 56, 3), dtype=np.uint8)
    feature = extractor.video_features(video)
    assert feature.shape == (8,) and float(feature.norm()) == pytest.approx(1.0, abs=1e-5)
    tokens = extractor.tokenize(["a fox", "x" * 100])
    end = tiny_clip_tokenizer().eos_token_id
    # <start> "a</w>" "f" "o" "x</w>" <end>, then 0-padding; the end token is the largest id (pooled there)
    assert tokens.shape == (2, 32) and tokens[0, 6:].eq(0).all() and tokens[0, 5] == end
    assert tokens[0].argmax() == 5 and tokens[1, -1] == end  # truncated, the end token kept
    texts = extractor.text_features(["a fox", "a red fox"])
    assert texts.shape == (2, 8) and torch.allclose(texts.norm(dim=-1), torch.ones(2))


def test_frame_order_matters_only_through_temporal_embeddings(tmp_path):
    random_checkpoint(tmp_path / "viclip.pth")
    model = load_viclip(tmp_path / "viclip.pth", SMALL)
    video = torch.randn(1, 8, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    flipped = video.flip(1)
    assert not torch.allclose(model.vision_encoder(video), model.vision_encoder(flipped), atol=1e-4)
    model.vision_encoder.temporal_positional_embedding.data.zero_()
    torch.testing.assert_close(model.vision_encoder(video), model.vision_encoder(flipped), atol=1e-5, rtol=1e-5)


def test_mismatched_checkpoints_are_named(tmp_path):
    random_checkpoint(tmp_path / "a.pth", drop="vision_encoder.proj")
    with pytest.raises(InputError, match=r"a.pth: does not match the ViCLIP-L layout \(missing vision_encoder.proj\)"):
        load_viclip(tmp_path / "a.pth", SMALL)
    random_checkpoint(tmp_path / "b.pth", extra={"vision_encoder.head.weight": torch.zeros(2)})
    with pytest.raises(InputError, match=r"\(unexpected vision_encoder.head.weight\)"):
        load_viclip(tmp_path / "b.pth", SMALL)
    random_checkpoint(tmp_path / "c.pth", reshape="text_encoder.ln_final.bias")
    with pytest.raises(InputError, match="size mismatch for text_encoder.ln_final.bias"):
        load_viclip(tmp_path / "c.pth", SMALL)
    (tmp_path / "d.pth").write_text("not a checkpoint")
    with pytest.raises(InputError, match="d.pth: cannot read it as a ViCLIP checkpoint"):
        load_viclip(tmp_path / "d.pth", SMALL)
    with pytest.raises(
        Exception,
        match="ViCLIP checkpoint not found: .*nope.pth; download it from https://huggingface.co/OpenGVLab/ViCLIP",
    ):
        load_viclip(tmp_path / "nope.pth", SMALL)
