"""Output names that a clinician can find: the input's own name, made safe for a file system.

One rule for every writer (``seqnrl score``, ``seqnrl predict``'s score writer, the
summariser): the name is Unicode-normalised to NFC and keeps its letters, digits, spaces and
punctuation in any script (``scan ülüş 超声`` stays ``scan ülüş 超声``); only what a file
system cannot hold is replaced by ``_``: path separators, control and format characters, and
the characters Windows forbids (``<>:"|?*``). Leading / trailing dots and spaces go (hidden
files, Windows), and the name is cut at a character boundary to ``MAX_BYTES`` of UTF-8 so
that suffixes (``.partial``, ``-1a2b3c``, ``.csv``) still fit under the 255-byte limit of
common file systems. Invariant: ``safe_name(safe_name(x)) == safe_name(x)``.
"""

from __future__ import annotations

import re
import unicodedata

MAX_BYTES = 200


def display_path(p) -> str:
    """A path as text that can always be printed or written to JSON: bytes that are not UTF-8
    (Linux names are bytes) appear as ``\\xNN`` escapes instead of raising on output."""
    import os

    return os.fsencode(os.fspath(p)).decode("utf-8", "backslashreplace")
_FORBIDDEN = re.compile(r'[/\\<>:"|?*]')


def safe_name(name: str, fallback: str = "video") -> str:
    s = unicodedata.normalize("NFC", str(name))
    s = "".join("_" if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") else c for c in s)
    s = _FORBIDDEN.sub("_", s)
    s = s.strip(" .")
    raw = s.encode("utf-8")
    if len(raw) > MAX_BYTES:
        s = raw[:MAX_BYTES].decode("utf-8", errors="ignore").rstrip(" .")
    return s or fallback
