"""The annotator's grading pages through the Django test client (annotate/grading/views.py)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotate.grading.views import MAX_TIME_SPENT_MS
from annotate.models import Annotation, Assignment, Response, Study
from tests.factories import MembershipFactory, PromptFactory, UserFactory
from tests.scores import scores_of

pytestmark = pytest.mark.django_db

LABELS = {"label-correctness": "1", "label-refusal": "0", "label-style": "4"}
JUDGE_VALUE = "0.8731"
SECRETS = (
    "acme-large-1",
    "nova-1",
    "nova-2",
    "cand1",
    "cand2",
    "incumbent",
    "candidate",
    JUDGE_VALUE,
    "judge-gpt-x",
    "metadata-secret",
    "policy",
)
HTMX = {"HTTP_HX_REQUEST": "true"}


def add_items(study: Study, n: int, *, text: str = "Answer {i}.") -> list[Response]:
    """n responses over the study's arms, each with a judge score on every dimension."""
    arms = list(study.arms.all())
    regions = list(study.regions.all())
    dimensions = list(study.dimensions.all())
    out = []
    for i in range(n):
        region = regions[i % len(regions)]
        prompt = PromptFactory(
            study=study,
            region=region,
            external_id=f"ext-{study.pk}-{i}",
            text=f"Question number {i}?",
            metadata={"source": "metadata-secret"},
        )
        response = Response.objects.create(
            prompt=prompt,
            arm=arms[i % len(arms)],
            study=study,
            region=region,
            text=text.format(i=i),
            metadata={"model": "metadata-secret"},
            cell="1.1.3",
            scores=scores_of(dict.fromkeys(dimensions, float(JUDGE_VALUE)), "judge-gpt-x"),
        )
        out.append(response)
    return out


@pytest.fixture
def items(study):
    Study.objects.filter(pk=study.pk).update(overlap_share=0)
    return add_items(study, 6)


@pytest.fixture
def grader(client, annotator):
    client.force_login(annotator)
    return client


def grade_url(study: Study) -> str:
    return reverse("annotate-grade", args=[study.slug])


def open_assignment(study: Study, user) -> Assignment:
    """The item the annotator is on: their latest open lease (what next_item re-serves)."""
    return (
        Assignment.objects.filter(study=study, annotator=user, completed_at__isnull=True)
        .order_by("-leased_at", "-id")
        .first()
    )


def form_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'name="(client_key|annotation_id)" value="([^"]+)"', html))


def submit(client, study, assignment, *, extra=None, htmx=False, **fields):
    data = {"client_key": str(uuid.uuid4()), "time_spent_ms": "4200", **LABELS, **fields}
    url = reverse("annotate-grade-submit", args=[study.slug, assignment.pk])
    return client.post(url, data, **(HTMX if htmx else {}), **(extra or {}))


# --------------------------------------------------------------------------- home pages


def test_annotator_home_lists_their_studies_with_progress_and_a_start_button(grader, study, items):
    html = grader.get(reverse("home")).content.decode()
    assert study.name in html
    assert "Start grading" in html
    assert reverse("annotate-grade", args=[study.slug]) in html
    assert re.search(r"<dt[^>]*>Left in the study</dt><dd>6</dd>", html)


def test_annotator_home_counts_todays_and_total_grades(grader, study, annotator, items):
    grader.get(grade_url(study))
    submit(grader, study, open_assignment(study, annotator))
    html = grader.get(reverse("home")).content.decode()
    assert re.search(r"<dt>Today</dt><dd>1</dd>", html)
    assert re.search(r"<dt>Total</dt><dd>1</dd>", html)
    assert re.search(r"<dt[^>]*>Left in the study</dt><dd>5</dd>", html)
    assert "Continue grading" in html


def test_study_home_shows_the_rubric_and_a_start_button(grader, study, items):
    response = grader.get(reverse("annotate-study-home", args=[study.slug]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Style adherence" in html and "Exemplary" in html
    assert grade_url(study) in html


# --------------------------------------------------------------------------- the item


def test_grading_page_shows_prompt_response_region_and_a_rubric_per_dimension(
    grader, study, annotator, items
):
    response = grader.get(grade_url(study))
    html = response.content.decode()
    assignment = open_assignment(study, annotator)
    served = assignment.response
    assert response.status_code == 200
    assert served.prompt.text in html and served.text in html
    assert served.region.name in html
    assert html.count('<fieldset class="dim') == 3
    assert '<legend><span class="dim-n" aria-hidden="true">1</span> Correctness</legend>' in html
    assert 'name="label-correctness" value="1"' in html
    assert 'name="label-correctness" value="0"' in html
    for value in range(1, 6):
        assert f'name="label-style" value="{value}"' in html
    assert "Exemplary" in html
    assert reverse("annotate-grade-submit", args=[study.slug, assignment.pk]) in html
    uuid.UUID(form_fields(html)["client_key"])
    assert 'aria-live="polite"' in html


def test_reloading_the_page_serves_the_same_item_with_a_fresh_client_key(
    grader, study, annotator, items
):
    first = grader.get(grade_url(study)).content.decode()
    second = grader.get(grade_url(study)).content.decode()
    assert Assignment.objects.filter(annotator=annotator).count() == 1
    assert form_fields(first)["client_key"] != form_fields(second)["client_key"]


def test_htmx_request_gets_only_the_item_partial(grader, study, items):
    html = grader.get(grade_url(study), **HTMX).content.decode()
    assert "<html" not in html
    assert '<section id="item"' in html


def test_annotator_cannot_see_model_names_arms_or_judge_scores(grader, study, annotator, items):
    pages = [
        grader.get(reverse("home")).content.decode(),
        grader.get(reverse("annotate-study-home", args=[study.slug])).content.decode(),
        grader.get(grade_url(study)).content.decode(),
        grader.get(grade_url(study), **HTMX).content.decode(),
        submit(grader, study, open_assignment(study, annotator), htmx=True).content.decode(),
    ]
    for html in pages:
        lowered = html.lower()
        for secret in SECRETS:
            assert secret.lower() not in lowered, secret


def test_urls_carry_assignment_ids_never_response_ids(grader, study, annotator, items):
    # Give responses and assignments different id ranges so a leak would show.
    Assignment.objects.all().delete()
    html = grader.get(grade_url(study)).content.decode()
    assignment = open_assignment(study, annotator)
    ids = set(re.findall(r"/grade/(\d+)/", html))
    assert ids == {str(assignment.pk)}


def test_html_in_a_response_is_shown_escaped(grader, study):
    Study.objects.filter(pk=study.pk).update(overlap_share=0)
    add_items(study, 1, text='<script>window.__pwned = 1</script><img src=x onerror="alert(1)">')
    html = grader.get(grade_url(study)).content.decode()
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert "<script>window.__pwned" not in html
    assert "<img src=x" not in html


# --------------------------------------------------------------------------- submitting


def test_submit_without_javascript_records_the_labels_and_redirects(
    grader, study, annotator, items
):
    grader.get(grade_url(study))
    assignment = open_assignment(study, annotator)
    response = submit(grader, study, assignment, comment="  fine  ")
    assert response.status_code == 302 and response["Location"] == grade_url(study)
    annotation = Annotation.objects.get(annotator=annotator)
    assert annotation.response_id == assignment.response_id
    assert annotation.comment == "fine"
    assert annotation.time_spent_ms == 4200
    assert {lab.dimension.key: lab.value for lab in annotation.labels.all()} == {
        "correctness": 1,
        "refusal": 0,
        "style": 4,
    }
    page = grader.get(grade_url(study)).content.decode()
    assert "Saved." in page


def test_submit_with_htmx_swaps_in_the_next_item_and_announces_it(grader, study, annotator, items):
    grader.get(grade_url(study))
    first = open_assignment(study, annotator)
    response = submit(grader, study, first, htmx=True)
    html = response.content.decode()
    second = open_assignment(study, annotator)
    assert response.status_code == 200
    assert second.pk != first.pk
    assert "<html" not in html
    assert f'data-assignment="{second.pk}"' in html
    assert 'id="grade-status" hx-swap-oob="innerHTML"' in html and "Saved." in html
    assert 'id="undo-form"' in html


def test_a_retried_submission_with_the_same_client_key_counts_once(grader, study, annotator, items):
    grader.get(grade_url(study))
    assignment = open_assignment(study, annotator)
    key = str(uuid.uuid4())
    submit(grader, study, assignment, htmx=True, client_key=key)
    again = submit(grader, study, assignment, htmx=True, client_key=key)
    assert again.status_code == 200
    assert "Already saved" in again.content.decode()
    assert Annotation.objects.filter(annotator=annotator).count() == 1


def test_a_missing_grade_shows_the_item_again_with_its_values_and_client_key(
    grader, study, annotator, items
):
    grader.get(grade_url(study))
    assignment = open_assignment(study, annotator)
    key = str(uuid.uuid4())
    url = reverse("annotate-grade-submit", args=[study.slug, assignment.pk])
    data = {"client_key": key, "label-correctness": "0", "comment": "half done"}
    response = grader.post(url, data)
    html = response.content.decode()
    assert response.status_code == 422
    assert "Pick a grade for Style adherence." in html
    assert form_fields(html)["client_key"] == key
    assert 'name="label-correctness" value="0" data-key="0" required checked' in html
    assert "half done" in html
    assert not Annotation.objects.exists()
    # htmx does not swap 4xx, so it gets the same form with a 200.
    assert grader.post(url, data, **HTMX).status_code == 200


def test_a_grade_off_the_scale_is_refused(grader, study, annotator, items):
    grader.get(grade_url(study))
    response = submit(grader, study, open_assignment(study, annotator), **{"label-style": "9"})
    assert response.status_code == 422
    assert "9 is not a grade for Style adherence." in response.content.decode()


def test_the_status_names_each_error_once(grader, study, annotator, items):
    study.dimensions.filter(key="refusal").update(title="Correctness")
    grader.get(grade_url(study))
    missing = {"label-correctness": "", "label-refusal": ""}
    response = submit(grader, study, open_assignment(study, annotator), **missing)
    assert response.status_code == 422
    assert "Not saved: Pick a grade for Correctness.</span>" in response.content.decode()


def test_time_spent_is_clamped_to_sane_bounds(grader, study, annotator, items):
    grader.get(grade_url(study))
    submit(grader, study, open_assignment(study, annotator), time_spent_ms="99999999999")
    grader.get(grade_url(study))
    submit(grader, study, open_assignment(study, annotator), time_spent_ms="-5")
    grader.get(grade_url(study))
    submit(grader, study, open_assignment(study, annotator), time_spent_ms="inf")
    spent = sorted(Annotation.objects.values_list("time_spent_ms", flat=True))
    assert spent[0] == 0 and spent[2] == MAX_TIME_SPENT_MS
    assert 0 <= spent[1] < 60_000  # "inf" is no time: the time since the lease stands in


def test_a_flag_is_sent_with_the_grade_and_its_reason(grader, study, annotator, items):
    grader.get(grade_url(study))
    submit(grader, study, open_assignment(study, annotator), flag_choice="personal-data")
    annotation = Annotation.objects.get(annotator=annotator)
    assert annotation.flagged and annotation.flag_reason == "Contains personal data"
    assert annotation.labels.count() == 3


def test_a_flag_of_another_kind_needs_its_reason_typed(grader, study, annotator, items):
    grader.get(grade_url(study))
    assignment = open_assignment(study, annotator)
    response = submit(grader, study, assignment, flag_choice="other", flag_other=" ")
    assert response.status_code == 422
    assert "Say why you flag it." in response.content.decode()
    submit(grader, study, assignment, flag_choice="other", flag_other="Wrong language")
    assert Annotation.objects.get(annotator=annotator).flag_reason == "Wrong language"


# --------------------------------------------------------------------------- skip and undo


def test_skip_needs_a_reason(grader, study, annotator, items):
    grader.get(grade_url(study))
    assignment = open_assignment(study, annotator)
    url = reverse("annotate-grade-skip", args=[study.slug, assignment.pk])
    response = grader.post(url, {"client_key": str(uuid.uuid4())})
    assert response.status_code == 422
    assert "Pick or type a reason to skip." in response.content.decode()
    assert not Annotation.objects.exists()


def test_skip_records_the_reason_and_serves_the_next_item(grader, study, annotator, items):
    grader.get(grade_url(study))
    assignment = open_assignment(study, annotator)
    url = reverse("annotate-grade-skip", args=[study.slug, assignment.pk])
    response = grader.post(url, {"client_key": str(uuid.uuid4()), "skip_choice": "context"}, **HTMX)
    assert "Skipped." in response.content.decode()
    annotation = Annotation.objects.get(annotator=annotator)
    assert annotation.status == "skipped"
    assert annotation.skip_reason == "Needs context I don't have"
    assert open_assignment(study, annotator).pk != assignment.pk


def test_undo_gives_the_item_back_with_the_previous_grade_preselected(
    grader, study, annotator, items
):
    grader.get(grade_url(study))
    first = open_assignment(study, annotator)
    submit(grader, study, first, htmx=True)
    annotation = Annotation.objects.get(annotator=annotator)
    url = reverse("annotate-grade-undo", args=[study.slug])
    response = grader.post(url, {"annotation_id": annotation.pk}, **HTMX)
    html = response.content.decode()
    annotation.refresh_from_db()
    assert annotation.undone_at is not None
    assert first.response.text in html
    assert 'name="label-style" value="4" data-key="4" required checked' in html
    assert "Undone." in html
    # The item given back is the one served next, also without JavaScript.
    assert open_assignment(study, annotator).response_id == first.response_id


def test_undo_gives_back_the_flag_and_comment_too(grader, study, annotator, items):
    grader.get(grade_url(study))
    submit(
        grader,
        study,
        open_assignment(study, annotator),
        flag_choice="other",
        flag_other="Wrong language",
        comment="Answers in French",
    )
    annotation = Annotation.objects.get(annotator=annotator)
    url = reverse("annotate-grade-undo", args=[study.slug])
    html = grader.post(url, {"annotation_id": annotation.pk}, **HTMX).content.decode()
    assert 'name="flag_choice" value="other" data-key="4" checked' in html
    assert 'value="Wrong language"' in html and "Answers in French" in html


def test_undo_of_a_skip_says_so(grader, study, annotator, items):
    grader.get(grade_url(study))
    assignment = open_assignment(study, annotator)
    skip = reverse("annotate-grade-skip", args=[study.slug, assignment.pk])
    grader.post(skip, {"client_key": str(uuid.uuid4()), "skip_choice": "expertise"})
    annotation = Annotation.objects.get(annotator=annotator)
    url = reverse("annotate-grade-undo", args=[study.slug])
    html = grader.post(url, {"annotation_id": annotation.pk}, **HTMX).content.decode()
    assert "Skip undone." in html and assignment.response.text in html


@pytest.mark.parametrize("annotation_id", ["", "abc", "-1", "999999"])
def test_undo_of_a_missing_annotation_is_not_found(grader, study, items, annotation_id):
    url = reverse("annotate-grade-undo", args=[study.slug])
    assert grader.post(url, {"annotation_id": annotation_id}).status_code == 404


def test_undo_after_the_window_is_refused(grader, study, annotator, items):
    grader.get(grade_url(study))
    submit(grader, study, open_assignment(study, annotator))
    annotation = Annotation.objects.get(annotator=annotator)
    Annotation.objects.filter(pk=annotation.pk).update(
        created_at=timezone.now() - timedelta(minutes=10)
    )
    url = reverse("annotate-grade-undo", args=[study.slug])
    html = grader.post(url, {"annotation_id": annotation.pk}, **HTMX).content.decode()
    assert "Not undone" in html
    annotation.refresh_from_db()
    assert annotation.undone_at is None


def test_annotator_cannot_undo_someone_elses_grade(client, study, annotator, items):
    other = UserFactory(username="dora")
    MembershipFactory(study=study, user=other, role="annotator")
    client.force_login(other)
    client.get(grade_url(study))
    submit(client, study, open_assignment(study, other))
    theirs = Annotation.objects.get(annotator=other)
    client.force_login(annotator)
    url = reverse("annotate-grade-undo", args=[study.slug])
    assert client.post(url, {"annotation_id": theirs.pk}).status_code == 404


# --------------------------------------------------------------------------- states


def test_an_expired_lease_keeps_the_grade_when_nobody_else_graded(grader, study, annotator, items):
    grader.get(grade_url(study))
    assignment = open_assignment(study, annotator)
    Assignment.objects.filter(pk=assignment.pk).update(
        leased_at=timezone.now() - timedelta(hours=1),
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    html = submit(grader, study, assignment, htmx=True).content.decode()
    assert "your grade is kept" in html
    assert Annotation.objects.filter(annotator=annotator, response=assignment.response).exists()


def test_an_expired_lease_graded_by_someone_else_is_not_saved(grader, study, annotator, items):
    grader.get(grade_url(study))
    assignment = open_assignment(study, annotator)
    Assignment.objects.filter(pk=assignment.pk).update(
        leased_at=timezone.now() - timedelta(hours=1),
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    other = UserFactory(username="erin")
    MembershipFactory(study=study, user=other, role="annotator")
    Annotation.objects.create(response=assignment.response, annotator=other, study=study)
    html = submit(grader, study, assignment, htmx=True).content.decode()
    assert "Not saved" in html and "someone else graded it" in html
    assert not Annotation.objects.filter(annotator=annotator).exists()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": Study.Status.DECIDED}, "The study is not active (it is decided)"),
        ({"label_budget": 0}, "The label budget is spent"),
    ],
)
def test_a_closed_study_shows_a_thank_you_with_the_reason(grader, study, items, change, reason):
    Study.objects.filter(pk=study.pk).update(**change)
    html = grader.get(grade_url(study)).content.decode()
    assert "Thank you!" in html
    assert reason in html
    assert 'id="grade-form"' not in html


def test_no_items_left_shows_a_thank_you(grader, study):
    html = grader.get(grade_url(study)).content.decode()
    assert "Thank you!" in html and "Nothing left for you to grade" in html


def test_the_last_submit_swaps_in_the_thank_you(grader, study, annotator):
    Study.objects.filter(pk=study.pk).update(overlap_share=0)
    add_items(study, 1)
    grader.get(grade_url(study))
    html = submit(grader, study, open_assignment(study, annotator), htmx=True).content.decode()
    assert '<section id="item" class="grade-done card"' in html and "Saved." in html
    assert 'id="undo-form"' in html


# --------------------------------------------------------------------------- permissions


def test_anonymous_users_are_sent_to_log_in(client, study):
    response = client.get(grade_url(study))
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_an_htmx_request_after_the_session_ended_sends_the_whole_page_to_log_in(client, study):
    url = reverse("annotate-grade-submit", args=[study.slug, 1])
    response = client.post(url, {"client_key": str(uuid.uuid4())}, **HTMX)
    assert response.status_code == 200
    assert (
        response["HX-Redirect"] == f"{reverse('login')}?next=%2Fstudies%2F{study.slug}%2Fgrade%2F"
    )


@pytest.mark.parametrize("name", ["annotate-study-home", "annotate-grade"])
def test_outsiders_get_404(client, outsider, study, items, name):
    client.force_login(outsider)
    assert client.get(reverse(name, args=[study.slug])).status_code == 404


@pytest.mark.parametrize("persona", ["lead", "admin_user"])
def test_leads_and_admins_cannot_grade_because_they_are_not_blind(
    client, request, study, items, persona
):
    client.force_login(request.getfixturevalue(persona))
    response = client.get(grade_url(study))
    assert response.status_code == 403
    assert not Assignment.objects.exists()


def test_outsider_cannot_post_to_an_annotators_assignment(
    client, grader, study, annotator, outsider, items
):
    grader.get(grade_url(study))
    assignment = open_assignment(study, annotator)
    client.force_login(outsider)
    assert submit(client, study, assignment).status_code == 404
    assert not Annotation.objects.exists()


def test_another_annotators_assignment_is_not_found(client, study, annotator, items):
    other = UserFactory(username="frank")
    MembershipFactory(study=study, user=other, role="annotator")
    client.force_login(annotator)
    client.get(grade_url(study))
    assignment = open_assignment(study, annotator)
    client.force_login(other)
    assert submit(client, study, assignment).status_code == 404
    url = reverse("annotate-grade-skip", args=[study.slug, assignment.pk])
    assert (
        client.post(url, {"client_key": str(uuid.uuid4()), "skip_choice": "context"}).status_code
        == 404
    )


def test_grading_endpoints_refuse_get(grader, study, annotator, items):
    grader.get(grade_url(study))
    assignment = open_assignment(study, annotator)
    url = reverse("annotate-grade-submit", args=[study.slug, assignment.pk])
    assert grader.get(url).status_code == 405
