"""Output names keep what a clinician typed (seqnrl.io.names.safe_name)."""

from __future__ import annotations

import unicodedata

import pytest

from seqnrl.io.names import MAX_BYTES, safe_name


@pytest.mark.parametrize(
    "given, expected",
    [
        ("scan with spaces ülüş 超声", "scan with spaces ülüş 超声"),
        (unicodedata.normalize("NFD", "Lunge ä é"), "Lunge ä é"),  # NFC: one code point each
        ("a/b\\c", "a_b_c"),
        ("tab\there\nnew", "tab_here_new"),
        ('x<y>:"|?*', "x_y______"),
        ("..hidden. ", "hidden"),
        ("", "video"),
        ("...", "video"),
        ("Échographie (patient 3) – 2026-12-07", "Échographie (patient 3) – 2026-12-07"),
    ],
)
def test_safe_name(given, expected):
    got = safe_name(given)
    assert got == expected
    assert safe_name(got) == got  # idempotent


def test_long_names_are_cut_at_a_character_boundary():
    name = "超" * 200  # 3 bytes each
    got = safe_name(name)
    assert len(got.encode()) <= MAX_BYTES and got == "超" * (MAX_BYTES // 3)
    got.encode().decode()  # valid UTF-8


def test_fallback_names_the_kind_of_output():
    assert safe_name("///", fallback="recording") == "___"
    assert safe_name(" ", fallback="recording") == "recording"
