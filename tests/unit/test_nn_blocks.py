"""Building blocks of seqnrl.nn: positions, tubelets and tube masks, attention, frame CNN."""

from __future__ import annotations

import pytest
import torch

from seqnrl.nn.attention import Attention, FactorisedBlock, TransformerBlock
from seqnrl.nn.frame_cnn import FrameDecoder, FrameEncoder
from seqnrl.nn.posenc import PositionTable, SpaceTimePosition, sinusoidal_1d, sinusoidal_2d
from seqnrl.nn.tubelet import (
    TubeletEmbed,
    complementary_tube_masks,
    mask_to_pixels,
    n_hidden,
    patchify,
    random_tube_mask,
    unpatchify,
)


def test_sinusoidal_tables():
    t = sinusoidal_1d(10, 8)
    assert t.shape == (10, 8)
    assert torch.allclose(t[0, 0::2], torch.zeros(4)) and torch.allclose(t[0, 1::2], torch.ones(4))
    assert torch.allclose(t[3, 0], torch.sin(torch.tensor(3.0)))
    g = sinusoidal_2d(2, 3, 8)
    assert g.shape == (6, 8)
    # first half encodes the row, second half the column
    assert torch.equal(g[0, :4], g[2, :4]) and not torch.equal(g[0, :4], g[3, :4])
    assert torch.equal(g[0, 4:], g[3, 4:])
    with pytest.raises(ValueError):
        sinusoidal_1d(4, 7)


@pytest.mark.parametrize("kind", ["learned", "sinusoidal"])
def test_space_time_position(kind):
    pos = SpaceTimePosition((2, 2), max_frames=6, dim=8, kind=kind)
    x = torch.zeros(3, 5, 4, 8)
    y = pos(x)
    assert y.shape == x.shape
    assert not torch.equal(y[:, 0], y[:, 1])  # time positions differ
    assert not torch.equal(y[:, :, 0], y[:, :, 1])  # space positions differ
    assert ("table" in dict(pos.time.named_parameters())) == (kind == "learned")
    with pytest.raises(ValueError):
        pos(torch.zeros(1, 7, 4, 8))  # longer than the table
    with pytest.raises(ValueError):
        pos(torch.zeros(1, 2, 5, 8))  # wrong grid
    assert PositionTable(4, 8, kind)(3).shape == (3, 8)


@pytest.mark.parametrize("tubelet", [1, 2])
def test_tubelet_embed_and_patchify_roundtrip(tubelet):
    v = torch.rand(2, 3, 4, 16, 24)
    tok = TubeletEmbed(3, 10, patch_size=8, tubelet_size=tubelet)(v)
    assert tok.shape == (2, 4 // tubelet, 2 * 3, 10)
    p = patchify(v, 8, tubelet)
    assert p.shape == (2, 4 // tubelet, 6, tubelet * 8 * 8 * 3)
    assert torch.equal(unpatchify(p, 8, tubelet, (2, 3), 3), v)
    # patch (row 1, col 2) of the first tubelet is exactly that block of pixels
    blk = v[0, :, :tubelet, 8:16, 16:24]
    assert torch.equal(p[0, 0, 5], blk.permute(1, 2, 3, 0).reshape(-1))
    with pytest.raises(ValueError):
        TubeletEmbed(3, 10, patch_size=5)(v)


def test_random_tube_mask_ratio_and_same_across_time():
    g = torch.Generator().manual_seed(0)
    m = random_tube_mask(5, 16, 0.75, generator=g)
    assert m.shape == (5, 16) and m.dtype == torch.bool
    assert (m.sum(1) == 12).all()
    assert not torch.equal(m[0], m[1])  # different per sample
    pix = mask_to_pixels(m, (4, 4), 4, n_frames=6)
    assert pix.shape == (5, 1, 6, 16, 16)
    for t in range(6):  # a tube: the same pixels hidden in every frame
        assert torch.equal(pix[:, :, t], pix[:, :, 0])
    assert torch.allclose(pix.mean(dim=(1, 2, 3, 4)), torch.full((5,), 0.75))
    assert pix[0, 0, 0, :4, :4].unique().numel() == 1  # whole patches
    assert n_hidden(10, 0.99) == 9 and n_hidden(10, 0.01) == 1
    with pytest.raises(ValueError):
        random_tube_mask(1, 16, 1.0)


def test_complementary_masks_partition_the_patches():
    m = complementary_tube_masks(16, 4, seed=3)
    assert m.shape == (4, 16)
    assert ((~m).sum(0) == 1).all()  # every patch visible in exactly one mask
    assert (m.sum(1) == 12).all()  # each hides the training ratio 0.75
    assert torch.equal(m, complementary_tube_masks(16, 4, seed=3))  # deterministic


def test_attention_causal_does_not_look_ahead():
    torch.manual_seed(0)
    att = Attention(16, heads=4).eval()
    x = torch.randn(2, 7, 16)
    y = x.clone()
    y[:, 4:] += torch.randn(2, 3, 16)
    a, b = att(x, causal=True), att(y, causal=True)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-6)
    assert not torch.allclose(a[:, 4:], b[:, 4:])
    # without the causal mask the past does see the future
    assert not torch.allclose(att(x)[:, :4], att(y)[:, :4])
    blk = TransformerBlock(16, 4, 2.0)
    assert blk(x, causal=True).shape == x.shape


def test_factorised_block_shapes_and_causality():
    torch.manual_seed(0)
    blk = FactorisedBlock(16, heads=2, mlp_ratio=2.0).eval()
    x = torch.randn(2, 5, 6, 16)  # b t n d
    assert blk(x).shape == x.shape
    y = x.clone()
    y[:, 3, 2] += torch.randn(16)  # change one token of frame 3
    a, b = blk(x, causal=True), blk(y, causal=True)
    assert torch.allclose(a[:, :3], b[:, :3], atol=1e-6)  # earlier frames unaffected
    assert not torch.allclose(a[:, 3, 0], b[:, 3, 0])  # spatial mixing within frame 3
    assert not torch.allclose(a[:, 4], b[:, 4])  # later frames see it
    a, b = blk(x), blk(y)
    assert not torch.allclose(a[:, 0], b[:, 0])  # bidirectional in time without causal


def test_frame_cnn_shapes():
    enc = FrameEncoder(1, image_size=32, width=8, depth=2, dim=24)
    dec = FrameDecoder(1, image_size=32, width=8, depth=2, dim=24)
    v = torch.rand(2, 1, 3, 32, 32)
    z = enc(v)
    assert z.shape == (2, 3, 24)
    assert dec(z).shape == v.shape
    with pytest.raises(ValueError):
        FrameEncoder(1, image_size=30, depth=2)


def test_coordinate_channels_append_row_and_column():
    from seqnrl.nn.posenc import coordinate_channels

    x = torch.zeros(2, 3, 4, 5)
    out = coordinate_channels(x)
    assert out.shape == (2, 5, 4, 5)
    torch.testing.assert_close(out[:, :3], x)
    # row channel: -1 at the top, 1 at the bottom, the same along a row; column channel likewise
    torch.testing.assert_close(out[0, 3, :, 0], torch.linspace(-1, 1, 4))
    torch.testing.assert_close(out[1, 4, 0], torch.linspace(-1, 1, 5))
    assert (out[:, 3] == out[:, 3, :, :1]).all() and (out[:, 4] == out[:, 4, :1]).all()
