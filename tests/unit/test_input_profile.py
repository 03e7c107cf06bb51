"""Out-of-distribution warnings from the checkpoint's profile of its normal inputs."""

from __future__ import annotations

import numpy as np
import torch

from seqnrl.scoring.input_profile import InputProfile, frame_statistics


def _clips(seed: int, n: int, level: float, spread: float = 0.02) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = level + spread * torch.randn(n, 1, 1, 1, 1, generator=g)
    return (base + 0.1 * torch.randn(n, 1, 8, 16, 16, generator=g)).clamp(0, 1)


def test_frame_statistics_counts_valid_frames_only():
    v = torch.zeros(2, 1, 4, 8, 8)
    v[:, :, :, :4] = 1.0  # half the frame white: brightness 0.5
    s = frame_statistics(v, n_valid=torch.tensor([4, 2]))
    assert s.shape == (6, 2) and np.allclose(s[:, 0], 0.5)


def test_no_warning_in_distribution_and_warnings_outside():
    prof = InputProfile()
    assert not prof.fitted and prof.check(frame_statistics(_clips(0, 4, 0.2))) == []  # unfitted: silent
    prof.fit(frame_statistics(_clips(1, 32, 0.2)))
    assert prof.fitted
    same = frame_statistics(_clips(2, 6, 0.2))  # new clips drawn like the normal ones
    assert prof.check(same, frac_above=0.05, target_fpr=0.05) == []
    bright = frame_statistics(_clips(3, 6, 0.6))  # another modality / gain
    w = prof.check(bright)
    assert len(w) >= 1 and "brightness" in w[0] and "higher" in w[0]
    flat = frame_statistics(torch.full((3, 1, 8, 16, 16), 0.2))  # no texture at all
    assert any("contrast" in x and "lower" in x for x in prof.check(flat))
    # most frames above a 5 % threshold: the recording is unlike the normal data
    assert any("above the alarm threshold" in x for x in prof.check(same, frac_above=0.9, target_fpr=0.05))
    assert prof.check(same, frac_above=0.3, target_fpr=0.05) == []  # a long episode, not the whole clip


def test_old_checkpoints_without_a_profile_load_unfitted():
    prof = InputProfile()
    prof.fit(frame_statistics(_clips(1, 8, 0.3)))
    state = {k: v for k, v in prof.state_dict().items()}
    fresh = InputProfile()
    fresh.load_state_dict(state)
    assert fresh.fitted and torch.equal(fresh.mean, prof.mean)
    legacy = InputProfile()
    legacy.load_state_dict({}, strict=True)  # a checkpoint written before the profile existed
    assert not legacy.fitted


def test_input_warnings_uses_the_models_calibrated_threshold():
    from types import SimpleNamespace

    from seqnrl.scoring.calibration import ScoreCalibrator
    from seqnrl.scoring.input_profile import input_warnings

    cal = ScoreCalibrator(target_fpr=0.05)
    cal.fit(np.random.default_rng(0).normal(0, 1, 2000))
    prof = InputProfile()
    prof.fit(frame_statistics(_clips(1, 32, 0.2)))
    model = SimpleNamespace(input_profile=prof, calibrator=cal)
    same = frame_statistics(_clips(2, 6, 0.2))
    assert input_warnings(model, same, np.random.default_rng(1).normal(0, 1, 200)) == []
    high = np.full(200, 5.0)
    high[:3] = np.nan  # non-finite scores do not count
    assert any("above the alarm threshold" in w for w in input_warnings(model, same, high))
    assert input_warnings(SimpleNamespace(calibrator=cal), same, high) == []  # no profile, no check


def test_colour_on_a_grey_model_warns_and_grey_or_colour_models_do_not():
    from types import SimpleNamespace

    from seqnrl.data.input_spec import InputSpec
    from seqnrl.scoring.input_profile import coloured_fraction, input_warnings

    g = torch.Generator().manual_seed(0)
    grey = torch.randint(0, 256, (4, 1, 32, 32), generator=g, dtype=torch.uint8).expand(4, 3, 32, 32).clone()
    marker = grey.clone()
    marker[:, 0, :2, :2] = 255  # a small coloured UI marker: 0.4 % of the pixels
    doppler = grey.clone()
    doppler[:, 0, 8:20, 8:20], doppler[:, 2, 8:20, 8:20] = 250, 10  # a red box: 14 %
    assert coloured_fraction(grey) == 0.0 and coloured_fraction(marker) < 0.02 < coloured_fraction(doppler)
    raw = np.zeros(10)
    grey_model = SimpleNamespace(input_spec=InputSpec(channels=1))
    assert input_warnings(grey_model, None, raw, colour=coloured_fraction(grey)) == []
    assert input_warnings(grey_model, None, raw, colour=coloured_fraction(marker)) == []
    w = input_warnings(grey_model, None, raw, colour=coloured_fraction(doppler))
    assert len(w) == 1 and "colour" in w[0] and "grey" in w[0]
    colour_model = SimpleNamespace(input_spec=InputSpec(channels=3))
    assert input_warnings(colour_model, None, raw, colour=coloured_fraction(doppler)) == []
