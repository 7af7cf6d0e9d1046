import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

from storymem.models.rope import MemoryRotaryPosEmbed, memory_time_positions
from storymem.models.tiny import tiny_transformer_config
from storymem.models.transformer import StoryMemWanTransformer3DModel


@pytest.mark.parametrize("m,f,s", [(0, 21, 5), (1, 21, 5), (3, 2, 5), (10, 21, 5), (4, 3, 1), (2, 5, 7)])
def test_time_positions(m, f, s):
    expected = [-(m - j) * s for j in range(m)] + list(range(f))
    assert memory_time_positions(m, f, s).tolist() == expected


def test_positions_for_the_paper_case():
    # 10 memory frames, 21 video latents, S = 5: {-50, ..., -5, 0, ..., 20}
    positions = memory_time_positions(10, 21, 5).tolist()
    assert positions[:10] == [-50, -45, -40, -35, -30, -25, -20, -15, -10, -5]
    assert positions[10:] == list(range(21))


def _ropes(head_dim=128):
    stock = WanRotaryPosEmbed(head_dim, (1, 2, 2), 1024)
    ours = MemoryRotaryPosEmbed(head_dim, (1, 2, 2), 1024)
    return stock, ours


def test_no_memory_is_bit_identical_to_stock():
    stock, ours = _ropes()
    x = torch.zeros(1, 16, 21, 60, 104)
    expected = stock(x)
    for positions in (None, memory_time_positions(0, 21)):
        with ours.time_positions(positions):
            got = ours(x)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_memory_frames_get_negative_angles_and_unchanged_space():
    stock, ours = _ropes()
    m, f = 3, 4
    x = torch.zeros(1, 16, m + f, 6, 8)
    with ours.time_positions(memory_time_positions(m, f, 5)):
        cos, sin = ours(x)
    tokens_per_frame = 3 * 4
    cos = cos.view(m + f, tokens_per_frame, -1)
    sin = sin.view(m + f, tokens_per_frame, -1)
    t_dim = ours.t_dim
    assert t_dim == 44 and ours.h_dim == ours.w_dim == 42
    freqs = 1.0 / (10000 ** (torch.arange(0, t_dim, 2, dtype=torch.float64) / t_dim))
    for frame, pos in enumerate([-15, -10, -5, 0, 1, 2, 3]):
        angle = (pos * freqs).repeat_interleave(2)
        torch.testing.assert_close(
            cos[frame, :, :t_dim], angle.cos().float().expand(tokens_per_frame, -1), rtol=0, atol=1e-7
        )
        torch.testing.assert_close(
            sin[frame, :, :t_dim], angle.sin().float().expand(tokens_per_frame, -1), rtol=0, atol=1e-7
        )
    # Height/width parts are the stock ones for every frame, memory included.
    stock_cos, _ = stock(torch.zeros(1, 16, 1, 6, 8))
    for frame in range(m + f):
        assert torch.equal(cos[frame, :, t_dim:], stock_cos.view(tokens_per_frame, -1)[:, t_dim:])


def _pair(seed=0):
    torch.manual_seed(seed)
    config = tiny_transformer_config(in_channels=36)
    ours = StoryMemWanTransformer3DModel(**config).eval()
    stock = WanTransformer3DModel(**config).eval()
    stock.load_state_dict(ours.state_dict())
    return ours, stock


def _inputs(frames=6):
    g = torch.Generator().manual_seed(1)
    return torch.randn(1, 36, frames, 8, 8, generator=g), torch.tensor([700]), torch.randn(1, 5, 32, generator=g)


@torch.no_grad()
def test_transformer_without_memory_equals_stock_exactly():
    ours, stock = _pair()
    x, t, text = _inputs()
    assert torch.equal(ours(x, t, text).sample, stock(x, t, text).sample)


@torch.no_grad()
def test_shift_one_is_the_first_release_and_shift_five_is_not():
    # S = 1 gives positions -M..f-1: a constant offset of the stock 0..M+f-1, and RoPE is
    # relative, so the output matches the stock model (the first public release's behaviour).
    ours, stock = _pair()
    x, t, text = _inputs()
    ours.register_to_config(memory_rope_shift=1)
    torch.testing.assert_close(
        ours(x, t, text, num_memory_frames=2).sample, stock(x, t, text).sample, rtol=0, atol=1e-5
    )
    ours.register_to_config(memory_rope_shift=5)
    diff = (ours(x, t, text, num_memory_frames=2).sample - stock(x, t, text).sample).abs().max()
    assert diff > 1e-3


def test_loads_diffusers_format_wan_weights_unchanged(tmp_path):
    _, stock = _pair(seed=3)
    stock.save_pretrained(tmp_path / "transformer")
    loaded = StoryMemWanTransformer3DModel.from_pretrained(tmp_path / "transformer").eval()
    assert loaded.config.memory_rope_shift == 5
    assert isinstance(loaded.rope, MemoryRotaryPosEmbed)
    reference = stock.state_dict()
    state = loaded.state_dict()
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[k], reference[k]) for k in reference)
    # Compared with the stock class loaded the same way (from_pretrained itself moves the numbers
    # by ~6e-7 against the in-memory model, for the stock class too).
    stock_loaded = WanTransformer3DModel.from_pretrained(tmp_path / "transformer").eval()
    x, t, text = _inputs()
    with torch.no_grad():
        assert torch.equal(loaded(x, t, text).sample, stock_loaded(x, t, text).sample)
