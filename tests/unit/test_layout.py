"""Layout rules that keep one inference path: tests exercise scripts as users run them (a
child process), never by importing ``scripts/``; and the model's input is read through one
constructor (``InputSpec.of``), not an untyped ``data_spec``."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _py(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_no_test_imports_scripts():
    pat = re.compile(r"^\s*(from scripts[\. ]|import scripts\b)|spec_from_file_location\(", re.M)
    offenders = [str(p.relative_to(REPO)) for p in _py("tests") if pat.search(p.read_text())]
    assert offenders == [], f"tests import scripts/ (run them with tests.conftest.run_script): {offenders}"


def test_no_consumer_reads_an_untyped_data_spec():
    pat = re.compile(r"\.data_spec\b")
    offenders = [
        str(p.relative_to(REPO))
        for folder in ("seqnrl", "scripts", "data_modules")
        for p in _py(folder)
        if pat.search(p.read_text())
    ]
    assert offenders == [], f"read the input through InputSpec.of(model): {offenders}"
