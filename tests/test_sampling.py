import numpy as np
import pytest
import torch

from storymem.models.presets import get_preset
from storymem.sampling import Sampling, make_scheduler, unshifted_sigmas


def shifted(sigmas, shift):
    return shift * sigmas / (1 + (shift - 1) * sigmas)


@pytest.mark.parametrize("shift", [4.0, 12.0])
def test_official_grid_at_40_steps_is_the_formula(shift):
    """Wan's solver: sigma = shift(linspace(0.999, 0, n + 1)[:-1]), timesteps int64(sigma * 1000)."""
    preset = get_preset("wan2.2-a14b")
    assert preset.m2v.grid == "official" and preset.t2v.grid == "official" and preset.m2v.steps == 40
    sampling = Sampling(steps=40, shift=shift, boundary=0.9, guidance=3.5, guidance_2=3.5)
    scheduler = make_scheduler(sampling)
    expected = shifted(np.linspace(0.999, 0.0, 41)[:-1], shift)
    np.testing.assert_allclose(scheduler.sigmas[:-1].numpy(), expected, rtol=0, atol=1e-6)
    assert scheduler.sigmas[-1] == 0
    assert scheduler.timesteps.dtype == torch.int64
    np.testing.assert_array_equal(scheduler.timesteps.numpy(), (expected * 1000).astype(np.int64))
    assert scheduler.timesteps[0] == 999  # not 1000: the official grid starts below sigma = 1


def test_diffusers_grid_stays_available_and_differs():
    base = Sampling(steps=40, shift=4.0, boundary=0.9, guidance=3.5, guidance_2=3.5)
    official = make_scheduler(base).sigmas[:-1].numpy()
    diffusers = make_scheduler(Sampling(**{**base.__dict__, "grid": "diffusers"})).sigmas[:-1].numpy()
    expected = shifted(np.linspace(1.0, 1 / 1000, 41)[:-1], 4.0)
    np.testing.assert_allclose(diffusers, expected, atol=1e-6)
    assert 3e-3 < np.abs(official - diffusers).max() < 4e-3


def test_preview_recipe_is_lightnings():
    """4 Euler steps, shift 5, sigmas linspace(1, 0, 5)[:-1] shifted: t = 1000, 937.5, 833.3, 625."""
    preset = get_preset("wan2.2-a14b")
    for sampling in (preset.preview_m2v, preset.preview_t2v):
        assert (sampling.steps, sampling.shift, sampling.guidance, sampling.guidance_2) == (4, 5.0, 1.0, 1.0)
        scheduler = make_scheduler(sampling)
        np.testing.assert_allclose(scheduler.timesteps.numpy(), [1000, 937.5, 833.3333, 625], rtol=1e-6)
    assert (preset.preview_m2v.boundary, preset.preview_t2v.boundary) == (0.9, 0.875)


def test_unknown_grid_and_solver_are_named():
    with pytest.raises(ValueError, match="unknown sigma grid 'wan'"):
        unshifted_sigmas("wan", 4)
    with pytest.raises(ValueError, match="unknown solver 'dpm'"):
        make_scheduler(Sampling(steps=4, shift=1, boundary=0, guidance=1, guidance_2=1, solver="dpm"))
