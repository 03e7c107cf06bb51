import pytest
import torch

from seqnrl.data.sampling import eval_window_starts, random_clip_start, window_indices


@pytest.mark.parametrize("n,w,s", [(1, 4, 2), (4, 4, 2), (5, 4, 2), (17, 8, 4), (100, 16, 5), (33, 8, 8)])
def test_windows_cover_every_frame(n, w, s):
    starts = eval_window_starts(n, w, s)
    covered = torch.zeros(n, dtype=torch.long)
    for st in starts:
        idx, valid = window_indices(st, w, n)
        covered[idx[valid]] += 1
    assert (covered > 0).all()
    assert starts == sorted(set(starts))
    assert max(starts) + w >= n


def test_short_video_padding_marked_invalid():
    idx, valid = window_indices(0, 8, 3)
    assert idx.tolist() == [0, 1, 2, 2, 2, 2, 2, 2]
    assert valid.tolist() == [True] * 3 + [False] * 5


def test_bad_window_arguments():
    with pytest.raises(ValueError):
        eval_window_starts(10, 0, 1)
    with pytest.raises(ValueError):
        eval_window_starts(0, 4, 1)


def test_random_start_in_range():
    g = torch.Generator().manual_seed(0)
    starts = {random_clip_start(20, 8, g) for _ in range(200)}
    assert min(starts) == 0 and max(starts) == 12
