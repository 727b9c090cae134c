"""Judge scores as tests write and read them: in the response row (``Response.scores``,
``{"<dimension id>": [value, judge]}``) with their bins in ``Response.cell``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from annotate.imports.binning import judge_cuts_for
from annotate.models import Dimension, Response, Study


def _pk(dimension: Dimension | int) -> int:
    return dimension if isinstance(dimension, int) else dimension.pk


def scores_of(values: Mapping[Dimension | int, float], judge: str = "judge") -> dict[str, Any]:
    """``Response.scores`` for one judge's ``values`` by dimension."""
    return {str(_pk(d)): [float(v), judge] for d, v in values.items()}


def cell_of(*bins: int | None) -> str:
    """A ``Response.cell`` from bins in dimension order (None: no score on that dimension)."""
    return ".".join("" if b is None else str(b) for b in bins)


def value_in_bin(dimension: Dimension, b: int) -> float:
    """A judge value that ``rebuild_cells`` puts in bin ``b`` of ``dimension``.

    The middle of the bin between its cuts (half a gap beyond the outer cuts): 0 and 1 for a
    binary judge, the points themselves for a Likert judge with a declared range.
    """
    cuts = dimension.judge_cuts
    if cuts is None:
        cuts = judge_cuts_for(dimension, None)
    if cuts is None:
        raise ValueError(f"dimension {dimension.key!r} has no cuts yet: its bins need scores")
    cuts = [float(c) for c in cuts]
    if not 0 <= b <= len(cuts):
        raise ValueError(f"dimension {dimension.key!r} has no bin {b} (cuts {cuts})")
    if not cuts:
        return 0.0
    half = (cuts[1] - cuts[0]) / 2 if len(cuts) > 1 else 0.5
    if b == 0:
        return cuts[0] - half
    if b == len(cuts):
        return cuts[-1] + half
    return (cuts[b - 1] + cuts[b]) / 2


def score_rows(study: Study, *, external: bool = False) -> list[tuple[Any, ...]]:
    """Every judge score of ``study`` as a row, sorted, for before/after comparisons.

    ``(response id, dimension id, judge, value, bin)``, or with ``external`` (ids differ
    between studies) ``(prompt external id, arm key, dimension key, judge, value, bin)``. The
    bin is the response's cell part for the dimension (None when the part is empty or the
    cell has none).
    """
    dims = list(study.dimensions.order_by("position", "id").values_list("pk", "key"))
    position = {pk: k for k, (pk, _) in enumerate(dims)}
    key_of = dict(dims)
    rows: list[tuple[Any, ...]] = []
    responses = Response.objects.filter(study=study).values_list(
        "pk", "prompt__external_id", "arm__key", "scores", "cell"
    )
    for pk, external_id, arm_key, scores, cell in responses:
        parts = cell.split(".") if cell else []
        for key, (value, judge) in scores.items():
            dimension_id = int(key)
            k = position.get(dimension_id)
            part = parts[k] if k is not None and k < len(parts) else ""
            bin_ = int(part) if part else None
            if external:
                rows.append((external_id, arm_key, key_of[dimension_id], judge, float(value), bin_))
            else:
                rows.append((pk, dimension_id, judge, float(value), bin_))
    return sorted(rows)
