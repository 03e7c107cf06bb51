"""Write the bad-input corpus (:mod:`seqnrl.intake.bad_inputs`): one file (or folder) per
kind of broken or awkward input.

    python scripts/make_bad_inputs.py OUT_DIR          # write the corpus + OUT_DIR/corpus.json
    python scripts/make_bad_inputs.py OUT_DIR --table  # also print the docs/bad_inputs.md table
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seqnrl.intake.bad_inputs import INDEX, make_corpus, markdown_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("--table", action="store_true", help="print the markdown table")
    args = p.parse_args(argv)
    entries = make_corpus(args.out_dir)
    print(f"wrote {len(entries)} bad inputs to {args.out_dir} (index: {INDEX})")
    if args.table:
        print(markdown_table(entries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
