"""The README's headline table and results section are rebuilt from tracked JSON alone.

``scripts/make_results.py`` runs as a user would (a subprocess; tests do not import
``scripts/``): on the repository it must find the README up to date, so a fresh clone
rebuilds exactly the committed README; on a copy whose result JSON changed, the headline
number must follow the JSON (the table is read from the data, not typed).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path


def _run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(repo / "scripts" / "make_results.py"), *args],
                          cwd=repo, capture_output=True, text=True, timeout=120)


def test_committed_readme_is_what_the_tracked_results_build(repo_root):
    res = _run(repo_root, "--check")
    assert res.returncode == 0, res.stderr + res.stdout
    assert list((repo_root / "docs" / "results").glob("*.json")), "no tracked results"


def test_headline_follows_the_json(repo_root, tmp_path):
    readme = tmp_path / "README.md"
    shutil.copy(repo_root / "README.md", readme)
    results = tmp_path / "results"
    shutil.copytree(repo_root / "docs" / "results", results)
    ped2 = json.loads((results / "ped2.json").read_text())
    row = next(r for r in ped2["table"] if r["method"].startswith("motion prior (configs/ped2.yaml)"))
    row["micro_global"] = 0.123456
    ped2["tables"] = [{"title": "Per clip, made up here", "rows": [{"clip": "test_99", "auroc": 0.4242}]}]
    (results / "ped2.json").write_text(json.dumps(ped2))
    assert _run(repo_root, "--results-dir", str(results), "--readme", str(readme), "--check").returncode == 1
    res = _run(repo_root, "--results-dir", str(results), "--readme", str(readme))
    assert res.returncode == 0, res.stderr
    headline = readme.read_text().split("<!-- headline:start -->")[1].split("<!-- headline:end -->")[0]
    ped2_line = next(line for line in headline.splitlines() if "Ped2" in line)
    assert "| 0.123 |" in ped2_line
    # a benchmark's further tables follow its main table
    body = readme.read_text()
    assert "Per clip, made up here:" in body and "| test_99 | 0.424 |" in body
    # everything outside the generated blocks is kept
    before = (repo_root / "README.md").read_text().split("<!-- headline:start -->")[0]
    assert readme.read_text().startswith(before)
