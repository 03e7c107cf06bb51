"""Silence third-party noise on the command line (not in the library, not in tests).

Two messages reach every ``seqnrl fit`` run and tell a user nothing about their work:

* torch's ``FutureWarning`` "`isinstance(treespec, LeafSpec)` is deprecated", raised inside
  ``pytorch_lightning.utilities._pytree`` (Lightning's code, not ours; it goes away when
  Lightning stops using ``LeafSpec``);
* Lightning's "💡 Tip: ... litlogger" advertisement, logged at INFO by
  ``pytorch_lightning.utilities.rank_zero`` whenever no LitLogger is configured.

:func:`quiet_third_party` filters exactly these (by message), at the source: a warning filter
and a ``logging.Filter`` on Lightning's rank-zero logger. Everything else, including
Lightning's own warnings about the run, still shows. The console entry point calls it; set
``SEQNRL_VERBOSE=1`` to see the messages again.
"""

from __future__ import annotations

import logging
import os
import warnings

_TIP_PREFIX = "💡 Tip"
_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero")


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_TIP_PREFIX)


def quiet_third_party() -> None:
    """Install the filters described in the module docstring (idempotent)."""
    if os.environ.get("SEQNRL_VERBOSE"):
        return
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
    for name in _LOGGERS:
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in log.filters):
            log.addFilter(_DropTips())
