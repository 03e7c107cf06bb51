import math

import pytest
import torch

from seqnrl import batch as B


def test_make_sample_fills_contract_and_converts_uint8():
    v = torch.full((1, 4, 8, 8), 255, dtype=torch.uint8)
    s = B.make_sample(v, video_id="x", start_frame=10, fps=20.0, n_frames=40)
    assert s[B.VIDEO].dtype == torch.float32 and float(s[B.VIDEO].max()) == 1.0
    assert s[B.FRAME_INDEX].tolist() == [10, 11, 12, 13]
    assert s[B.FRAME_LABEL].tolist() == [-1] * 4
    assert float(s[B.START_TIME]) == pytest.approx(0.5)
    assert math.isnan(float(s[B.EF]))


def test_collate_stacks_and_lists():
    v = torch.rand(1, 4, 8, 8)
    b = B.collate([B.make_sample(v, video_id="a"), B.make_sample(v, video_id="b", patient="p")])
    assert b[B.VIDEO].shape == (2, 1, 4, 8, 8)
    assert b[B.VIDEO_ID] == ["a", "b"] and b[B.PATIENT] == ["", "p"]
    assert B.batch_size(b) == 2


def test_collate_rejects_inconsistent_optional_keys():
    v = torch.rand(1, 4, 8, 8)
    a = B.make_sample(v, video_id="a", keypoints=torch.zeros(4, 3, 2))
    b = B.make_sample(v, video_id="b")
    with pytest.raises(ValueError):
        B.collate([a, b])


def test_make_sample_shape_check():
    with pytest.raises(ValueError):
        B.make_sample(torch.rand(4, 8, 8), video_id="bad")
