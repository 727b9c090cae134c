"""What a fit's summary (``Fit.summary``, built by :func:`calibration.services.build_summary`)
says is settled: the one place the dashboard and the queue read it from.

The summary's shape is ``{"candidates": [{"arm", "verdict", "dimensions": [{"dimension",
"verdict", ...}]}]}``. A verdict is *settled* when it is ``go`` or ``no-go``; anything else
(``undecided``, ``held`` when the model and the audit disagree, or a cell the summary lacks)
is *open*: the study still needs grades for it. Light on purpose (numpy only): the queue
imports it on every pick.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["SETTLED", "is_settled", "open_verdicts", "verdict_table"]

SETTLED = frozenset({"go", "no-go"})


def is_settled(verdict: str | None) -> bool:
    """Whether one (candidate, dimension) verdict asks for no more grades."""
    return verdict in SETTLED


def verdict_table(summary: dict[str, Any] | None) -> dict[tuple[str, str], str] | None:
    """``{(candidate arm key, dimension key): verdict}`` (None when the summary has no table)."""
    cands = (summary or {}).get("candidates")
    if not isinstance(cands, list):
        return None
    out: dict[tuple[str, str], str] = {}
    try:
        for cand in cands:
            for d in cand["dimensions"]:
                out[(cand["arm"], d["dimension"])] = d["verdict"]
    except (KeyError, TypeError):
        return None
    return out


def open_verdicts(
    summary: dict[str, Any] | None, candidates: Sequence[str], dimensions: Sequence[str]
) -> np.ndarray | None:
    """``(C, D)`` mask of the verdicts still open, in the given order (None: no table).

    A (candidate, dimension) the summary does not cover (added since the fit) is open.
    """
    table = verdict_table(summary)
    if table is None:
        return None
    return np.array(
        [[not is_settled(table.get((c, d))) for d in dimensions] for c in candidates],
        dtype=bool,
    ).reshape(len(candidates), len(dimensions))
