"""The ``seqnrl`` command: ``fit`` / ``validate`` / ``test`` / ``predict`` (LightningCLI, see
:mod:`seqnrl.lightning_cli`) and ``score`` (:mod:`seqnrl.score`).

This module imports nothing heavy: ``seqnrl``, ``seqnrl --help`` and ``seqnrl --version``
answer without loading torch or Lightning (a second instead of ten); a subcommand imports
what it needs when it runs.
"""

from __future__ import annotations

import sys

USAGE = """usage: seqnrl [-h] [--version] {fit,validate,test,predict,score} ...

seqnrl: normative representation learning on sequences (ultrasound video, human motion).

subcommands:
  fit        train a model (LightningCLI): seqnrl fit --config configs/demo.yaml
  validate   validate a checkpoint on a data module's validation set
  test       test a checkpoint on a data module's test set
  predict    write calibrated per-frame scores of a data module's test set (ScoreWriter)
  score      score video files / folders / DICOM from a checkpoint alone:
             seqnrl score VIDEO... --ckpt model.ckpt [--out DIR]

options:
  -h, --help  show this message; `seqnrl SUBCOMMAND --help` lists a subcommand's options
  --version   print the version

Every option of fit/validate/test/predict: seqnrl fit --print_config
"""


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``seqnrl`` console script; returns the process exit code."""
    argv = sys.argv[1:] if args is None else list(args)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        from seqnrl import __version__

        print(f"seqnrl {__version__}")
        return 0
    from seqnrl.quiet import quiet_third_party

    quiet_third_party()
    if argv[0] == "score":
        from seqnrl.score import score_main

        return score_main(argv[1:])
    build_cli(args)
    return 0


def build_cli(args: list[str] | None = None):
    """Run the LightningCLI (fit / validate / test / predict) and return it."""
    from seqnrl.lightning_cli import build_cli as _build

    return _build(args)


if __name__ == "__main__":
    sys.exit(main())
