"""Build the README's headline table and results section from the tracked benchmark JSON.

    python scripts/make_results.py [--results-dir docs/results] [--readme README.md] [--check]

Every ``docs/results/<name>.json`` (the small published copy each ``scripts/bench/*`` run
writes, see ``scripts/bench/_common.publish``) that has a ``table`` becomes one section:
title, description, table, references, figures (already in ``docs/figures/``) and the
command that produced it. The headline table at the top of the README is built from the
same files: ``HEADLINE`` below says, per task, which row and column of which benchmark's
table is seqnrl's number and which is the baseline's; no number is typed here. The README
text between the markers is replaced; the output depends on the JSON files only, so a fresh
clone rebuilds the same README (``--check`` exits 1 if the README is not up to date).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MARKERS = {
    "headline": ("<!-- headline:start -->", "<!-- headline:end -->"),
    "demo": ("<!-- demo:start -->", "<!-- demo:end -->"),
    "results": ("<!-- results:start -->", "<!-- results:end -->"),
}
# sections in this order (the most important task first); others follow alphabetically
ORDER = [
    "ped2", "ped2_st", "lus_video", "motion_styles", "mocap_kinematic", "motion_mocap", "motion_synthetic", "pose_mocap", "pose_synthetic",
    "st_echo_heads", "diffusion_ef_fidelity", "normative_eval", "diadm_coverage",
    "summarise_dsn_synthetic", "summarise_lus_ckpt", "summarise_lus", "summarise_throughput",
    "supported_data",
]  # fmt: skip


@dataclass(frozen=True)
class Cell:
    """One cell of a benchmark table: the row whose columns equal ``row``, column ``col``."""

    row: dict[str, Any]
    col: str


@dataclass(frozen=True)
class Headline:
    task: str
    benchmark: str
    seqnrl: Cell
    baseline: Cell | None
    baseline_name: str
    reference: str  # a published figure with its source, or "–"


def _c(col: str, **row: Any) -> Cell:
    return Cell(row=row, col=col)


HEADLINE = [
    Headline("UCSD Ped2 test 01-06, pooled frame AUROC, one global scale", "ped2",
             _c("micro_global", method="motion prior (configs/ped2.yaml), seqnrl fit + seqnrl score"),
             _c("micro_global", method="flow statistics per location (no learning)"), "per-location flow statistics",
             "MNAD (Park et al., CVPR 2020) 0.970, per-video normalised, GPU"),
    Headline("Lung ultrasound, leave-patient-out, pooled video AUROC", "lus_video",
             _c("AUROC model", **{"test group": "pooled over folds"}),
             _c("AUROC frame diff.", **{"test group": "pooled over folds"}), "frame difference", "–"),
    Headline("Stylised real motion, elderly vs normal, 1-s window AUROC, one threshold", "motion_styles",
             _c("elderly", window="1 s", method="kinematic prior (seqnrl)"),
             _c("elderly", window="1 s", method="floor: joint-angle window stats + 5-NN"),
             "joint-angle window statistics + 5-NN", "–"),
    Headline("Stylised real motion, exhausted vs normal, 1/3-s window AUROC, one threshold", "motion_styles",
             _c("exhausted", window="1/3 s", method="kinematic prior (seqnrl)"),
             _c("exhausted", window="1/3 s", method="floor: joint-angle window stats + 5-NN"),
             "joint-angle window statistics + 5-NN", "–"),
    Headline("CMU motion perturbations, frame AUROC (all kinds)", "motion_mocap",
             _c("frame_auroc_micro", anomaly="all", signal="score"),
             _c("frame_auroc_micro", anomaly="all", signal="speed_typicality"), "speed typicality", "–"),
    Headline("Unsupervised pose, rendered CMU video, PCK@0.1 across videos", "pose_mocap",
             _c("PCK@0.1", model="trained", protocol="across_videos"),
             _c("PCK@0.1", model="untrained", protocol="across_videos"), "untrained template",
             "shape templates (Schmidtke et al., CVPR 2021), other data"),
    Headline("EF regression, synthetic echo, MAE (EF points, lower is better)", "st_echo_heads",
             _c("ef_mae", method="uvt (frame_cnn, future)"),
             _c("ef_mae", method="mean predictor (training mean EF)"), "training-mean EF",
             "UVT (Reynaud et al., MICCAI 2021) 5.95 on real EchoNet-Dynamic"),
    Headline("EF-conditioned generation, synthetic echo, R² of requested vs measured EF", "diffusion_ef_fidelity",
             _c("R2", set="conditioned", guidance=2.0), _c("R2", set="EF dropped"), "EF dropped",
             "EchoDiffusion (MICCAI 2023) 0.64 on real EchoNet-Dynamic"),
    Headline("Pseudo-healthy restoration, synthetic echo, RQI", "normative_eval",
             _c("rqi", data="synthetic_echo", model="diffusion@0.25"),
             _c("rqi", data="synthetic_echo", model="blur"), "Gaussian blur",
             "Bercea et al. (Nat Commun 2025), other data"),
    Headline("RL summaries across synthetic videos, F-max", "summarise_dsn_synthetic",
             _c("f_max_mean", **{"": "dsn+normative"}), _c("f_max_mean", **{"": "uniform"}), "uniform sampling",
             "DSN (Zhou et al., AAAI 2018), other data"),
    Headline("LUS exam summaries, zone coverage (learned-encoder features)", "summarise_lus_ckpt",
             _c("zone_coverage", **{"": "dsn+normative"}), _c("zone_coverage", **{"": "uniform"}),
             "uniform sampling", "–"),
    Headline("Summarisation throughput, 10-min recording, × real time", "summarise_throughput",
             _c("x real time", length="10 min"), None, "–", "–"),
]  # fmt: skip


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if v is None:
        return "–"
    return str(v)


def table_rows(table: list[dict] | dict) -> list[dict]:
    """A benchmark table as rows: a dict table (``{row name: {col: value}}`` or
    ``{row name: value}``) gets its row names in the column ``""``."""
    if isinstance(table, dict):
        table = [{"": k, **v} if isinstance(v, dict) else {"": k, "value": v} for k, v in table.items()]
    return [r for r in table if isinstance(r, dict)]


def md_table(rows: list[dict] | dict | str) -> str:
    if isinstance(rows, str):  # a benchmark that already formatted its table
        return rows if rows.lstrip().startswith("|") else f"```\n{rows.rstrip()}\n```"
    rows = table_rows(rows)
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def lookup(res: dict, cell: Cell) -> Any:
    hits = [r for r in table_rows(res["table"]) if all(r.get(k) == v for k, v in cell.row.items())]
    if len(hits) != 1 or cell.col not in hits[0]:
        raise KeyError(f"{res['benchmark']}: {len(hits)} rows match {cell.row} (column {cell.col!r})")
    return hits[0][cell.col]


def headline_table(results: dict[str, dict]) -> str:
    lines = ["| task | seqnrl | no-learning baseline | published reference |", "|---|---|---|---|"]
    for h in HEADLINE:
        res = results.get(h.benchmark)
        if res is None:
            continue
        ours = lookup(res, h.seqnrl)
        base = f"{fmt(lookup(res, h.baseline))} ({h.baseline_name})" if h.baseline else "–"
        link = f"[{h.task}](#{anchor(res.get('title', h.benchmark))})"
        lines.append(f"| {link} | {fmt(ours)} | {base} | {h.reference} |")
    return "\n".join(lines)


def section(res: dict) -> str:
    out = [f"### {res.get('title', res['benchmark'])}", ""]
    if res.get("description"):
        out += [res["description"], ""]
    out += [md_table(res["table"]), ""]
    for extra in res.get("tables", []):  # further tables of the same run (per clip, per fold, ...)
        out += [f"{extra['title']}:", "", md_table(extra["rows"]), ""]
    refs = res.get("references")
    if refs:
        out += ["References: " + "; ".join(f"{k}: {fmt(v)}" for k, v in refs.items()), ""]
    elif res.get("references_text"):
        out += ["References: " + res["references_text"], ""]
    for fig in res.get("figures", []):
        out += [f"![{Path(fig).stem}]({fig})", ""]
    env = res.get("environment", {})
    out += [f"Command: `{res.get('command', '?')}` (commit {env.get('git_commit', '?')[:12]}, {env.get('date', '?')}, "
            f"{env.get('threads', '?')} threads)", ""]
    return "\n".join(out)


def load_results(results_dir: Path) -> dict[str, dict]:
    found = {}
    for p in sorted(results_dir.glob("*.json")):
        try:
            res = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise SystemExit(f"{p}: not valid JSON ({e})") from e
        if isinstance(res, dict) and res.get("table"):
            res.setdefault("benchmark", p.stem)
            found[p.stem] = res
    rank = {n: i for i, n in enumerate(ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(ORDER)), kv[0])))


def replace_block(text: str, key: str, body: str) -> str:
    start, end = MARKERS[key]
    if start not in text or end not in text:
        raise SystemExit(f"README has no {start} ... {end} markers")
    return text[: text.index(start)] + f"{start}\n{body}{end}" + text[text.index(end) + len(end) :]


def demo_block(res: dict | None) -> str:
    """The quick start's picture of ``make demo``: its final table and score timeline
    (``docs/results/demo.json``, written by ``python scripts/demo.py --publish``)."""
    if res is None:
        return "_No published demo run yet (`python scripts/demo.py --publish`)._\n"
    env = res.get("environment", {})
    rows = ["```", *(f"{r['']:<42} {r['value']}" for r in res["table"]), "```", ""]
    rows += [f"![{Path(f).stem}]({f})" for f in res.get("figures", [])]
    rows += ["", f"(`make demo` at commit {env.get('git_commit', '?')[:12]}, {env.get('date', '?')}, "
             f"{env.get('threads', '?')} threads)", ""]
    return "\n".join(rows)


def render(text: str, results: dict[str, dict]) -> str:
    results = dict(results)
    demo = results.pop("demo", None)
    text = replace_block(text, "demo", demo_block(demo))
    text = replace_block(text, "headline", headline_table(results) + "\n")
    src = "_Generated by `python scripts/make_results.py` from `docs/results/*.json` (latest run of each " \
          "benchmark; superseded runs: [docs/results_history.md](docs/results_history.md))._\n\n"
    body = "\n".join(section(r) for r in results.values()) or "No benchmark results yet.\n"
    return replace_block(text, "results", src + body)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results-dir", default=str(REPO / "docs" / "results"))
    ap.add_argument("--readme", default=str(REPO / "README.md"))
    ap.add_argument("--check", action="store_true", help="exit 1 if the README differs from what would be written")
    args = ap.parse_args(argv)
    results = load_results(Path(args.results_dir))
    readme = Path(args.readme)
    old = readme.read_text()
    new = render(old, results)
    if args.check:
        if new != old:
            print(f"{readme} is out of date: run python scripts/make_results.py", file=sys.stderr)
            return 1
        print(f"{readme} is up to date ({len(results)} result tables)")
        return 0
    from seqnrl.io.atomic import write_text

    write_text(readme, new)
    print(f"wrote {len(results)} result table(s) and the headline table into {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
