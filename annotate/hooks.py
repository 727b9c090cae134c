"""Everything annotate asks of calibration, in one place.

annotate stores studies, responses and grades and serves the queue; calibration fits the
model, chooses where the next grade goes and keeps the per-cell counts that choice needs.
This module is the only one in annotate that imports calibration
(``tests/annotate/test_hooks.py`` checks it): each function below names the calibration
callable it reaches, so renaming one breaks that test and mypy instead of silently changing
what the queue does.

The imports are inside the functions: calibration's modules import ``annotate.models``
(and calibration.api imports annotate.permissions), so importing calibration at the top of
an annotate module would tie annotate's loading to calibration's and invite an import
cycle. At call time both apps are loaded.

Tests replace these functions with ``monkeypatch.setattr(hooks, "pick_cell", ...)``; the
callers look them up on this module at each call so that such a replacement takes effect.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from annotate.models import Study
    from calibration.selection import CellPick


def pick_cell(*, study: Study, rng: np.random.Generator) -> CellPick | None:
    """The selection rule's cell for the next grade, or None when it has none to offer.

    The queue draws a response uniformly inside the cell and records the pick's policy and
    probability; with None it falls back to a uniform draw over the study.
    """
    from calibration.selection import pick_cell

    return pick_cell(study=study, rng=rng)


def selection_status(*, study: Study, graded: int) -> tuple[bool, str]:
    """Whether the study still asks for grades, and the reason shown when it does not.

    ``graded`` is the count of graded responses the queue has just made, so that
    calibration need not count them again.
    """
    from calibration.selection import selection_status

    return selection_status(study=study, graded=graded)


def note_new_labels(*, study: Study) -> None:
    """Tell calibration that grades came in (after commit), so it can refit when due."""
    from calibration.services import note_new_labels

    note_new_labels(study=study)


def request_fit(*, study: Study, trigger: str, requested_by: Any) -> None:
    """Ask calibration for a fit: annotate does after a change of what the model reads.

    ``trigger`` is what asked for it (annotate's is ``"config"``); calibration coalesces
    requests, so asking while a fit is queued adds none.
    """
    from calibration.services import request_fit

    request_fit(study=study, trigger=trigger, requested_by=requested_by)


def refresh_cell_totals(*, study: Study) -> None:
    """Recount the responses of each cell, inside an import's transaction.

    A re-import can move responses between cells in place; calibration's stored per-cell
    totals (what the selection rule draws over) must commit with them.
    """
    from calibration.totals import refresh_cell_totals

    refresh_cell_totals(study=study)


def store_cell_totals(
    *,
    study: Study,
    totals: dict[tuple[int, int, str], tuple[int, int, int, list[int]]],
    last_response_id: int,
) -> None:
    """Store the per-cell totals a fresh import counted as it wrote: no recount afterwards.

    ``totals``: ``{(arm id, region id, cell): (responses, lowest id, highest id, fences)}``,
    the fences the cell's ids at ranks 0, :func:`fence_every`, 2·:func:`fence_every`, ….
    """
    from calibration.totals import store_cell_totals

    store_cell_totals(study=study, totals=totals, last_response_id=last_response_id)


def fence_every() -> int:
    """How far apart, in ranks, the ids of a cell's fences lie (see store_cell_totals)."""
    from calibration.totals import fence_every

    return fence_every()


def cell_totals(*, study: Study) -> dict[tuple[int, int, str], int]:
    """Responses per ``(arm id, region id, cell)``, from calibration's stored totals.

    What a page shows of a study's size comes from here: counting the responses themselves
    costs a scan of the study on every request (seconds at millions of responses).
    """
    from calibration.totals import cell_totals

    return cell_totals(study=study)


def study_extent(*, study: Study) -> tuple[int, int, int]:
    """``(responses, lowest id, highest id)`` of the study, from the stored totals."""
    from calibration.totals import study_extent

    return study_extent(study=study)


def forget_cell_totals(*, study_id: int) -> None:
    """Drop calibration's stored and cached per-cell totals after the cells were re-binned."""
    from calibration.selection import forget_cell_totals

    forget_cell_totals(study_id)


def quantile_cuts(scores: Iterable[float], bins: int) -> list[float]:
    """Cut points splitting judge scores into at most ``bins`` quantile bins.

    The import bins judge scores with the very cuts the model's binning uses.
    """
    from calibration.bayes.data import quantile_cuts

    return [float(c) for c in quantile_cuts(list(scores), bins)]
