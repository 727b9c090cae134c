"""Selection glue: availability, picks with and without a fit, and when grading stops."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from annotate.grading.queue import next_item
from annotate.models import Annotation, Assignment, Label, Membership, Response, Study
from calibration.bayes.fit import DimensionFit
from calibration.bayes.posterior import dump_draws
from calibration.bayes.select import DimensionDraws, Selector
from calibration.models import Fit
from calibration.selection import (
    available_counts,
    available_responses,
    forget_cell_totals,
    pick_cell,
    selection_status,
    selector_for,
)
from tests.factories import MembershipFactory, PromptFactory, ResponseFactory, make_study

S = 300


@pytest.fixture(autouse=True)
def _fresh_totals():
    forget_cell_totals()
    yield
    forget_cell_totals()


@pytest.fixture
def study(db):
    return make_study(slug="sel", candidates=2)


def _responses(study, per_cell: dict[tuple[str, str, str], int]) -> list[Response]:
    arms = {a.key: a for a in study.arms.all()}
    regions = {g.key: g for g in study.regions.all()}
    out = []
    for (arm, region, cell), n in per_cell.items():
        for _ in range(n):
            prompt = PromptFactory(study=study, region=regions[region])
            out.append(ResponseFactory(prompt=prompt, arm=arms[arm], cell=cell))
    return out


def _draws(*, n_bins: int, seed: int, gap: float = 0.0) -> DimensionFit:
    """Hand-made draws: arms inc, cand1, cand2 over regions eu, us; cand2 shifted by gap."""
    rng = np.random.default_rng(seed)
    theta = np.clip(0.7 + 0.04 * rng.standard_normal((S, 3, 2)), 0.01, 0.99)
    theta[:, 2] += gap
    conf = rng.dirichlet(np.linspace(1, 3, n_bins), size=(S, 3, 2))
    conf[:, :, 1] = conf[:, :, 1, ::-1]  # passes lean to the high bins
    return DimensionFit(
        arms=("inc", "cand1", "cand2"),
        regions=("eu", "us"),
        n_bins=n_bins,
        theta=theta,
        confusion=conf,
        diagnostics={"max_rhat": 1.0, "min_ess_bulk": 1000.0, "divergences": 0.0},
        ok=True,
        seed=seed,
        counts_digest="x",
    )


def _summary(verdicts: dict[tuple[str, str], str]) -> dict:
    """The shape :func:`calibration.services.build_summary` writes (lists, not dicts)."""
    cands: dict = {}
    for (cand, dim), v in verdicts.items():
        cands.setdefault(
            cand, {"arm": cand, "model_name": cand, "verdict": "undecided", "dimensions": []}
        )
        cands[cand]["dimensions"].append({"dimension": dim, "verdict": v})
    return {
        "incumbent": {"arm": "inc", "model_name": "inc"},
        "confidence": 0.95,
        "candidates": list(cands.values()),
    }


DIMS = ("correctness", "refusal", "style")


def _fit(study, *, verdicts=None, trustworthy=True, gap=0.0, started=None) -> Fit:
    fits = {
        "correctness": _draws(n_bins=2, seed=1, gap=gap),
        "refusal": _draws(n_bins=2, seed=2, gap=gap),
        "style": _draws(n_bins=5, seed=3, gap=gap),
    }
    verdicts = verdicts or {(c, d): "undecided" for c in ("cand1", "cand2") for d in DIMS}
    now = timezone.now()
    return Fit.objects.create(
        study=study,
        status=Fit.Status.SUCCEEDED,
        started_at=started or now - timedelta(seconds=5),
        finished_at=now,
        trustworthy=trustworthy,
        summary=_summary(verdicts),
        draws=dump_draws(fits),
    )


def _user(name: str = "grader"):
    # No password: hashing one per grade made these tests take minutes.
    return get_user_model().objects.get_or_create(username=name)[0]


def _grade(response, *, values: dict[str, int], annotator=None, when=None) -> Annotation:
    ann = Annotation.objects.create(
        response=response,
        annotator=annotator or _user(),
        study=response.study,
        created_at=when or timezone.now(),
    )
    for dim in response.study.dimensions.all():
        if dim.key in values:
            Label.objects.create(annotation=ann, dimension=dim, value=values[dim.key])
    return ann


def _lease(response, *, seconds: int = 600) -> Assignment:
    now = timezone.now()
    return Assignment.objects.create(
        study=response.study,
        response=response,
        annotator=_user("leaseholder"),
        policy=Assignment.Policy.UNIFORM,
        probability=0.5,
        leased_at=now - timedelta(seconds=60),
        expires_at=now + timedelta(seconds=seconds - 60),
    )


def test_graded_and_leased_responses_are_not_available(study):
    r = _responses(study, {("inc", "eu", "0.1.3"): 6})
    _grade(r[0], values={"correctness": 1})
    undone = _grade(r[1], values={"correctness": 1})
    Annotation.objects.filter(pk=undone.pk).update(undone_at=timezone.now())
    Annotation.objects.create(
        response=r[2], annotator=_user(), study=study, status="skipped", skip_reason="x"
    )
    _lease(r[3])  # live
    _lease(r[4], seconds=30)  # expired 30 s ago
    inc, eu = study.incumbent, study.regions.get(key="eu")
    assert available_counts(study=study) == [(inc.pk, eu.pk, "0.1.3", 4)]
    assert set(available_responses(study=study)) == {r[1], r[2], r[4], r[5]}


def test_without_a_fit_picks_are_uniform_over_available_responses(study):
    _responses(study, {("inc", "eu", "0.0.0"): 1, ("cand1", "us", "1.1.4"): 3})
    pick = pick_cell(study=study, rng=np.random.default_rng(0))
    assert pick is not None
    assert pick.policy == "uniform"
    assert pick.probability == pytest.approx(1 / 4)
    assert pick.fit_id is None and pick.score is None


def test_no_pick_when_nothing_is_available(study):
    (r,) = _responses(study, {("inc", "eu", "0.0.0"): 1})
    _grade(r, values={"correctness": 0})
    assert pick_cell(study=study, rng=np.random.default_rng(0)) is None


def _all_cells(study):
    cells = {}
    for arm in ("inc", "cand1", "cand2"):
        for region in ("eu", "us"):
            for c in ("0.0.0", "1.1.4", "1.0.2"):
                cells[(arm, region, c)] = 2
    return _responses(study, cells)


def test_with_a_fit_the_best_cell_gets_the_greedy_pick(study):
    _all_cells(study)
    fit = _fit(study)
    study.exploration_share = 0.0
    study.save()
    pick = pick_cell(study=study, rng=np.random.default_rng(0))
    assert pick.policy == "active"
    assert pick.fit_id == fit.pk
    assert pick.probability == pytest.approx(1 / 2)

    ctx = selector_for(study=study, fit=fit)
    arm_ix = ctx.arm_index[pick.arm_id]
    reg_ix = ctx.region_index[pick.region_id]
    rows = available_counts(study=study)
    scores = [
        ctx.selector.scores(
            arm=[ctx.arm_index[a]],
            region=[ctx.region_index[g]],
            bins=[[int(x) for x in c.split(".")]],
        )[0]
        for a, g, c, _ in rows
    ]
    best = ctx.selector.scores(
        arm=[arm_ix], region=[reg_ix], bins=[[int(x) for x in pick.cell.split(".")]]
    )[0]
    assert pick.score == pytest.approx(best)
    assert best == pytest.approx(max(scores))


def test_the_queue_leases_from_the_selection_rules_pick(study):
    """Through annotate.hooks, not a fake: with a fit, the queue's pick is the rule's."""
    _all_cells(study)
    fit = _fit(study)
    Study.objects.filter(pk=study.pk).update(exploration_share=0, overlap_share=0)
    study.refresh_from_db()
    annotator = _user("charlie")
    MembershipFactory(study=study, user=annotator, role=Membership.Role.ANNOTATOR)
    rule = pick_cell(study=study, rng=np.random.default_rng(0))
    assignment = next_item(study=study, annotator=annotator, rng=np.random.default_rng(0))
    assert (assignment.policy, assignment.fit_id) == (Assignment.Policy.ACTIVE, fit.pk)
    assert assignment.probability == pytest.approx(rule.probability)
    assert assignment.response.cell == rule.cell
    assert (assignment.response.arm_id, assignment.response.region_id) == (
        rule.arm_id,
        rule.region_id,
    )


def test_settled_verdicts_in_the_summary_stop_attracting_labels(study):
    _all_cells(study)
    verdicts = {(c, d): "go" for c in ("cand1", "cand2") for d in DIMS}
    verdicts[("cand2", "style")] = "undecided"
    fit = _fit(study, verdicts=verdicts)
    ctx = selector_for(study=study, fit=fit)
    tables = ctx.selector.tables()
    assert np.all(tables[0] == 0) and np.all(tables[1] == 0)
    assert np.all(tables[2][1] == 0)  # cand1 is settled everywhere
    assert tables[2][2].max() > 0 and tables[2][0].max() > 0


def test_probabilities_of_all_available_responses_sum_to_one(study):
    _all_cells(study)
    _fit(study)
    rng = np.random.default_rng(1)
    seen: dict[tuple[int, int, str], float] = {}
    for _ in range(300):
        pick = pick_cell(study=study, rng=rng)
        seen[(pick.arm_id, pick.region_id, pick.cell)] = pick.probability
    n = {(a, g, c): k for a, g, c, k in available_counts(study=study)}
    assert set(seen) == set(n)  # exploration reaches every cell
    assert sum(p * n[key] for key, p in seen.items()) == pytest.approx(1.0)


def test_labels_since_the_fit_lower_the_value_of_their_cell(study):
    _all_cells(study)
    responses = _responses(study, {("cand1", "eu", "1.1.4"): 40})
    fit = _fit(study, started=timezone.now() - timedelta(minutes=1))
    before = selector_for(study=study, fit=fit)
    key = {"arm": [1], "region": [0], "bins": [[1, 1, 4]]}
    value_before = before.selector.scores(**key)[0]
    for r in responses:
        _grade(r, values={"correctness": 1, "refusal": 1, "style": 5})
    after = selector_for(study=study, fit=fit)
    assert after.selector.n_observed == 40
    assert after.selector.scores(**key)[0] < value_before


def test_labels_before_the_fit_are_not_counted_twice(study):
    (r,) = _responses(study, {("inc", "eu", "0.0.0"): 1})
    _grade(r, values={"correctness": 1}, when=timezone.now() - timedelta(hours=1))
    fit = _fit(study, started=timezone.now() - timedelta(minutes=1))
    _grade(r, values={"correctness": 1}, annotator=_user("second"))  # overlap, after the fit
    assert selector_for(study=study, fit=fit).selector.n_observed == 0


def test_a_fit_that_no_longer_matches_the_study_gives_uniform_picks(study):
    _all_cells(study)
    _fit(study)
    study.dimensions.filter(key="style").update(key="tone")
    pick = pick_cell(study=study, rng=np.random.default_rng(0))
    assert pick.policy == "uniform" and pick.fit_id is None


def test_status_is_open_while_verdicts_are_undecided(study):
    _fit(study)
    is_open, reason = selection_status(study=study)
    assert is_open
    assert "6 verdicts undecided" in reason


def test_status_closes_when_every_verdict_is_settled(study):
    verdicts = {(c, d): "go" for c in ("cand1", "cand2") for d in DIMS}
    verdicts[("cand2", "refusal")] = "no-go"
    _fit(study, verdicts=verdicts)
    assert selection_status(study=study) == (False, "every verdict is settled")


def test_settled_is_read_from_the_summary_the_dashboard_reads_not_from_stale_draws(study):
    """Regression: the queue looked for ``summary["candidates"][c]["dimensions"][d]``, a
    shape build_summary never wrote, found nothing and fell back to the draws reweighted
    by later labels, so it could say "settled" where the dashboard said "undecided" and
    the reverse. Here the draws (gap 0, both arms at 0.7) leave every verdict open, and the
    dashboard shows every verdict settled: the queue must close."""
    from calibration.dashboards import decision_matrix

    verdicts = {(c, d): "go" for c in ("cand1", "cand2") for d in DIMS}
    fit = _fit(study, verdicts=verdicts)
    ctx = selector_for(study=study, fit=fit)
    assert (ctx.selector.verdicts() == "undecided").any()  # the draws alone: still open
    matrix = decision_matrix(fit)
    assert all(c["verdict"] == "go" for row in matrix["rows"] for c in row["cells"])
    assert selection_status(study=study) == (False, "every verdict is settled")
    # And the selector is told the same: nothing open, so no cell is worth a label.
    assert not ctx.selector.undecided.any()


def test_an_untrustworthy_fit_cannot_close_the_study(study):
    verdicts = {(c, d): "go" for c in ("cand1", "cand2") for d in DIMS}
    _fit(study, verdicts=verdicts, trustworthy=False)
    assert selection_status(study=study)[0] is True


def test_status_closes_when_the_budget_is_spent(study):
    study.label_budget = 2
    study.save()
    responses = _responses(study, {("inc", "eu", "0.0.0"): 3})
    _grade(responses[0], values={"correctness": 1})
    assert selection_status(study=study)[0] is True
    _grade(responses[1], values={"correctness": 0})
    assert selection_status(study=study) == (False, "the label budget is spent")


def test_selector_matches_the_pure_scores_on_the_same_draws(study):
    fit = _fit(study)
    ctx = selector_for(study=study, fit=fit)
    pure = Selector(
        dimensions=[
            DimensionDraws.from_fit(_draws(n_bins=2, seed=1), margin=0.02),
            DimensionDraws.from_fit(_draws(n_bins=2, seed=2), margin=0.02),
            DimensionDraws.from_fit(_draws(n_bins=5, seed=3), margin=0.02),
        ],
        traffic=np.array([0.6, 0.4]),
        confidence=0.95,
    )
    for got, want in zip(ctx.selector.tables(), pure.tables(), strict=True):
        # Stored draws are float32.
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-9)


def test_a_newer_fit_replaces_the_cached_draws_of_its_study(study):
    """The process keeps one fit's draws (and their per-cell tables) per study, not one per fit."""
    from calibration import selection

    other = make_study(slug="sel-other", candidates=2)
    kept = _fit(other)
    assert selector_for(study=other, fit=kept) is not None
    old = _fit(study)
    assert selector_for(study=study, fit=old) is not None
    new = _fit(study, started=timezone.now())
    ctx = selector_for(study=study, fit=new)
    assert ctx is not None
    for cache in (selection._static_cache, selection._context_cache):
        fits_of = {k[1] for k in cache if k[0] == study.pk}
        assert fits_of == {new.pk}
        assert kept.pk in {k[1] for k in cache if k[0] == other.pk}


def test_the_selector_uses_the_strictest_per_candidate_boundary_of_the_summary(study):
    """A candidate's own boundary (its information fraction) is stricter than the study-wide
    n/N one: with the laxer one the selector would think verdicts settled that the
    dashboard shows open, and stop sending them grades."""
    fit = _fit(study)
    summary = fit.summary
    for i, cand in enumerate(summary["candidates"]):
        for d in cand["dimensions"]:
            d.update(fraction=0.1, required_z=5.0 + i)
    summary["candidates"][0]["dimensions"][0].update(verdict="go", required_z=99.0)  # settled
    Fit.objects.filter(pk=fit.pk).update(summary=summary)
    fit.refresh_from_db()
    assert selector_for(study=study, fit=fit).selector.required_z == 6.0
    summary["candidates"][1]["dimensions"][1]["required_z"] = None  # inf, stored as null
    Fit.objects.filter(pk=fit.pk).update(summary=summary)
    fit.refresh_from_db()
    forget_cell_totals()
    from calibration.selection import _context_cache, _static_cache

    _context_cache.clear()
    _static_cache.clear()
    assert selector_for(study=study, fit=fit).selector.required_z == float("inf")
