import pytest
import torch

from storymem.conditioning import (
    ShotMode,
    condition_input,
    condition_mask,
    condition_pixels,
    kept_frames,
    mode_for,
    model_input,
    num_latent_frames,
)


def test_latent_frame_count_and_kept_frames():
    assert num_latent_frames(81) == 21 and num_latent_frames(9) == 3 and num_latent_frames(1) == 1
    frames = list(range(81))
    assert [len(frames[kept_frames(81, g)]) for g in (0, 1, 5)] == [81, 80, 76]
    assert frames[kept_frames(81, 5)][0] == 5
    assert [len(list(range(33))[kept_frames(33, g)]) for g in (0, 1, 5)] == [33, 32, 28]


def test_modes():
    assert mode_for(0, 0) is ShotMode.T2V
    assert mode_for(3, 0) is ShotMode.M2V
    assert mode_for(3, 1) is ShotMode.MI2V and mode_for(0, 1) is ShotMode.MI2V
    assert mode_for(3, 5) is ShotMode.MM2V
    with pytest.raises(ValueError, match="1 frame .MI2V. or 5 frames .MM2V., got 3"):
        mode_for(2, 3)


def per_frame(mask):
    """[1, 4, F, h, w] -> list of 4-tuples per latent frame (checks spatial constancy too)."""
    assert torch.equal(mask, mask[..., :1, :1].expand_as(mask))
    return [tuple(int(v) for v in mask[0, :, f, 0, 0]) for f in range(mask.shape[2])]


def test_mask_m2v():
    # 2 memory frames, 9 pixel frames (3 latents), nothing given.
    mask = condition_mask(2, 9, 0, 3, 5)
    assert mask.shape == (1, 4, 5, 3, 5)
    assert per_frame(mask) == [(1, 1, 1, 1)] * 2 + [(0, 0, 0, 0)] * 3


def test_mask_mi2v():
    mask = condition_mask(2, 9, 1, 3, 5)
    assert per_frame(mask) == [(1, 1, 1, 1)] * 2 + [(1, 1, 1, 1), (0, 0, 0, 0), (0, 0, 0, 0)]


def test_mask_mm2v():
    # frames 0-4 given: latent 0 (frame 0 x4) and latent 1 (frames 1-4) are 1.
    mask = condition_mask(1, 13, 5, 2, 2)
    assert per_frame(mask) == [(1, 1, 1, 1)] + [(1, 1, 1, 1), (1, 1, 1, 1), (0, 0, 0, 0), (0, 0, 0, 0)]


def test_mask_groups_pixel_frames_by_four():
    # 3 given frames: latent 1 covers frames 1-4, of which 1 and 2 are given.
    mask = condition_mask(0, 9, 3, 1, 1)
    assert per_frame(mask) == [(1, 1, 1, 1), (1, 1, 0, 0), (0, 0, 0, 0)]


def test_mask_paper_size():
    mask = condition_mask(10, 81, 1, 60, 104)
    assert mask.shape == (1, 4, 31, 60, 104)
    assert mask[:, :, :11].min() == 1 and mask[:, :, 11:].max() == 0


def test_condition_pixels_puts_given_frames_first_and_zeros_elsewhere():
    given = torch.rand(1, 3, 5, 4, 4) * 2 - 1
    video = condition_pixels(given, 9, 4, 4)
    assert video.shape == (1, 3, 9, 4, 4)
    assert torch.equal(video[:, :, :5], given) and video[:, :, 5:].abs().max() == 0
    assert condition_pixels(None, 9, 4, 4).abs().max() == 0


def test_condition_prepends_memory_in_time_and_stacks_channels():
    memory = torch.full((1, 16, 2, 3, 3), 7.0)
    video = torch.full((1, 16, 3, 3, 3), -2.0)
    mask = condition_mask(2, 9, 1, 3, 3)
    condition = condition_input(memory, video, mask)
    assert condition.shape == (1, 20, 5, 3, 3)
    assert torch.equal(condition[:, :4], mask)
    assert (condition[:, 4:, :2] == 7).all() and (condition[:, 4:, 2:] == -2).all()
    noisy = torch.randn(1, 16, 5, 3, 3)
    x = model_input(noisy, condition)
    assert x.shape == (1, 36, 5, 3, 3)
    assert torch.equal(x[:, :16], noisy) and torch.equal(x[:, 16:], condition)
    assert model_input(noisy, None) is noisy
    with pytest.raises(ValueError, match="mask covers"):
        condition_input(memory, video, condition_mask(1, 9, 1, 3, 3))
