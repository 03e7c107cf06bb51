"""The one input-discovery rule: which files and folders are recordings.

Used by ``seqnrl score``, the summariser, the dataset summary and the folder / manifest data
modules, so a folder means the same recordings to every tool.

Invariant: a *media file* is a file whose suffix is in :data:`MEDIA_SUFFIXES` (videos, GIF,
DICOM) or a suffix-less file that is DICOM (``DICM`` preamble); a *frame folder* is a folder
holding images (:data:`seqnrl.io.frames.IMAGE_SUFFIXES`) and no media files, and is one
recording; hidden entries (``.name``) are never recordings. Listings are sorted by the bytes
of the names, so the order is the same on every machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from seqnrl.io.dicom import DICOM_SUFFIXES, is_dicom
from seqnrl.io.frames import IMAGE_SUFFIXES

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mpeg", ".mpg", ".mkv", ".gif", ".webm", ".m4v", ".wmv"})
MEDIA_SUFFIXES = VIDEO_SUFFIXES | DICOM_SUFFIXES


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.iterdir(), key=lambda e: os.fsencode(e.name))


def is_media_file(p: Path) -> bool:
    """A video, GIF or DICOM file (suffix-less DICOM recognised by its preamble)."""
    if p.name.startswith(".") or not p.is_file():
        return False
    return p.suffix.lower() in MEDIA_SUFFIXES or (not p.suffix and is_dicom(p))


def is_frame_folder(p: Path) -> bool:
    """A folder of images and no media files: one recording."""
    try:
        entries = [e for e in p.iterdir() if not e.name.startswith(".")]
    except OSError:
        return False
    if any(is_media_file(e) for e in entries):
        return False
    return any(e.is_file() and e.suffix.lower() in IMAGE_SUFFIXES for e in entries)


def list_media(folder: str | os.PathLike) -> tuple[list[Path], int]:
    """Media files and frame folders directly in ``folder`` (sorted), and how many other
    entries (hidden, README.txt, other sub-folders) were not taken."""
    items, ignored = [], 0
    for p in _entries(Path(folder)):
        if is_media_file(p) or (p.is_dir() and not p.name.startswith(".") and is_frame_folder(p)):
            items.append(p)
        else:
            ignored += 1
    return items, ignored


def walk_media(folder: str | os.PathLike, exclude: Path | None = None) -> list[Path]:
    """Recordings under ``folder``, recursively (sorted per level): a frame folder is one
    recording and is not searched further; ``exclude`` (e.g. the output folder) is skipped."""
    folder = Path(folder)
    excl = exclude.resolve() if exclude is not None else None
    if excl is not None and (folder.resolve() == excl or excl in folder.resolve().parents):
        return []
    if is_frame_folder(folder):
        return [folder]
    items, _ = list_media(folder)
    out = list(items)
    for p in _entries(folder):
        if p.is_dir() and not p.name.startswith(".") and p not in items:
            out.extend(walk_media(p, exclude))
    return out
