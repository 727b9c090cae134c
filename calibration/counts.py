"""From the database to the calibration model's counts.

A study can hold millions of responses, and the model only needs how many fall in each
cell ``(arm, region, judge bins of every dimension)`` (one ``GROUP BY`` on the responses'
stored ``cell``) and, for the human-graded ones (a few thousand), their class on each
dimension (:class:`~calibration.bayes.data.JointCells`). Dashboards read the per-dimension
``(arm, region, judge bin)`` tables derived from the same counts.

Human truth per response and dimension
--------------------------------------
A response's true class ``y`` on a dimension is the majority of the labels of its *live*
graded annotations (``Annotation.objects.live_grades()``), each label mapped to pass/fail
by :meth:`annotate.models.Dimension.passes` (binary: ``value == 1``; ordinal:
``value >= pass_threshold``). Skipped and undone annotations give no label.

A **tie** (as many passes as fails, e.g. two annotators who disagree) is treated as
*unlabelled*: the response stays in the judge-only counts, so it still tells the model
about the judge-positive rate of its cell and the population is not thinned by
disagreement. A labelled response is never also counted as judge-only.

Responses without a binned judge score on a dimension keep their place in the population:
their cell holds ``-1`` ("no score") for that dimension, a level of its own in the model,
and they are left out of that dimension's per-bin tables.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from annotate.models import (
    Annotation,
    Arm,
    Dimension,
    Label,
    Region,
    Study,
)
from calibration.bayes.data import CellCounts, JointCells
from calibration.totals import cell_totals

__all__ = [
    "StudyCounts",
    "graded_classes",
    "n_bins_of",
    "parse_cell",
    "study_cells",
    "study_counts",
]


@dataclass(frozen=True)
class StudyCounts:
    """The counts of every dimension of a study, and what a Fit records about them."""

    counts: dict[str, CellCounts]  # by dimension key, in dimension order
    bins: dict[str, dict[str, object]]  # by dimension key: {"cuts": [...], "n_bins": J}
    n_labels: int  # graded responses (live graded annotations), any dimension
    n_responses: int
    traffic_shares: np.ndarray = field(repr=False)  # (R,) float64, regions in counts order
    margins: dict[str, float] = field(default_factory=dict)
    cells: JointCells | None = field(default=None, repr=False)  # what the model fits

    def digest(self) -> str:
        """One hash over the counts the model fits (names, bins and counts)."""
        h = hashlib.sha256()
        if self.cells is not None:
            h.update(self.cells.digest().encode())
        for key, counts in self.counts.items():
            h.update(key.encode())
            h.update(counts.digest().encode())
        return h.hexdigest()


def n_bins_of(dimension: Dimension) -> int:
    """Judge bins ``J`` of a dimension: its stored cut points plus one.

    Before cut points are fixed (``judge_cuts`` null) the configured ``judge_bins`` is used,
    which is what a binary judge scored 0/1 needs.
    """
    if dimension.judge_cuts:
        return len(dimension.judge_cuts) + 1
    return dimension.judge_bins


def _pass_threshold(dimension: Dimension) -> int:
    # Mirrors Dimension.passes: binary grades are 0/1 (pass is 1), ordinal pass at threshold.
    if dimension.is_binary:
        return 1
    assert dimension.pass_threshold is not None
    return dimension.pass_threshold


def _checked_bin(b: int | None, n_bins: int, dimension: Dimension) -> int:
    if b is None or not 0 <= b < n_bins:
        raise ValueError(
            f"dimension {dimension.key!r}: judge bin {b} outside 0..{n_bins - 1} "
            f"(cuts {dimension.judge_cuts!r}); re-bin the judge scores"
        )
    return b


def _ordered_arms(study: Study) -> list[Arm]:
    # Index 0 is the incumbent: the model and the decision rely on it.
    arms = list(study.arms.order_by("position", "id"))
    arms.sort(key=lambda a: a.role != Arm.Role.INCUMBENT)
    if not arms or arms[0].role != Arm.Role.INCUMBENT:
        raise ValueError(f"study {study.slug!r} has no incumbent arm")
    if len(arms) < 2:
        raise ValueError(f"study {study.slug!r} has no candidate arm")
    return arms


def parse_cell(cell: str, n_dims: int) -> list[int]:
    """The judge bins of a response's ``cell`` (``"1.0.3"``): ``-1`` for a dimension whose
    part is empty (no score, as :func:`annotate.setup.services.rebuild_cells` writes it),
    and for every dimension when the string does not have ``n_dims`` parts."""
    parts = cell.split(".") if cell else []
    if len(parts) != n_dims:
        return [-1] * n_dims
    return [int(p) if p.isascii() and p.isdigit() else -1 for p in parts]


def graded_classes(
    *, study: Study, dimensions: list[Dimension]
) -> dict[int, tuple[int, int, str, dict[int, int]]]:
    """Every graded response's cell and human class per dimension.

    ``{response_id: (arm_id, region_id, cell, {dimension_id: y})}``: ``y`` the majority of
    the response's live graded labels on the dimension, mapped by
    :meth:`~annotate.models.Dimension.passes`; a tie gives no ``y`` (module docstring).
    Bounded by the label budget times the annotators, not by the responses.
    """
    thresholds = {d.pk: _pass_threshold(d) for d in dimensions}
    rows = (
        Label.objects.of_live_grades()
        .filter(annotation__study=study, dimension_id__in=list(thresholds))
        .order_by()
        .values_list(
            "annotation__response_id",
            "annotation__response__arm_id",
            "annotation__response__region_id",
            "annotation__response__cell",
            "dimension_id",
            "value",
        )
    )
    votes: dict[int, tuple[int, int, str, dict[int, list[int]]]] = {}
    for resp, arm, region, cell, dim, value in rows:
        entry = votes.setdefault(resp, (arm, region, cell, {}))
        tally = entry[3].setdefault(dim, [0, 0])
        tally[int(value >= thresholds[dim])] += 1
    out: dict[int, tuple[int, int, str, dict[int, int]]] = {}
    for resp, (arm, region, cell, tallies) in votes.items():
        ys = {dim: int(p > f) for dim, (f, p) in tallies.items() if p != f}
        out[resp] = (arm, region, cell, ys)
    return out


def study_cells(
    *, study: Study, arms: list[Arm], regions: list[Region], dimensions: list[Dimension]
) -> JointCells:
    """The calibration-curve model's counts (:class:`~calibration.bayes.data.JointCells`).

    Two reads: the responses per ``(arm, region, cell)`` (the selection's stored totals,
    :mod:`calibration.totals`: no scan of the study) and the graded responses' classes
    (:func:`graded_classes`). Cells whose bins fall outside a dimension's bins (cut points
    changed without re-binning) are refused, as the model could not place them.
    """
    arm_index = {a.pk: i for i, a in enumerate(arms)}
    region_index = {g.pk: i for i, g in enumerate(regions)}
    n_bins = tuple(n_bins_of(d) for d in dimensions)
    n_dims = len(dimensions)
    rows = [(a, g, c, n) for (a, g, c), n in cell_totals(study=study).items()]
    combo_index: dict[tuple[int, ...], int] = {}
    cell_of: dict[str, int] = {}
    for _, _, cell, _ in rows:
        if cell in cell_of:
            continue
        bins = tuple(parse_cell(cell, n_dims))
        for d, b in enumerate(bins):
            if b >= n_bins[d]:
                _checked_bin(b, n_bins[d], dimensions[d])
        cell_of[cell] = combo_index.setdefault(bins, len(combo_index))
    m, r, k = len(arms), len(regions), max(len(combo_index), 1)
    totals = np.zeros((m, r, k), dtype=np.int64)
    for arm, region, cell, n in rows:
        if arm in arm_index and region in region_index:
            totals[arm_index[arm], region_index[region], cell_of[cell]] += n
    labelled = np.zeros((n_dims, m, r, k), dtype=np.int64)
    passes = np.zeros((n_dims, m, r, k), dtype=np.int64)
    dim_index = {d.pk: i for i, d in enumerate(dimensions)}
    for arm, region, cell, ys in graded_classes(study=study, dimensions=dimensions).values():
        if arm not in arm_index or region not in region_index or cell not in cell_of:
            continue
        at = (arm_index[arm], region_index[region], cell_of[cell])
        for dim, y in ys.items():
            labelled[(dim_index[dim], *at)] += 1
            passes[(dim_index[dim], *at)] += y
    combos = np.full((k, n_dims), -1, dtype=np.int64)
    for bins, i in combo_index.items():
        combos[i] = bins
    return JointCells(
        arms=tuple(a.key for a in arms),
        regions=tuple(g.key for g in regions),
        n_bins=n_bins,
        combos=combos,
        totals=totals,
        labelled=labelled,
        passes=passes,
    )


def study_counts(*, study: Study) -> StudyCounts:
    """Counts of every dimension of ``study``, named by arm and region keys."""
    arms = _ordered_arms(study)
    regions: list[Region] = list(study.regions.order_by("position", "id"))
    if not regions:
        raise ValueError(f"study {study.slug!r} has no regions")
    dimensions = list(study.dimensions.order_by("position", "id"))
    if not dimensions:
        raise ValueError(f"study {study.slug!r} has no dimensions")
    cells = study_cells(study=study, arms=arms, regions=regions, dimensions=dimensions)
    # The per-dimension tables (what dashboards and the judge summary read) come from the
    # same counts the model fits.
    counts = {d.key: cells.dimension_counts(i) for i, d in enumerate(dimensions)}
    bins = {d.key: {"cuts": d.judge_cuts, "n_bins": n_bins_of(d)} for d in dimensions}
    shares = np.array([float(g.traffic_share) for g in regions], dtype=np.float64)
    return StudyCounts(
        counts=counts,
        bins=bins,
        n_labels=Annotation.objects.filter(study=study).count_graded_responses(),
        n_responses=int(cells.totals.sum()),
        traffic_shares=shares / shares.sum(),
        margins={d.key: float(d.margin) for d in dimensions},
        cells=cells,
    )
