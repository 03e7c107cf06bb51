"""The README's supported-data table is produced by reading every format: it must not fail."""

from __future__ import annotations

import json


def test_every_supported_format_reads_back(tmp_path):
    from tests.conftest import run_script

    out = tmp_path / "supported_data.json"
    assert run_script("bench/supported_data.py", "--out", out).returncode == 0
    res = json.loads(out.read_text())
    formats = [r["format"] for r in res["table"]]
    assert len(formats) >= 11 and res["failed"] == []
    assert any("DICOM" in f for f in formats) and any("BVH" in f for f in formats)
    for r in res["table"]:
        assert "FAILED" not in r["generated sample"], r
        assert r["generated sample"][0].isdigit(), r  # "12 frames, ..." etc.
    assert res["command"].startswith("python")
