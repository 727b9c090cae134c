"""Populate a study with responses, judge scores and grades in bulk, and a fake fitter."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from django.db import connection, connections
from django.utils import timezone

from annotate.models import (
    Annotation,
    Dimension,
    Label,
    Prompt,
    Response,
    Study,
)
from annotate.setup.services import rebuild_cells
from calibration import services
from calibration.bayes.curve import design_for
from calibration.bayes.data import JointCells
from calibration.bayes.fit import DimensionFit
from calibration.counts import n_bins_of
from tests.factories import UserFactory
from tests.scores import value_in_bin


def populate(
    study: Study,
    *,
    prompts_per_region: int = 20,
    graded_share: float = 0.3,
    annotators: int = 1,
    seed: int = 0,
) -> None:
    """Every arm answers every prompt; each response gets a binned judge score on every
    dimension, and ``graded_share`` of them one grade per annotator (on every dimension)."""
    rng = np.random.default_rng(seed)
    arms = list(study.arms.all())
    dims = list(study.dimensions.all())
    users = [UserFactory(username=f"{study.slug}-grader{i}") for i in range(annotators)]
    prompts = Prompt.objects.bulk_create(
        Prompt(study=study, region=region, external_id=f"{region.key}-{i}", text="q")
        for region in study.regions.all()
        for i in range(prompts_per_region)
    )
    responses = [
        Response(prompt=p, arm=a, study=study, region_id=p.region_id, text="a")
        for p in prompts
        for a in arms
    ]
    # Truth per (response, dimension), a judge better than chance, graders who mostly agree.
    truth = {d.pk: rng.random(len(responses)) < 0.7 for d in dims}
    for d in dims:
        j = n_bins_of(d)
        y = truth[d.pk]
        if j == 2:
            bins = (rng.random(len(responses)) < np.where(y, 0.85, 0.2)).astype(int)
        else:
            bins = np.clip(
                np.round(np.where(y, 0.7, 0.3) * (j - 1) + rng.normal(0, 0.8, len(y))), 0, j - 1
            ).astype(int)
        for r, b in zip(responses, bins, strict=True):
            r.set_score(d, value_in_bin(d, int(b)), "j")  # a value rebuild_cells bins to b
    responses = Response.objects.bulk_create(responses)
    rebuild_cells(study=study)  # as an import does: each response's cell holds its bins
    graded = [i for i in range(len(responses)) if rng.random() < graded_share]
    annotations = Annotation.objects.bulk_create(
        Annotation(response=responses[i], annotator=u, study=study, created_at=timezone.now())
        for i in graded
        for u in users
    )
    labels = []
    for a, i in zip(annotations, [i for i in graded for _ in users], strict=True):
        for d in dims:
            passed = bool(truth[d.pk][i]) != (rng.random() < 0.1)
            if d.is_binary:
                value = int(passed)
            else:
                value = (
                    int(rng.integers(d.pass_threshold, d.scale_max + 1))
                    if passed
                    else int(rng.integers(1, d.pass_threshold))
                )
            labels.append(Label(annotation=a, dimension=d, value=value))
    Label.objects.bulk_create(labels)


def grade(response: Response, user, values: dict[Dimension, int], **fields) -> Annotation:
    """One graded annotation with the given label per dimension."""
    annotation = Annotation.objects.create(
        response=response, annotator=user, study=response.study, **fields
    )
    Label.objects.bulk_create(
        Label(annotation=annotation, dimension=d, value=v) for d, v in values.items()
    )
    return annotation


@dataclass
class FakeFitter:
    """Stands in for calibration.bayes.fit.Fitter: Beta draws from the labelled counts.

    Not a calibration model: it only gives draws of the right shapes, fast, so that the
    service plumbing can be tested without sampling.
    """

    ok: bool = True
    fail: bool = False  # raise instead of fitting
    draws: int = 200
    calls: int = 0
    extra_diagnostics: dict[str, float] = field(default_factory=dict)

    def fit(self, cells: JointCells, dimension: int = 0, *, seed: int, **_: object) -> DimensionFit:
        self.calls += 1
        if self.fail:
            raise RuntimeError("sampler exploded")
        counts = cells.dimension_counts(dimension)
        rng = np.random.default_rng(seed)
        lab = counts.labelled.sum(axis=3)  # (M, R, 2)
        theta = rng.beta(1 + lab[..., 1], 1 + lab[..., 0], size=(self.draws, *lab.shape[:2]))
        j = counts.n_bins
        row0 = np.linspace(2.0, 1.0, j)
        row1 = row0[::-1]
        m = len(counts.arms)
        confusion = np.stack(
            [
                rng.dirichlet(row0 * 20, size=(self.draws, m)),
                rng.dirichlet(row1 * 20, size=(self.draws, m)),
            ],
            axis=2,
        )
        diagnostics = {
            "max_rhat": 1.0 if self.ok else 1.2,
            "min_ess_bulk": 900.0,
            "divergences": 0.0,
            **self.extra_diagnostics,
        }
        # A calibration curve of the right shapes: the judge's bin moves the pass rate.
        design = design_for(cells.level_index(), cells.levels(), cells.n_bins, dimension)
        _, r, _ = cells.shape
        base = np.log(theta.mean(axis=2) / (1 - theta.mean(axis=2)))  # (S, M)
        params = {
            "intercept": base,
            "bin_effect": np.broadcast_to(2.0 * design.own_x, (self.draws, m, design.n_levels)),
            "region_effect": np.zeros((self.draws, m, r)),
            "region_bin_effect": np.zeros((self.draws, m, r, design.n_levels)),
            "other_effect": np.zeros((self.draws, m, design.n_other)),
        }
        return DimensionFit(
            arms=counts.arms,
            regions=counts.regions,
            n_bins=j,
            theta=theta,
            confusion=confusion,
            diagnostics=diagnostics,
            ok=self.ok,
            seed=seed,
            counts_digest=cells.digest(),
            params={k: np.array(v) for k, v in params.items()},
            design=design,
            combos=np.asarray(cells.combos),
        )


@contextmanager
def worker_alive(fit_id: int) -> Iterator[None]:
    """What a live worker holds while it runs a fit: on PostgreSQL, the fit's advisory lock,
    from a database session of its own (without it, a "running" fit counts as lost)."""
    if connection.vendor != "postgresql":
        yield
        return
    worker = connections.create_connection("default")
    with worker.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [services.RUNNING_LOCK_CLASS, fit_id])
    try:
        yield
    finally:
        worker.close()  # the session ends, as when the worker process dies
