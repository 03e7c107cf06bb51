"""Shared test set-up: tiny shapes, one thread, paths to ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# de-identification site key of the test session (never the user's ~/.config/seqnrl key)
if not os.environ.get("SEQNRL_DEID_KEY_FILE"):
    import tempfile

    os.environ["SEQNRL_DEID_KEY_FILE"] = os.path.join(tempfile.mkdtemp(prefix="seqnrl-test-key-"), "deid.key")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(sub: str) -> Path:
    """Path under ../shared/data, skipping the test with a reason when it is absent."""
    p = SHARED_DATA / sub
    if not p.exists():
        pytest.skip(f"real data not found at {p} (expected ../shared/data beside the checkout)")
    return p


@pytest.fixture
def repo_root() -> Path:
    return REPO


def run_script(script: str, *args: str, cwd: Path | None = None, timeout: int = 900):
    """Run ``scripts/<script>`` as a user does (a child process, the repo on PYTHONPATH, one
    thread); tests never import ``scripts/``. Returns the completed process; fails the test
    with the script's output when it exits with an error (rc 1 is checked by the caller)."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *map(str, args)],
        cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if res.returncode not in (0, 1):
        pytest.fail(f"scripts/{script} exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res
