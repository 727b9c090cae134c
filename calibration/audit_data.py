"""The audit sample out of the database, for :mod:`calibration.bayes.audit`.

The audit sample is every response an ``audit`` pick drew (``Assignment.policy``), graded
live by anyone: ``annotate.grading.queue`` draws it uniformly over all the study's responses, and
records a draw that lands on a response already graded or leased too, so the sample is a
uniform one of the whole population, not of what is still ungraded.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from annotate.models import Arm, Assignment, Dimension, Label, Study
from calibration.bayes.audit import AuditEstimate, Stratum, audit_delta
from calibration.counts import n_bins_of, parse_cell
from calibration.totals import cell_totals

__all__ = ["audit_estimates", "audit_response_ids"]


def audit_response_ids(study: Study) -> set[int]:
    return set(
        Assignment.objects.filter(study=study, policy=Assignment.Policy.AUDIT).values_list(
            "response_id", flat=True
        )
    )


def _passes(dimension: Dimension, value: int) -> bool:
    return value >= (1 if dimension.is_binary else (dimension.pass_threshold or 1))


def audit_estimates(
    *, study: Study, weights: np.ndarray
) -> dict[tuple[str, str], AuditEstimate | None]:
    """``{(candidate key, dimension key): audit Δ or None}`` (regions in position order)."""
    arms = list(study.arms.order_by("position", "id"))
    incumbent = next(a for a in arms if a.role == Arm.Role.INCUMBENT)
    regions = list(study.regions.order_by("position", "id"))
    ids = audit_response_ids(study)
    dims = list(study.dimensions.order_by("position", "id"))
    # Every response's judge bins: the responses per (arm, region, cell), stored.
    per_cell = [(a, g, c, n) for (a, g, c), n in cell_totals(study=study).items()]
    cell_of = dict(study.responses.filter(pk__in=list(ids)).values_list("pk", "cell"))
    out: dict[tuple[str, str], AuditEstimate | None] = {}
    for d, dim in enumerate(dims):
        scale = max(n_bins_of(dim) - 1, 1)
        f_sum: dict[tuple[int, int], float] = defaultdict(float)
        f_sq: dict[tuple[int, int], float] = defaultdict(float)
        n_all: dict[tuple[int, int], int] = defaultdict(int)
        for arm_id, region_id, cell, n in per_cell:
            b = parse_cell(cell, len(dims))[d]
            if b < 0:  # no score on this dimension
                continue
            key = (arm_id, region_id)
            f = b / scale
            f_sum[key] += f * n
            f_sq[key] += f * f * n
            n_all[key] += n
        # The audited responses' grades (pass share over live grades) and judge bins.
        grades: dict[int, list[bool]] = defaultdict(list)
        labels = (
            Label.objects.of_live_grades()
            .filter(dimension=dim, annotation__response_id__in=ids)
            .values_list("annotation__response_id", "value")
        )
        for rid, value in labels:
            grades[rid].append(_passes(dim, value))
        bins = {
            rid: b for rid in grades if (b := parse_cell(cell_of.get(rid, ""), len(dims))[d]) >= 0
        }
        stratum_of = {
            pk: (arm_id, region_id)
            for pk, arm_id, region_id in study.responses.filter(pk__in=list(grades)).values_list(
                "pk", "arm_id", "region_id"
            )
        }
        ys: dict[tuple[int, int], list[float]] = defaultdict(list)
        fs: dict[tuple[int, int], list[float]] = defaultdict(list)
        for rid, g in grades.items():
            if rid not in bins:
                continue
            key = stratum_of[rid]
            ys[key].append(float(np.mean(g)))
            fs[key].append(bins[rid] / scale)

        by_arm = {
            arm.pk: [
                Stratum(
                    y=ys[(arm.pk, g.pk)],
                    f=fs[(arm.pk, g.pk)],
                    f_sum=f_sum[(arm.pk, g.pk)],
                    f_sq_sum=f_sq[(arm.pk, g.pk)],
                    n_all=n_all[(arm.pk, g.pk)],
                )
                for g in regions
            ]
            for arm in arms
        }
        for arm in arms:
            if arm.role == Arm.Role.CANDIDATE:
                out[(arm.key, dim.key)] = audit_delta(by_arm[arm.pk], by_arm[incumbent.pk], weights)
    return out
