"""Fits as a service: coalescing, running, failing, recovering, serving (fake fitter)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from calibration import services
from calibration.bayes.model import MODEL_VERSION
from calibration.models import Fit
from tests.calibration.helpers import populate, worker_alive

pytestmark = pytest.mark.django_db


@pytest.fixture
def graded_study(study):
    study.refit_every = 20
    study.save()
    populate(study, prompts_per_region=20, graded_share=0.4, seed=1)  # ~48 graded responses
    return study


def test_a_burst_of_fifty_labels_gives_one_fit(
    graded_study, fake_fitter, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        fits = {services.note_new_labels(study=graded_study) for _ in range(50)}
    assert len(fits) == 1 and Fit.objects.count() == 1
    assert len(callbacks) == 1  # one task enqueued, not fifty
    fit = fits.pop()
    assert fit.status == Fit.Status.QUEUED and fit.trigger == Fit.Trigger.LABELS

    with django_capture_on_commit_callbacks(execute=True):
        callbacks[0]()  # the immediate backend runs the task here
    fit.refresh_from_db()
    assert fit.status == Fit.Status.SUCCEEDED
    # The fit saw every label: the next labels only count from there.
    assert services.note_new_labels(study=graded_study) is None
    assert Fit.objects.count() == 1


def test_no_fit_before_refit_every_labels(study, fake_fitter):
    populate(study, prompts_per_region=3, graded_share=0.5)  # a handful of grades
    assert services.note_new_labels(study=study) is None
    assert not Fit.objects.exists()


def test_a_request_while_one_runs_queues_exactly_one_follow_up(study, fake_fitter):
    running = Fit.objects.create(study=study, status="running", started_at=timezone.now())
    first = services.request_fit(study=study, trigger="manual")
    second = services.request_fit(study=study, trigger="manual")
    assert first == second != running and first.status == Fit.Status.QUEUED
    assert Fit.objects.filter(study=study).count() == 2


def test_the_database_refuses_two_running_or_two_queued_fits(study):
    for status in ("running", "queued"):
        Fit.objects.create(study=study, status=status)
        with pytest.raises(IntegrityError), transaction.atomic():
            Fit.objects.create(study=study, status=status)


def test_a_follow_up_waits_for_the_running_fit_then_runs(
    graded_study, fake_fitter, django_capture_on_commit_callbacks
):
    """A second worker picks the follow-up while the first fit runs: it leaves it queued,
    and the first fit hands over when it finishes."""
    first = services.request_fit(study=graded_study, trigger="manual")
    seen: dict[str, object] = {}
    real_fit = fake_fitter.fit

    def fit_and_meanwhile_request(cells, dimension=0, **kw):
        if "follow_up" not in seen:
            seen["follow_up"] = follow_up = services.request_fit(
                study=graded_study, trigger="labels"
            )
            seen["second_worker"] = services.run_fit(fit_id=follow_up.pk)
        return real_fit(cells, dimension, **kw)

    fake_fitter.fit = fit_and_meanwhile_request
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.run_fit(fit_id=first.pk)
    assert seen["second_worker"] is None  # could not claim: the study was busy
    follow_up = seen["follow_up"]
    follow_up.refresh_from_db()
    first.refresh_from_db()
    assert first.status == follow_up.status == Fit.Status.SUCCEEDED
    assert len(callbacks) >= 2  # the request's enqueue and the hand-over
    assert services.latest_fit(graded_study) == follow_up


def test_run_fit_records_what_reproduces_it(graded_study, fake_fitter):
    fit = services.request_fit(study=graded_study, trigger="manual")
    fit = services.run_fit(fit_id=fit.pk)
    assert fit.status == Fit.Status.SUCCEEDED and fit.error == ""
    assert fit.seed == services.fit_seed(fit.pk) and fit.seed > 0
    assert len(fit.counts_hash) == 64 and fit.model_version == MODEL_VERSION
    assert fit.bins["style"]["n_bins"] == 5
    assert fit.n_labels > 20 and fit.n_responses == 3 * 40
    assert set(fit.diagnostics) == {"correctness", "refusal", "style"}
    assert {"max_rhat", "min_ess_bulk", "divergences", "seconds", "ok"} <= set(
        fit.diagnostics["style"]
    )
    assert fit.trustworthy and fit.started_at <= fit.finished_at
    # The verdict matrix: every candidate × dimension, with regions and judge behaviour.
    cands = fit.summary["candidates"]
    assert [c["arm"] for c in cands] == ["cand1", "cand2"]
    for cand in cands:
        assert cand["verdict"] in {"go", "no-go", "undecided"}
        assert [d["dimension"] for d in cand["dimensions"]] == ["correctness", "refusal", "style"]
        for dim in cand["dimensions"]:
            assert dim["lower"] <= dim["mean"] <= dim["upper"]
            assert 0 <= dim["p_noninferior"] <= 1
            assert [r["region"] for r in dim["regions"]] == ["eu", "us"]
            assert [a["arm"] for a in dim["judge"]["arms"]] == ["inc", cand["arm"]]
    # Same counts: the same hash (the seed differs: it comes from the fit id).
    again = services.request_fit(study=graded_study, trigger="manual")
    again = services.run_fit(fit_id=again.pk)
    assert again.counts_hash == fit.counts_hash


def test_draws_are_compact_and_load_back(graded_study, fake_fitter):
    fake_fitter.draws = 1500
    fit = services.run_fit(fit_id=services.request_fit(study=graded_study, trigger="manual").pk)
    draws = services.load_draws(fit)
    assert list(draws) == ["correctness", "refusal", "style"]
    style = draws["style"]
    assert style.theta.shape == (services.DRAWS_STORED, 3, 2)
    assert style.confusion.shape == (services.DRAWS_STORED, 3, 2, 5)
    assert style.theta.dtype == np.float32
    assert style.arms == ("inc", "cand1", "cand2")
    # float32, 1000 draws: θ, the confusion and the curve's parameters, no more.
    floats = sum(
        f.theta.size + f.confusion.size + sum(v.size for v in (f.params or {}).values())
        for f in draws.values()
    )
    assert all(f.has_curve for f in draws.values())
    assert len(fit.draws) < 4 * floats * 1.1
    assert services.load_draws(Fit.objects.get(pk=fit.pk)) is draws  # cached by fit id


def test_a_failed_fit_does_not_hide_the_last_good_one(graded_study, fake_fitter):
    good = services.run_fit(fit_id=services.request_fit(study=graded_study, trigger="manual").pk)
    fake_fitter.fail = True
    bad = services.run_fit(fit_id=services.request_fit(study=graded_study, trigger="manual").pk)
    assert bad.status == Fit.Status.FAILED
    assert "RuntimeError: sampler exploded" in bad.error and bad.finished_at
    assert services.latest_fit(graded_study) == good
    # A queued or running fit does not hide it either.
    Fit.objects.create(study=graded_study, status="running", started_at=timezone.now())
    services.request_fit(study=graded_study, trigger="manual")
    assert services.latest_fit(graded_study) == good


def test_an_untrustworthy_fit_is_served_but_flagged(graded_study, fake_fitter):
    fake_fitter.ok = False
    fit = services.run_fit(fit_id=services.request_fit(study=graded_study, trigger="manual").pk)
    assert fit.status == Fit.Status.SUCCEEDED and not fit.trustworthy
    assert services.latest_fit(graded_study) == fit
    assert all(c["verdict"] != "go" for c in fit.summary["candidates"])


def test_no_fit_yet_means_nothing_served(study):
    assert services.latest_fit(study) is None


def test_a_fit_is_never_run_twice(graded_study, fake_fitter):
    fit = services.request_fit(study=graded_study, trigger="manual")
    assert services.run_fit(fit_id=fit.pk) is not None
    assert services.run_fit(fit_id=fit.pk) is None  # a duplicate task finds nothing to do
    assert fake_fitter.calls == 3  # three dimensions, once


def test_a_stale_running_fit_is_marked_lost_and_a_new_one_queued(
    graded_study, fake_fitter, django_capture_on_commit_callbacks
):
    long_ago = timezone.now() - services.STALE_RUNNING_AFTER - timedelta(minutes=1)
    lost = Fit.objects.create(study=graded_study, status="running", started_at=long_ago)
    recent = timezone.now() - timedelta(minutes=1)

    with django_capture_on_commit_callbacks(execute=True):
        fit = services.request_fit(study=graded_study, trigger="manual")
    lost.refresh_from_db()
    fit.refresh_from_db()
    assert lost.status == Fit.Status.FAILED and "worker lost" in lost.error
    assert fit != lost and fit.status == Fit.Status.SUCCEEDED

    # A fit running for a minute (its worker alive) is left alone: the request queues
    # behind it.
    busy = Fit.objects.create(study=graded_study, status="running", started_at=recent)
    with worker_alive(busy.pk):
        queued = services.request_fit(study=graded_study, trigger="manual")
    busy.refresh_from_db()
    assert busy.status == Fit.Status.RUNNING and queued.status == Fit.Status.QUEUED


def test_a_queued_fit_stuck_behind_a_lost_one_is_enqueued_again(
    graded_study, fake_fitter, django_capture_on_commit_callbacks
):
    long_ago = timezone.now() - services.STALE_RUNNING_AFTER - timedelta(minutes=1)
    Fit.objects.create(study=graded_study, status="running", started_at=long_ago)
    stuck = Fit.objects.create(study=graded_study, status="queued")  # its task gave up
    with django_capture_on_commit_callbacks(execute=True):
        assert services.request_fit(study=graded_study, trigger="manual") == stuck
    stuck.refresh_from_db()
    assert stuck.status == Fit.Status.SUCCEEDED


def test_the_fit_task_runs_the_fit(graded_study, fake_fitter):
    from calibration.tasks import fit_study

    fit = Fit.objects.create(study=graded_study)
    result = fit_study.enqueue(fit.pk)  # immediate backend in tests
    assert result.return_value == "succeeded"
    assert fit_study.enqueue(fit.pk).return_value == "skipped"


def test_a_fits_stored_diagnostics_keep_its_ess_top_ups(study, fake_fitter):
    fake_fitter.extra_diagnostics = {
        "top_ups": 1.0,
        "chains": 4.0,
        "min_ess_bulk_first": 312.0,
        "max_rhat_first": 1.004,
        "divergences_first": 0.0,
        "top_up_seconds": 1.5,
    }
    populate(study, prompts_per_region=5, graded_share=0.5)
    fit = services.run_fit(fit_id=services.request_fit(study=study, trigger="manual").pk)
    assert fit is not None and fit.diagnostics
    for stored in fit.diagnostics.values():
        assert stored["top_ups"] == 1.0 and stored["chains"] == 4.0
        assert stored["min_ess_bulk_first"] == 312.0 and stored["top_up_seconds"] == 1.5
