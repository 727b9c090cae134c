"""The lead's pages: overview (matrix, progress, live polling), pair page, annotators page;
and the view models behind them (recommendation, forecast, judge words, agreement)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from annotate.models import Study
from calibration import dashboards, services
from calibration.models import Fit
from calibration.templatetags.dashboard import pct
from tests.calibration.helpers import grade, populate
from tests.factories import PromptFactory, ResponseFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Both caches are keyed by fit id, and ids repeat across tests (each rolls back).
    cache.clear()
    services._draws_cache.clear()
    yield
    cache.clear()


@pytest.fixture
def fitted(study, fake_fitter):
    populate(study, prompts_per_region=10, graded_share=0.5, annotators=2)
    return services.run_fit(fit_id=services.request_fit(study=study, trigger="manual").pk)


def page(study, name="calibration-study", **kw):
    return reverse(name, kwargs={"slug": study.slug, **kw})


def newer_fit(fit: Fit, **changes) -> Fit:
    """A copy of a succeeded fit that finished later (what a worker landing a fit does)."""
    copy = Fit.objects.get(pk=fit.pk)
    copy.pk = None
    copy.finished_at = timezone.now()
    for k, v in changes.items():
        setattr(copy, k, v)
    copy.save()
    return copy


# --- permissions ------------------------------------------------------------------------

LEAD_PAGES = ["calibration-pair", "calibration-annotators", "calibration-report",
              "calibration-draws"]  # fmt: skip


def _url(study, name):
    return page(study, name, arm="cand1") if name == "calibration-pair" else page(study, name)


def test_annotators_and_outsiders_cannot_open_the_lead_pages(client, study, fitted, annotator,
                                                             outsider):  # fmt: skip
    for name in LEAD_PAGES:
        client.force_login(annotator)
        assert client.get(_url(study, name)).status_code == 403, name
        client.force_login(outsider)
        assert client.get(_url(study, name)).status_code == 404, name


def test_leads_admins_and_superusers_open_the_lead_pages(client, study, fitted, lead, admin_user):
    root = UserFactory(username="root", is_superuser=True)
    for user in (lead, admin_user, root):
        client.force_login(user)
        for name in LEAD_PAGES:
            assert client.get(_url(study, name)).status_code == 200, (user, name)


def test_annotator_opening_the_overview_goes_to_grading(client, study, fitted, annotator):
    client.force_login(annotator)
    r = client.get(page(study))
    assert r.status_code == 302 and r.url == page(study, "annotate-study-home")


# --- overview -----------------------------------------------------------------------------


def test_overview_shows_the_matrix_of_candidates_by_dimensions(client, study, lead, fitted):
    client.force_login(lead)
    html = client.get(page(study)).content.decode()
    matrix = html[html.index('class="decision-matrix"') : html.index("</table>")]
    rows = re.findall(r"<tr>\s*<th scope=\"row\">(.*?)</tr>", matrix, flags=re.S)
    assert len(rows) == 2 and "nova-1" in rows[0] and "nova-2" in rows[1]
    for row, cand in zip(rows, fitted.summary["candidates"], strict=True):
        cells = re.findall(r'data-dimension="([^"]+)"', row)
        assert cells == ["correctness", "refusal", "style"]
        for d in cand["dimensions"]:
            assert f"cell-{d['verdict']}" in row
    assert html.count('class="cell cell-') == 2 * 4  # overall + 3 dimensions per candidate
    assert "P(Δ &gt; −2.0)" in html and "Recommendation" in html
    assert f"fit {fitted.number}" in html.lower() and "Refit now" in html and "Diagnostics" in html


def test_matrix_cells_carry_the_summary_numbers(study, fitted):
    m = dashboards.decision_matrix(fitted)
    cell = m["rows"][0]["cells"][0]
    src = fitted.summary["candidates"][0]["dimensions"][0]
    assert cell["verdict"] == src["verdict"]
    assert (cell["mean"], cell["lower"], cell["upper"]) == (src["mean"], src["lower"], src["upper"])
    assert cell["p_noninferior"] == src["p_noninferior"]


def test_the_bar_says_the_probability_the_rule_needs_now():
    assert dashboards.bar({"required_p": 0.9962, "fraction": 0.03}) == (
        "needs 99.6% at 3% of the budget"
    )
    assert dashboards.bar({"required_p": 0.975, "fraction": 1.0}) == "needs 97.5% at the budget"
    assert dashboards.bar({"required_p": 1.0, "fraction": 0.0}).startswith("no verdict until")
    assert dashboards.bar({"final": True}) == "final: the budget was reached"
    assert dashboards.bar({"p_noninferior": 0.9}) is None  # a summary from before the bar


def test_overview_pair_page_and_report_state_the_bar_beside_the_probability(
    client, study, lead, fitted
):
    from statistics import NormalDist

    src = fitted.summary["candidates"][0]["dimensions"][0]
    # Per candidate: its own arm's and the incumbent's grades, not the study-wide count.
    counts = fitted.summary["arm_labels"]
    n_inc, n_c = counts["inc"], counts["cand1"]
    t = 4 * n_inc * n_c / (study.label_budget * (n_inc + n_c))
    assert src["fraction"] == pytest.approx(min(t, 1.0))
    assert src["required_p"] == pytest.approx(NormalDist().cdf(src["required_z"]))
    client.force_login(lead)
    want = dashboards.bar(src)
    assert want and want.startswith("needs ")
    for url in (page(study), page(study, "calibration-pair", arm="cand1"),
                page(study, "calibration-report")):  # fmt: skip
        assert want in client.get(url).content.decode(), url


def test_recommendation_in_plain_words():
    rows = [
        {"model_name": "nova-1", "verdict": "go", "undecided": [], "no_go": []},
        {"model_name": "nova-2", "verdict": "undecided", "undecided": ["Style"], "no_go": []},
    ]
    r = dashboards.recommendation(rows, incumbent="acme", confidence=0.95, trustworthy=True)
    assert r["level"] == "go" and r["text"].startswith("nova-1 can replace acme")
    r = dashboards.recommendation(rows[1:], incumbent="acme", confidence=0.95, trustworthy=True)
    assert r["level"] == "undecided" and "nova-2 on Style" in r["text"]
    nogo = [{"model_name": "nova-1", "verdict": "no-go", "undecided": [], "no_go": ["Style"]}]
    r = dashboards.recommendation(nogo, incumbent="acme", confidence=0.95, trustworthy=True)
    assert r["level"] == "no-go" and r["text"].startswith("Keep acme")
    r = dashboards.recommendation(rows, incumbent="acme", confidence=0.95, trustworthy=False)
    assert r["text"].startswith("Do not act")


def test_untrustworthy_fit_says_so_with_what_failed(client, study, lead, fake_fitter):
    fake_fitter.ok = False
    populate(study, prompts_per_region=5, graded_share=0.5)
    services.run_fit(fit_id=services.request_fit(study=study, trigger="manual").pk)
    client.force_login(lead)
    html = client.get(page(study)).content.decode()
    assert "Untrustworthy fit" in html and "Do not act" in html
    assert "the chains disagree" in html


def test_a_failed_fit_says_whether_more_grades_will_cure_it(client, study, lead, fake_fitter):
    fake_fitter.ok = False
    populate(study, prompts_per_region=5, graded_share=0.5)
    fit = services.run_fit(fit_id=services.request_fit(study=study, trigger="manual").pk)
    assert fit.n_labels < dashboards.FEW_GRADES
    client.force_login(lead)
    html = client.get(page(study)).content.decode()
    assert "most likely the grades being few" in html
    assert f"the next fit runs after {study.refit_every} more" in html
    assert "Refit once" not in html

    many = newer_fit(fit, n_labels=dashboards.FEW_GRADES)
    advice = dashboards.fit_advice(many, dashboards.fit_health(many, {}))
    assert advice is not None
    assert "something in this study is unusual" in advice
    assert f"report fit {many.number} (seed {many.seed})" in advice
    html = client.get(page(study)).content.decode()
    assert "Refit once" in html and "grades being few" not in html


def test_a_fit_that_passed_needs_no_advice(study, fitted):
    assert dashboards.fit_advice(fitted, dashboards.fit_health(fitted, {})) is None


def _health_with(fitted, **extra):
    """The diagnostics table's rows after adding ``extra`` to the first dimension's."""
    key = next(iter(fitted.diagnostics))
    diagnostics = {k: dict(v) for k, v in fitted.diagnostics.items()}
    diagnostics[key].update(extra)
    Fit.objects.filter(pk=fitted.pk).update(diagnostics=diagnostics)
    fitted.refresh_from_db()
    return key, {r["key"]: r for r in dashboards.fit_health(fitted, {})}


def test_a_topped_up_dimension_says_how_many_chains_and_the_first_runs_ess(client, study, lead,
                                                                         fitted):  # fmt: skip
    key, rows = _health_with(fitted, top_ups=1.0, chains=5.0, min_ess_bulk_first=312.0)
    assert rows[key]["topped_up"] == "5 chains in all; the first run's ESS was 312"
    assert all(not r["topped_up"] for k, r in rows.items() if k != key)
    client.force_login(lead)
    html = client.get(page(study)).content.decode()
    assert "5 chains in all; the first run&#x27;s ESS was 312" in html


def test_a_retried_dimension_says_it_was_sampled_again_and_why(client, study, lead, fitted):
    key, rows = _health_with(fitted, retries=1.0, divergences_first=11.0, target_accept=0.97)
    expected = "sampled again with smaller steps: the first run had 11 divergent transitions"
    assert rows[key]["retried"] == expected
    assert all(not r["retried"] for k, r in rows.items() if k != key)
    client.force_login(lead)
    assert expected in client.get(page(study)).content.decode()


def test_overview_counts_labels_per_arm_and_region_and_active_annotators(client, study, lead,
                                                                        annotator):  # fmt: skip
    region = study.regions.order_by("position").first()
    prompt = PromptFactory(study=study, region=region, external_id="x1")
    dims = dict.fromkeys(study.dimensions.filter(scale="binary"), 1)
    for arm in study.arms.all()[:2]:
        grade(ResponseFactory(prompt=prompt, arm=arm), annotator, dims)
    progress = dashboards.label_progress(study)
    assert progress["used"] == 2 and progress["by_arm"][0]["cells"] == [1, 0]
    assert progress["by_region"] == [2, 0] and progress["active"] == ["charlie"]
    assert [d["n"] for d in progress["by_dimension"]] == [2, 2, 0]
    client.force_login(lead)
    html = client.get(page(study)).content.decode()
    assert "<strong>2</strong> of 1000 labels used" in html and "charlie" in html


# --- live updates ---------------------------------------------------------------------------


def test_decision_poll_answers_204_while_the_shown_fit_is_the_latest(client, study, lead, fitted):
    client.force_login(lead)
    r = client.get(
        page(study), {"part": "decision", "shown": fitted.pk}, headers={"HX-Request": "true"}
    )
    assert r.status_code == 204


def test_decision_poll_swaps_the_matrix_once_a_newer_fit_landed(client, study, lead, fitted):
    summary = fitted.summary
    summary["candidates"][0]["verdict"] = "go"
    newer = newer_fit(fitted, summary=summary, n_labels=fitted.n_labels + 20)
    client.force_login(lead)
    r = client.get(
        page(study), {"part": "decision", "shown": fitted.pk}, headers={"HX-Request": "true"}
    )
    html = r.content.decode()
    assert r.status_code == 200 and html.lstrip().startswith('<section id="decision"')
    assert f"shown={newer.pk}" in html and f"{newer.n_labels} graded responses" in html
    assert "<html" not in html


def test_polling_stops_once_the_study_is_decided(client, study, lead, fitted):
    Study.objects.filter(pk=study.pk).update(status=Study.Status.DECIDED)
    client.force_login(lead)
    for part in ("decision", "progress"):
        r = client.get(page(study), {"part": part, "shown": ""}, headers={"HX-Request": "true"})
        assert r.status_code == 286
    html = client.get(page(study)).content.decode()
    assert 'hx-trigger="every 5s"' not in html


def test_progress_poll_renders_the_progress_fragment(client, study, lead, fitted):
    client.force_login(lead)
    r = client.get(page(study), {"part": "progress"}, headers={"HX-Request": "true"})
    html = r.content.decode()
    assert r.status_code == 200 and html.lstrip().startswith('<section id="progress"')
    assert 'hx-trigger="every 5s"' in html and "labels used" in html


# --- pair page -----------------------------------------------------------------------------


def test_pair_page_has_every_chart_of_every_dimension(client, study, lead, fitted):
    client.force_login(lead)
    html = client.get(page(study, "calibration-pair", arm="cand1")).content.decode()
    for dim in ("correctness", "refusal", "style"):
        for chart in ("density", "forest", "judge"):
            assert f'id="chart-{dim}-{chart}"' in html
            # (the site's CSP adds a nonce attribute after the id)
            assert f'<script type="application/json" id="chart-{dim}-{chart}-spec"' in html
    assert "/static/plotly/plotly.min.js" in html and "baton/dashboard.js" in html
    assert "nova-1" in html and "Judge only" in html and "The judge passes nova-1" in html
    # The page's own scripts are files: nothing inline that a strict CSP would block.
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag or "nonce=" in tag, tag


def test_pair_page_and_report_state_the_forecast_of_each_undecided_cell(
    client, study, lead, fitted
):
    client.force_login(lead)
    pair = dashboards.pair_data(study, fitted, "cand1")
    open_ = [d for d in pair["dimensions"] if d["forecast"]]
    assert open_, "the fixture's fit leaves some verdict undecided"
    html = client.get(page(study, "calibration-pair", arm="cand1")).content.decode()
    report = client.get(page(study, "calibration-report")).content.decode()
    for d in open_:
        f = d["forecast"]
        assert f["every"] == study.refit_every and f["left"] == study.label_budget - fitted.n_labels
        said = f"Chance of a verdict within the budget ({f['left']} graded responses left"
        assert said in html and f"<strong>{pct(f['p_within'])}</strong> if Δ is where" in html
        low = pct(f["p_at_margin"])
        assert f"<strong>{low}</strong> if Δ\n        sits exactly on the margin" in html
        short = (
            f"Chance of a verdict within the budget ({f['left']} left): {pct(f['p_within'])} "
            f"if Δ is where the evidence puts it, {low} if it sits exactly on the margin"
        )
        assert short in report


def test_pair_page_shows_the_history_once_there_are_two_fits(client, study, lead, fitted):
    newer_fit(fitted, n_labels=fitted.n_labels + 30)
    client.force_login(lead)
    html = client.get(page(study, "calibration-pair", arm="cand1")).content.decode()
    assert 'id="chart-correctness-history"' in html


def test_pair_page_of_the_incumbent_or_an_unknown_arm_is_404(client, study, lead, fitted):
    client.force_login(lead)
    assert client.get(page(study, "calibration-pair", arm="inc")).status_code == 404
    assert client.get(page(study, "calibration-pair", arm="nope")).status_code == 404


def test_pair_page_without_a_fit_says_so(client, study, lead):
    client.force_login(lead)
    html = client.get(page(study, "calibration-pair", arm="cand1")).content.decode()
    assert "No posterior yet" in html


def test_pair_data_delta_draws_match_the_summary(study, fitted):
    data = dashboards.pair_data(study, fitted, "cand1")
    for dim, src in zip(data["dimensions"], fitted.summary["candidates"][0]["dimensions"],
                        strict=True):  # fmt: skip
        assert dim["delta_draws"].mean() == pytest.approx(src["mean"], abs=1e-6)
        assert np.quantile(dim["delta_draws"], 0.025) == pytest.approx(src["lower"], abs=1e-6)


# --- judge words and the forecast -----------------------------------------------------------


def test_judge_comparison_says_how_much_more_often_it_passes_failures():
    rng = np.random.default_rng(0)
    s = 2000
    conf = np.zeros((s, 2, 2, 2))
    fp = np.stack([rng.normal(0.10, 0.01, s), rng.normal(0.24, 0.01, s)], axis=1)
    tp = np.stack([rng.normal(0.90, 0.01, s), rng.normal(0.90, 0.01, s)], axis=1)
    conf[:, :, 0, 1], conf[:, :, 0, 0] = fp, 1 - fp
    conf[:, :, 1, 1], conf[:, :, 1, 0] = tp, 1 - tp
    words = dashboards.judge_comparison(conf, candidate=1, incumbent=0, names=("orion", "nimbus"))
    assert words["failures"]["text"] == (
        "The judge passes nimbus's failures 14 points more often than orion's (probability 100%)."
    )
    assert words["pass_given_fail"][1][0] == pytest.approx(0.24, abs=0.005)
    assert 0.3 < words["passes"]["probability"] < 0.7  # no real difference on passes


def _forecast(draws, **kw):
    args = {"margin": 0.02, "confidence": 0.95, "n_labels": 100, "budget": 1000, "every": 50}
    return dashboards.settle_forecast(draws, **(args | kw))


def test_forecast_is_likely_far_from_the_margin_and_unlikely_on_it():
    rng = np.random.default_rng(0)
    far = _forecast(rng.normal(0.03, 0.02, 2000))
    on = _forecast(rng.normal(-0.02, 0.02, 2000))
    assert far["p_within"] > 0.8 and far["p_go"] > 0.95 * far["p_within"]
    assert far["median"] is not None and far["lambda_source"] == "current"
    assert on["p_within"] < far["p_within"] - 0.3
    assert on["p_within"] == pytest.approx(on["p_go"] + on["p_nogo"])
    assert far["grid"][-1] == 900 and far["grid"][:2] == [50, 100]  # a look per fit, to the budget


def test_forecast_reads_the_boundary_in_force():
    """A re-plan's stricter level makes a verdict less likely; a frozen side never settles."""
    rng = np.random.default_rng(1)
    draws = rng.normal(0.0, 0.015, 2000)
    plan = _forecast(draws)
    stricter = _forecast(draws, levels=(2.5, 2.5))
    frozen_go = _forecast(draws, levels=(math.inf, 1.96))
    assert stricter["p_within"] < plan["p_within"]
    assert frozen_go["p_go"] == 0 and frozen_go["p_nogo"] > 0


def test_boundary_levels_recover_the_design_from_a_summary_cell():
    from calibration.bayes.decision import Design

    base = Design.initial(0.95).level
    assert dashboards.boundary_levels({"fraction": 0.25, "required_z": 4.0,
                                       "required_z_nogo": 5.0}, 0.95) == (2.0, 2.5)  # fmt: skip
    assert dashboards.boundary_levels({"fraction": 0.5, "required_z": None,
                                       "required_z_nogo": 3.0}, 0.95)[0] == math.inf  # fmt: skip
    assert dashboards.boundary_levels({"fraction": 0.0, "required_z": None}, 0.95) == (base, base)
    assert dashboards.boundary_levels({"mean": 0.0}, 0.95) == (base, base)  # an old summary
    assert dashboards.boundary_levels({"fraction": 0.25, "required_z": 4.0}, 0.95) == (2.0, 2.0)


def test_a_forecast_past_the_labels_left_says_beyond_the_budget():
    rng = np.random.default_rng(1)
    f = _forecast(rng.normal(0.0, 0.02, 2000), n_labels=950)
    assert f["left"] == 50 and f["grid"] == [50]
    assert f["beyond"] and f["median"] is None and f["p_within"] < 0.5


def test_a_forecast_looks_at_most_max_forecast_looks_times():
    """A fit after every grade on a large budget: the page's simulation stays bounded."""
    f = _forecast(np.random.default_rng(3).normal(0.0, 0.02, 2000), budget=20_100, every=1)
    assert len(f["grid"]) <= dashboards.MAX_FORECAST_LOOKS + 1 and f["grid"][-1] == 20_000


def test_no_forecast_before_both_models_have_grades():
    f = _forecast(np.random.default_rng(2).normal(0.0, 0.02, 2000), fraction=0.0)
    assert f["p_within"] is None and f["grid"] == []


def _gaussian_forecasts(truths, seed: int):
    """(forecast, settled?) at every undecided look of Gaussian studies: the estimate after
    n grades is the mean of n draws N(truth, 0.3²), a fit every 50 of a 300 budget."""
    from calibration.bayes.decision import required_z

    rng = np.random.default_rng(seed)
    budget, sigma, margin, every = 300, 0.3, 0.02, 50
    out = []
    for truth in truths:
        cs = np.cumsum(rng.normal(truth, sigma, budget))
        z = {
            n: (cs[n - 1] / n + margin) / (sigma / n**0.5) for n in range(every, budget + 1, every)
        }
        settle = next((n for n in z if abs(z[n]) >= required_z(n, budget, 0.95)), None)
        for n in range(every, settle or budget, every):
            draws = rng.normal(cs[n - 1] / n, sigma / n**0.5, 500)
            f = _forecast(draws, n_labels=n, budget=budget, every=every, seed=n, sims=500)
            out.append((f["p_within"], settle is not None, f["close"], f["p_at_margin"]))
    return np.array(out)


def test_over_a_population_of_studies_the_forecast_comes_true_as_often_as_it_says():
    """The posterior predictive chance: pooled over studies whose Δ is spread over ±6
    margins, each decile's forecast and outcome agree within 10 points. It is exact for
    truths drawn from the (flat) prior; the narrower the population, the more it promises
    (over ±4 margins up to 10 points here). At a Δ fixed on the margin no forecast can
    agree (the same evidence settles elsewhere), and this one promises more than comes:
    the known limit the page states."""
    rng = np.random.default_rng(7)
    rows = _gaussian_forecasts(rng.uniform(-0.12, 0.12, 1500), seed=8)
    p, settled = rows[:, 0], rows[:, 1]
    filled = 0
    for lo in np.arange(0, 1, 0.1):
        sel = (p >= lo) & (p < lo + 0.1)
        if sel.sum() >= 40:
            filled += 1
            assert abs(p[sel].mean() - settled[sel].mean()) <= 0.10, lo
    assert filled >= 8
    at_margin = _gaussian_forecasts(np.full(150, -0.02), seed=9)
    assert at_margin[:, 0].mean() > at_margin[:, 1].mean() + 0.1


def test_the_chance_with_delta_on_the_margin_comes_true_where_delta_is_there():
    """Beside the predictive chance the page gives the chance if Δ is exactly on the margin,
    and says to expect it for a close call (the margin in Δ's 80% interval): over close calls
    of studies whose Δ is there, it agrees with what happens (within 5 points), where the
    predictive chance promises far more."""
    rows = _gaussian_forecasts(np.full(300, -0.02), seed=10)
    close = rows[rows[:, 2] == 1]
    assert len(close) > 0.6 * len(rows)
    assert abs(close[:, 3].mean() - close[:, 1].mean()) <= 0.05
    assert close[:, 0].mean() > close[:, 1].mean() + 0.1
    rng = np.random.default_rng(0)
    far = _forecast(rng.normal(0.03, 0.01, 2000))
    assert not far["close"] and far["p_at_margin"] < far["p_within"]


def test_forecast_uses_the_measured_information_per_label_when_history_allows():
    rng = np.random.default_rng(0)
    n = np.array([50, 100, 200])
    sd = 1 / np.sqrt(1000 + 10 * n)  # precision grows by 10 per label
    out = _forecast(rng.normal(0.0, sd[-1], 2000), n_labels=200, history_n=n, history_sd=sd)
    assert out["lambda_source"] == "history" and out["lambda"] == pytest.approx(10.0)


# --- annotators -----------------------------------------------------------------------------


def test_annotator_stats_on_the_overlap(study):
    a, b = UserFactory(username="ann"), UserFactory(username="ben")
    region = study.regions.first()
    binary = list(study.dimensions.filter(scale="binary"))
    arm = study.incumbent
    # 8 responses graded by both on two binary dimensions: they disagree on one item.
    for i in range(8):
        r = ResponseFactory(prompt=PromptFactory(study=study, region=region, external_id=f"o{i}"),
                            arm=arm)  # fmt: skip
        grade(r, a, {binary[0]: i % 2, binary[1]: 1}, time_spent_ms=4000)
        grade(r, b, {binary[0]: i % 2 if i else 1, binary[1]: 1}, time_spent_ms=6000)
    stats = dashboards.annotator_stats(study)
    (pair,) = stats["pairs"]
    assert pair["items"] == 16 and pair["agreement"] == pytest.approx(15 / 16)
    x = [i % 2 for i in range(8)] + [1] * 8
    y = [i % 2 if i else 1 for i in range(8)] + [1] * 8
    from calibration.agreement import cohen_kappa

    assert pair["kappa"] == pytest.approx(cohen_kappa(x, y))
    correctness = stats["dimensions"][0]
    assert correctness["items"] == 8 and correctness["alpha"] < 1
    people = {p["username"]: p for p in stats["annotators"]}
    assert people["ann"]["graded"] == 8 and people["ann"]["median_seconds"] == 4.0
    assert people["ben"]["per_hour"] == pytest.approx(8 / (8 * 6 / 3600))
    assert people["ann"]["consensus"] == pytest.approx(15 / 16)


def test_annotators_page_lists_agreement(client, study, lead, fitted):
    client.force_login(lead)
    html = client.get(page(study, "calibration-annotators")).content.decode()
    assert "Krippendorff" in html and "Cohen" in html and f"{study.slug}-grader0" in html


def test_refit_button_queues_a_fit_and_the_page_follows_it(
    client, study, lead, fitted, django_capture_on_commit_callbacks
):
    client.force_login(lead)
    with django_capture_on_commit_callbacks():
        r = client.post(page(study, "calibration-refit"))
    queued = Fit.objects.get(status="queued")
    html = client.get(r.url).content.decode()
    assert f"Fit {queued.number} is queued" in html and "updates by itself" in html


def test_grades_past_the_budget_never_flip_a_verdict(study, fitted):
    """Once a fit has seen the budget, later fits report its verdicts (decision docstring)."""
    study.label_budget = fitted.n_labels
    study.save(update_fields=["label_budget"])
    at_budget = services.run_fit(fit_id=services.request_fit(study=study, trigger="manual").pk)
    summary = at_budget.summary
    summary["candidates"][0]["dimensions"][0]["verdict"] = "no-go"  # what the budget said
    Fit.objects.filter(pk=at_budget.pk).update(summary=summary)
    later = services.run_fit(fit_id=services.request_fit(study=study, trigger="manual").pk)
    cell = later.summary["candidates"][0]["dimensions"][0]
    assert cell["verdict"] == "no-go" and cell["final"] is True
    assert later.summary["candidates"][0]["verdict"] == "no-go"
    assert dashboards.bar(cell) == "final: the budget was reached"


def test_the_forecast_settles_a_simulated_look_as_the_verdicts_would(monkeypatch):
    """Every simulated look of the forecast is read by the summary's rule and boundary."""
    from calibration.bayes.decision import Design, summarise_delta

    looks = []
    real = dashboards.sequential_sides

    def spy(z, required, required_nogo=None):
        looks.append((np.array(z), required, required_nogo))
        return real(z, required, required_nogo)

    monkeypatch.setattr(dashboards, "sequential_sides", spy)
    rng = np.random.default_rng(3)
    draws = rng.normal(0.0, 0.02, 2000)
    n, t = 200, 0.1
    design = (Design(q=1.96, t_anchor=0.05, w_anchor=0.4), Design(q=2.2))
    out = dashboards.settle_forecast(
        draws, margin=0.02, confidence=0.95, n_labels=n, budget=10_000, every=400, fraction=t,
        levels=(design[0].level, design[1].level), sims=200,
    )  # fmt: skip
    # Two simulations, each reading every look: the predictive one, then Δ on the margin.
    assert len(looks) == 2 * len(out["grid"]) and out["grid"][0] == 400
    looks = looks[: len(out["grid"])]
    unit = rng.standard_normal(100)
    unit = np.concatenate([unit, -unit])  # symmetric: no skew for the rule to correct
    unit = unit / unit.std()
    shown, first = set(), np.full(200, "undecided", dtype=object)
    for k, (z_k, bound, bound_nogo) in zip(out["grid"], looks, strict=True):
        grown = min(t * (n + k) / n, 1.0)
        assert bound == pytest.approx(design[0].required_z(grown))
        assert bound_nogo == pytest.approx(design[1].required_z(grown))
        # Each simulated look as draws whose standardised distance to the margin is its z.
        verdicts = [
            summarise_delta(
                unit + z - 0.02, margin=0.02, confidence=0.95, fraction=grown, design=design
            ).verdict  # fmt: skip
            for z in z_k
        ]
        open_ = first == "undecided"
        first[open_] = np.array(verdicts, dtype=object)[open_]
        shown.update(verdicts)
    assert shown == {"go", "no-go", "undecided"}
    assert out["p_within"] == pytest.approx(np.mean(first != "undecided"))
    assert out["p_go"] == pytest.approx(np.mean(first == "go"))
