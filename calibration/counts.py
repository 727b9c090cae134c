"""From the database to the calibration model's counts, one table per dimension.

Everything here is aggregate SQL (``GROUP BY``): a study can hold millions of responses,
and the model only needs how many fall in each cell ``(arm, region, judge bin)`` and, for
the human-graded ones, in each ``(arm, region, true class, judge bin)``.

Human truth per response and dimension
--------------------------------------
A response's true class ``y`` on a dimension is the majority of the labels of its *live*
graded annotations (``status = graded``, ``undone_at`` null), each label mapped to pass/fail
by :meth:`annotate.models.Dimension.passes` (binary: ``value == 1``; ordinal:
``value >= pass_threshold``). Skipped and undone annotations give no label.

A **tie** (as many passes as fails, e.g. two annotators who disagree) is treated as
*unlabelled*: the response stays in the judge-only counts, so it still tells the model
about the judge-positive rate of its cell and the population is not thinned by
disagreement. A labelled response is never also counted as judge-only.

Responses without a binned judge score on the dimension (``JudgeScore.bin`` null, or no
score) are left out of that dimension's counts: the model has no cell for them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Case, Count, F, IntegerField, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce

from annotate.models import Annotation, Arm, Dimension, JudgeScore, Label, Region, Study
from calibration.bayes.data import CellCounts

__all__ = ["StudyCounts", "count_labels", "dimension_tables", "n_bins_of", "study_counts"]


@dataclass(frozen=True)
class StudyCounts:
    """The counts of every dimension of a study, and what a Fit records about them."""

    counts: dict[str, CellCounts]  # by dimension key, in dimension order
    bins: dict[str, dict[str, object]]  # by dimension key: {"cuts": [...], "n_bins": J}
    n_labels: int  # graded responses (live graded annotations), any dimension
    n_responses: int
    traffic_shares: np.ndarray = field(repr=False)  # (R,) float64, regions in counts order
    margins: dict[str, float] = field(default_factory=dict)

    def digest(self) -> str:
        """One hash over every dimension's counts (each already hashes names and bins)."""
        h = hashlib.sha256()
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


def _live_graded_labels(dimension: Dimension):
    return Label.objects.filter(
        dimension=dimension,
        annotation__status=Annotation.Status.GRADED,
        annotation__undone_at__isnull=True,
    )


def count_labels(*, study: Study) -> int:
    """Graded responses of the study: responses with at least one live graded annotation."""
    return (
        Annotation.objects.filter(
            study=study, status=Annotation.Status.GRADED, undone_at__isnull=True
        )
        .values("response_id")
        .distinct()
        .count()
    )


def _label_count(labels, condition: Q) -> Coalesce:
    """Correlated COUNT of a response's labels matching ``condition`` (0 when none)."""
    sub = (
        labels.filter(condition, annotation__response=OuterRef("response"))
        .order_by()
        .values("annotation__response")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(sub, output_field=IntegerField()), Value(0))


def dimension_tables(
    *, dimension: Dimension, arm_index: dict[int, int], region_index: dict[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """``(judge_only[M,R,J], labelled[M,R,2,J])`` of one dimension from two GROUP BY queries.

    ``arm_index`` and ``region_index`` map primary keys to axis positions.

    1. All binned judge scores per ``(arm, region, bin)``.
    2. Labelled responses only (a few thousand at most): their majority class from two
       correlated label counts, grouped per ``(arm, region, bin, y)``.

    judge-only = all − labelled (ties count as unlabelled, so they stay in judge-only).
    """
    m, r, j = len(arm_index), len(region_index), n_bins_of(dimension)
    totals = np.zeros((m, r, j), dtype=np.int64)
    labelled = np.zeros((m, r, 2, j), dtype=np.int64)

    scores = JudgeScore.objects.filter(dimension=dimension, bin__isnull=False)
    rows = (
        scores.order_by()
        .values("response__arm_id", "response__region_id", "bin")
        .annotate(n=Count("pk"))
    )
    for row in rows:
        b = _checked_bin(row["bin"], j, dimension)
        totals[arm_index[row["response__arm_id"]], region_index[row["response__region_id"]], b] = (
            row["n"]
        )

    labels = _live_graded_labels(dimension)
    threshold = _pass_threshold(dimension)
    graded = (
        labels.filter(annotation__study_id=dimension.study_id)
        .values("annotation__response_id")
        .order_by()
    )
    rows = (
        scores.filter(response__in=graded)
        .annotate(
            n_pass=_label_count(labels, Q(value__gte=threshold)),
            n_fail=_label_count(labels, Q(value__lt=threshold)),
        )
        .annotate(
            y=Case(
                When(n_pass__gt=F("n_fail"), then=Value(1)),
                When(n_fail__gt=F("n_pass"), then=Value(0)),
                default=Value(-1),
                output_field=IntegerField(),
            )
        )
        .filter(y__gte=0)
        .order_by()
        .values("response__arm_id", "response__region_id", "bin", "y")
        .annotate(n=Count("pk"))
    )
    for row in rows:
        b = _checked_bin(row["bin"], j, dimension)
        labelled[
            arm_index[row["response__arm_id"]],
            region_index[row["response__region_id"]],
            row["y"],
            b,
        ] = row["n"]

    return totals - labelled.sum(axis=2), labelled


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


def study_counts(*, study: Study) -> StudyCounts:
    """Counts of every dimension of ``study``, named by arm and region keys."""
    arms = _ordered_arms(study)
    regions: list[Region] = list(study.regions.order_by("position", "id"))
    if not regions:
        raise ValueError(f"study {study.slug!r} has no regions")
    dimensions = list(study.dimensions.order_by("position", "id"))
    if not dimensions:
        raise ValueError(f"study {study.slug!r} has no dimensions")
    arm_index = {a.pk: i for i, a in enumerate(arms)}
    region_index = {g.pk: i for i, g in enumerate(regions)}

    counts: dict[str, CellCounts] = {}
    bins: dict[str, dict[str, object]] = {}
    for dimension in dimensions:
        judge_only, labelled = dimension_tables(
            dimension=dimension, arm_index=arm_index, region_index=region_index
        )
        # Axes are named by keys (stable across databases and exports), not primary keys.
        counts[dimension.key] = CellCounts(
            arms=tuple(a.key for a in arms),
            regions=tuple(g.key for g in regions),
            n_bins=n_bins_of(dimension),
            judge_only=judge_only,
            labelled=labelled,
        )
        bins[dimension.key] = {"cuts": dimension.judge_cuts, "n_bins": n_bins_of(dimension)}

    shares = np.array([float(g.traffic_share) for g in regions], dtype=np.float64)
    return StudyCounts(
        counts=counts,
        bins=bins,
        n_labels=count_labels(study=study),
        n_responses=study.responses.count(),
        traffic_shares=shares / shares.sum(),
        margins={d.key: float(d.margin) for d in dimensions},
    )
