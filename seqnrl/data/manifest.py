"""Manifests: CSV files listing videos under a data root, validated before anything is decoded."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from seqnrl.errors import ManifestError

log = logging.getLogger(__name__)



@dataclass
class ManifestRow:
    line: int
    path: Path
    fields: dict[str, str]


def resolve_under(root: Path, rel: str) -> Path:
    """``root / rel`` resolved; raises ValueError if it escapes ``root`` (``..``, absolute, links)."""
    root_r = root.resolve()
    p = (root / rel).resolve()
    if not p.is_relative_to(root_r):
        raise ValueError(f"path {rel!r} escapes the data root {root_r}")
    return p


def read_manifest(
    path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    required: Sequence[str] = ("file",),
    file_column: str = "file",
    strict: bool = True,
    file_of: Callable[[dict[str, str]], str] | None = None,
) -> list[ManifestRow]:
    """Read and validate a CSV manifest.

    Every row's file must lie under ``root`` (default: the manifest's folder) and exist.
    ``strict=True`` raises one :class:`ManifestError` listing every offending row;
    ``strict=False`` skips them with a warning that counts what was skipped.
    ``file_of`` maps a row to its relative path when that is not simply ``row[file_column]``.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    if not path.is_file():
        raise ManifestError("manifest not found", path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise ManifestError(f"not a readable CSV file ({e})", path) from e
    missing = [c for c in required if c not in header]
    if missing:
        raise ManifestError(f"missing required column(s) {missing}; found {header}", path)
    good, bad = [], []
    for i, r in enumerate(rows, start=2):
        rel = (file_of(r) if file_of else r.get(file_column) or "").strip()
        if not rel:
            bad.append(f"line {i}: empty {file_column!r}")
            continue
        try:
            p = resolve_under(root, rel)
        except ValueError as e:
            bad.append(f"line {i}: {e}")
            continue
        if not p.exists():
            bad.append(f"line {i}: file not found: {rel}")
            continue
        good.append(ManifestRow(i, p, {k: (v or "").strip() for k, v in r.items() if k is not None}))
    if bad:
        listing = "; ".join(bad[:20]) + (f"; ... ({len(bad) - 20} more)" if len(bad) > 20 else "")
        if strict:
            raise ManifestError(f"{len(bad)} invalid row(s): {listing}", path)
        log.warning("%s: skipped %d invalid row(s) of %d: %s", path, len(bad), len(rows), listing)
    return good


