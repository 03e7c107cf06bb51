import pytest
import torch

from seqnrl.errors import CheckpointError
from seqnrl.models.baseline.module import FrameAutoEncoderModel
from seqnrl.models.loading import load_model


def _ckpt(tmp_path, model, **meta):
    model.calibrator.fit(torch.randn(100).numpy())
    ck = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
          "seqnrl": {"model_class": "seqnrl.models.baseline.module.FrameAutoEncoderModel", "data_spec": {"clip_len": 8}}}
    ck["seqnrl"].update(meta)
    p = tmp_path / "m.ckpt"
    torch.save(ck, p)
    return p


def test_roundtrip_restores_weights_calibration_and_spec(tmp_path):
    m = FrameAutoEncoderModel(width=8, depth=2, latent=8)
    p = _ckpt(tmp_path, m)
    m2 = load_model(p)
    assert isinstance(m2, FrameAutoEncoderModel) and m2.calibrator.fitted and m2.input_spec.clip_len == 8
    x = torch.rand(1, 1, 4, 16, 16)
    torch.testing.assert_close(m2.net(x)[0], m.eval().net(x)[0])


@pytest.mark.parametrize("kind", ["missing", "garbage", "plain_dict", "no_meta", "foreign_class", "wrong_weights"])
def test_bad_checkpoints_give_clear_errors(tmp_path, kind):
    p = tmp_path / "bad.ckpt"
    m = FrameAutoEncoderModel(width=8, depth=2, latent=8)
    if kind == "garbage":
        p.write_bytes(b"\x00not a checkpoint" * 10)
    elif kind == "plain_dict":
        torch.save({"weights": torch.zeros(2)}, p)
    elif kind == "no_meta":
        torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams)}, p)
    elif kind == "foreign_class":
        p = _ckpt(tmp_path, m, model_class="os.system")
    elif kind == "wrong_weights":
        sd = m.state_dict()
        sd.pop(next(iter(sd)))
        torch.save({"state_dict": sd, "hyper_parameters": dict(m.hparams),
                    "seqnrl": {"model_class": "seqnrl.models.baseline.module.FrameAutoEncoderModel"}}, p)
    with pytest.raises(CheckpointError) as e:
        load_model(p)
    assert p.name in str(e.value)


def test_expected_class_mismatch(tmp_path):
    class Other(torch.nn.Module):
        pass

    p = _ckpt(tmp_path, FrameAutoEncoderModel(width=8, depth=2, latent=8))
    with pytest.raises(CheckpointError, match="expected a Other"):
        load_model(p, expected=Other)


def test_pickled_objects_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Evil()}, p)
    with pytest.raises(CheckpointError, match=r"will not run code from a file") as e:
        load_model(p)
    assert "print" in str(e.value)  # the refused global is named
    assert "weights_only=False" not in str(e.value), "never advise disabling safe loading"


# the messages a user sees for each kind of unusable file: named file, seqnrl's words, no
# library advice to disable safe loading, no sentence cut in the middle
BAD_FILES = {
    "random bytes": (lambda p, m: p.write_bytes(bytes(range(256)) * 20), "not a PyTorch checkpoint"),
    "truncated": (lambda p, m: p.write_bytes(_saved(p, m)[: len(_saved(p, m)) // 2]), "truncated or damaged"),
    "foreign Lightning checkpoint": (lambda p, m: torch.save({"state_dict": m.state_dict(), "epoch": 3,
                                                              "pytorch-lightning_version": "2.6.0"}, p),
                                     "not a seqnrl checkpoint"),
    "empty": (lambda p, m: p.write_bytes(b""), "truncated or damaged"),
}


def _saved(p, m) -> bytes:
    tmp = p.with_suffix(".full")
    if not tmp.exists():
        torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams)}, tmp)
    return tmp.read_bytes()


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_checkpoint_errors_in_seqnrls_words(tmp_path, kind):
    make, expected = BAD_FILES[kind]
    p = tmp_path / "model.ckpt"
    make(p, FrameAutoEncoderModel(width=8, depth=2, latent=8))
    with pytest.raises(CheckpointError) as e:
        load_model(p)
    msg = str(e.value)
    assert expected in msg and "model.ckpt" in msg, msg
    assert "weights_only=False" not in msg and "torch.load" not in msg, msg
