import logging

import pytest

from seqnrl.data.manifest import read_manifest, resolve_under
from seqnrl.errors import ManifestError
from seqnrl.io.discovery import list_media


def _write(p, text):
    p.write_text(text)
    return p


def test_manifest_refuses_paths_escaping_root(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (tmp_path / "secret.mp4").write_bytes(b"x")
    (root / "ok.mp4").write_bytes(b"x")
    m = _write(root / "manifest.csv", "file,label\nok.mp4,normal\n../secret.mp4,normal\n/etc/passwd,normal\n")
    with pytest.raises(ManifestError) as e:
        read_manifest(m)
    msg = str(e.value)
    assert "manifest.csv" in msg and "line 3" in msg and "line 4" in msg and "escapes" in msg
    with pytest.raises(ValueError):
        resolve_under(root, "sub/../../secret.mp4")


def test_manifest_missing_columns_and_files(tmp_path):
    m = _write(tmp_path / "m.csv", "path,label\na.mp4,normal\n")
    with pytest.raises(ManifestError, match=r"missing required column\(s\) \['file'\]"):
        read_manifest(m)
    m2 = _write(tmp_path / "m2.csv", "file,label\nnothere.mp4,normal\n")
    with pytest.raises(ManifestError, match="file not found: nothere.mp4"):
        read_manifest(m2)


def test_manifest_lenient_skips_with_counted_warning(tmp_path, caplog):
    (tmp_path / "a.mp4").write_bytes(b"x")
    m = _write(tmp_path / "m.csv", "file\na.mp4\nmissing.mp4\n../x.mp4\n")
    with caplog.at_level(logging.WARNING):
        rows = read_manifest(m, strict=False)
    assert [r.path.name for r in rows] == ["a.mp4"]
    assert "skipped 2 invalid row(s) of 3" in caplog.text


def test_list_media_ignores_hidden_and_non_media(tmp_path):
    for n in ("b.mp4", "a.avi", ".hidden.mp4", "README.txt", "notes.md"):
        (tmp_path / n).write_bytes(b"x")
    frames = tmp_path / "clip01"
    frames.mkdir()
    (frames / "000.png").write_bytes(b"x")
    items, ignored = list_media(tmp_path)
    assert [p.name for p in items] == ["a.avi", "b.mp4", "clip01"]
    assert ignored == 3
