"""Run metadata (seed, git commit, resolved config) and reading offline W&B runs back.

W&B stores an offline run as ``run-<id>.wandb``: the LevelDB log format (32 KiB blocks of
checksummed, possibly fragmented records) holding ``wandb.proto`` ``Record`` messages.
Recent wandb releases no longer ship a Python reader, so :func:`read_wandb_run` decodes it
(for tests and for checking a run before ``wandb sync``).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path
from typing import Any

_BLOCK = 32 * 1024
_HEADER = 7  # ":W&B" + 2-byte magic + 1-byte version
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def git_commit(path: str | os.PathLike | None = None) -> str:
    """Commit of the seqnrl code (``"unknown"`` outside a git checkout), ``+dirty`` if modified."""
    cwd = Path(path) if path else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _records(data: bytes):
    """Yield the payloads of a LevelDB-format log (W&B's header skipped)."""
    pos, buf = _HEADER, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            pos += _BLOCK - pos % _BLOCK if pos % _BLOCK else 0
            continue
        if kind == _FULL:
            yield payload
        elif kind == _FIRST:
            buf = payload
        elif kind == _MIDDLE:
            buf += payload
        elif kind == _LAST:
            yield buf + payload
            buf = b""


def read_wandb_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Config, history rows, summary and logged file names of a local (offline) W&B run."""
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no run-*.wandb file")
    out: dict[str, Any] = {"config": {}, "history": [], "summary": {}, "files": [], "artifacts": []}
    for payload in _records(files[0].read_bytes()):
        rec = pb.Record()
        try:
            rec.ParseFromString(payload)
        except Exception:  # noqa: BLE001 - a damaged record: skip it, keep the rest
            continue
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            out["history"].append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "config":
            for i in rec.config.update:
                out["config"][_key(i)] = json.loads(i.value_json)
        elif kind == "summary":
            for i in rec.summary.update:
                out["summary"][_key(i)] = json.loads(i.value_json)
        elif kind == "files":
            out["files"].extend(f.path for f in rec.files.files)
        elif kind == "artifact":
            out["artifacts"].append({"name": rec.artifact.name, "type": rec.artifact.type})
        elif kind == "run":
            for i in rec.run.config.update:
                out["config"][_key(i)] = json.loads(i.value_json)
    return out


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)
