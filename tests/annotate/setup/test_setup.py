"""The study setup flow: an admin takes a study from nothing to active without the Django
admin; leads, annotators and outsiders cannot touch it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from annotate import hooks
from annotate.models import Annotation, Arm, Dimension, Label, Membership, Region, Study
from tests.factories import (
    ArmFactory,
    DimensionFactory,
    MembershipFactory,
    PromptFactory,
    RegionFactory,
    ResponseFactory,
    StudyFactory,
    UserFactory,
)
from tests.scores import cell_of, score_rows, scores_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def refits(monkeypatch):
    """Refits annotate asked calibration for (faked: no real fit runs in these tests)."""
    calls: list[dict] = []
    monkeypatch.setattr(hooks, "request_fit", lambda **kw: calls.append(kw))
    return calls


@pytest.fixture
def draft(admin_user) -> Study:
    study = StudyFactory(slug="draft-study", name="Draft", status=Study.Status.DRAFT)
    MembershipFactory(study=study, user=admin_user, role=Membership.Role.ADMIN)
    return study


def url(name: str, study: Study, **kwargs) -> str:
    return reverse(name, kwargs={"slug": study.slug, **kwargs})


def dimension_data(d: Dimension, **overrides) -> dict:
    data = {
        "key": d.key,
        "title": d.title,
        "rubric": d.rubric,
        "scale": d.scale,
        "scale_max": d.scale_max,
        "pass_threshold": d.pass_threshold or "",
        "margin": d.margin,
        "judge_score_type": d.judge_score_type,
        "judge_min": "" if d.judge_min is None else d.judge_min,
        "judge_max": "" if d.judge_max is None else d.judge_max,
        "judge_bins": d.judge_bins,
        "position": d.position,
        "point_descriptions_text": "\n".join(d.point_descriptions or []),
        "judge_cuts_text": ", ".join(str(c) for c in d.judge_cuts or []),
    }
    return {**data, **overrides}


def regions_data(rows: list[tuple[int | str, str, str]], initial: int) -> dict:
    data = {
        "form-TOTAL_FORMS": str(len(rows)),
        "form-INITIAL_FORMS": str(initial),
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
    }
    for i, (pk, key, share) in enumerate(rows):
        data |= {
            f"form-{i}-id": str(pk),
            f"form-{i}-key": key,
            f"form-{i}-name": key.upper(),
            f"form-{i}-traffic_share": share,
            f"form-{i}-position": str(i),
        }
    return data


# --- Creating a study -------------------------------------------------------------------


def test_staff_creates_a_draft_study_and_becomes_its_admin(client, admin_user):
    client.force_login(admin_user)
    r = client.post(
        reverse("annotate-setup-create"),
        {
            "name": "Support bot v2",
            "slug": "support-bot-v2",
            "description": "Replace acme-large-1?",
            "confidence": "0.9",
            "label_budget": "500",
            "exploration_share": "0.15",
            "overlap_share": "0.1",
            "lease_seconds": "600",
            "refit_every": "20",
        },
    )
    assert r.status_code == 302
    study = Study.objects.get(slug="support-bot-v2")
    assert r["Location"] == url("annotate-setup", study)
    assert study.status == Study.Status.DRAFT
    assert study.role_of(admin_user) == Membership.Role.ADMIN
    event = AuditEvent.objects.get(action="study.create")
    assert event.study == study and event.actor == admin_user
    assert event.details["changes"]["confidence"] == [None, 0.9]


def test_study_settings_are_validated_with_plain_messages(client, admin_user):
    client.force_login(admin_user)
    r = client.post(
        reverse("annotate-setup-create"),
        {
            "name": "x",
            "slug": "x",
            "confidence": "1.2",
            "label_budget": "1",
            "exploration_share": "2",
            "overlap_share": "1",
            "lease_seconds": "5",
            "refit_every": "0",
        },
    )
    assert r.status_code == 200
    errors = r.context["form"].errors
    assert set(errors) >= {
        "confidence",
        "exploration_share",
        "overlap_share",
        "lease_seconds",
        "refit_every",
    }
    assert "above 0.5" in errors["confidence"][0]
    assert not Study.objects.filter(slug="x").exists()


def test_non_staff_cannot_create_a_study(client, lead):
    client.force_login(lead)
    assert client.get(reverse("annotate-setup-create")).status_code == 403
    assert client.post(reverse("annotate-setup-create"), {"name": "x"}).status_code == 403


# --- Who may configure ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "status"), [("lead", 403), ("annotator", 403), ("outsider", 404)]
)
def test_only_study_admins_configure(client, request, study, persona, status):
    client.force_login(request.getfixturevalue(persona))
    dim = study.dimensions.get(key="correctness")
    for name, kwargs in [
        ("annotate-setup", {}),
        ("annotate-setup-study", {}),
        ("annotate-setup-dimension", {"dimension_id": dim.pk}),
        ("annotate-setup-regions", {}),
        ("annotate-setup-members", {}),
    ]:
        assert client.get(url(name, study, **kwargs)).status_code == status, name
    r = client.post(
        url("annotate-setup-dimension", study, dimension_id=dim.pk),
        dimension_data(dim, margin="0.2", confirmed="1"),
    )
    assert r.status_code == status
    dim.refresh_from_db()
    assert dim.margin == 0.02
    assert not AuditEvent.objects.exists()


def test_anonymous_is_sent_to_log_in(client, study):
    r = client.get(url("annotate-setup", study))
    assert r.status_code == 302 and r["Location"].startswith(reverse("login"))


def test_superuser_configures_any_study(client, study):
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    client.force_login(root)
    assert client.get(url("annotate-setup", study)).status_code == 200


def test_admin_of_another_study_cannot_configure_this_one(client, study):
    other_admin = UserFactory(username="eve", is_staff=True)
    MembershipFactory(study=StudyFactory(slug="other"), user=other_admin, role="admin")
    client.force_login(other_admin)
    assert client.get(url("annotate-setup", study)).status_code == 404


# --- Arms ----------------------------------------------------------------------------------


def test_admin_adds_an_incumbent_and_a_candidate(client, admin_user, draft):
    client.force_login(admin_user)
    for key, model, role in [("inc", "acme-1", "incumbent"), ("new", "nova-2", "candidate")]:
        r = client.post(
            url("annotate-setup-arms", draft),
            {"key": key, "model_name": model, "role": role, "position": 0},
        )
        assert r.status_code == 302
    assert draft.incumbent.model_name == "acme-1"
    assert list(draft.candidates().values_list("key", flat=True)) == ["new"]
    assert AuditEvent.objects.filter(action="arm.create", study=draft).count() == 2


def test_a_second_incumbent_is_refused_by_name(client, admin_user, study):
    client.force_login(admin_user)
    r = client.post(
        url("annotate-setup-arms", study),
        {"key": "x", "model_name": "x", "role": "incumbent", "position": 0},
    )
    assert r.status_code == 200
    assert "already has an incumbent (inc: acme-large-1)" in r.context["form"].errors["role"][0]


def test_an_arm_with_responses_cannot_be_removed(client, admin_user, study):
    client.force_login(admin_user)
    arm = study.arms.get(key="cand1")
    prompt = PromptFactory(study=study, region=study.regions.first())
    ResponseFactory(prompt=prompt, arm=arm)
    r = client.post(url("annotate-setup-arm-delete", study, arm_id=arm.pk), follow=True)
    assert "has 1 responses" in r.content.decode()
    assert Arm.objects.filter(pk=arm.pk).exists()


def test_delete_is_post_only(client, admin_user, draft):
    client.force_login(admin_user)
    arm = ArmFactory(study=draft)
    assert client.get(url("annotate-setup-arm-delete", draft, arm_id=arm.pk)).status_code == 405
    assert client.post(url("annotate-setup-arm-delete", draft, arm_id=arm.pk)).status_code == 302
    assert not Arm.objects.filter(pk=arm.pk).exists()


# --- Dimensions ------------------------------------------------------------------------


def test_admin_defines_an_ordinal_dimension_with_point_descriptions(client, admin_user, draft):
    client.force_login(admin_user)
    d = Dimension(
        key="helpful",
        title="Helpfulness",
        scale="ordinal",
        scale_max=3,
        pass_threshold=2,
        judge_score_type="continuous",
        judge_min=0,
        judge_max=1,
        judge_bins=3,
        point_descriptions=["Useless", "Partly", "Fully"],
    )
    r = client.post(
        url("annotate-setup-dimension-new", draft),
        dimension_data(d, judge_cuts_text="0.3, 0.7", rubric="Does it help?"),
    )
    assert r.status_code == 302, r.context["form"].errors
    saved = draft.dimensions.get(key="helpful")
    assert saved.point_descriptions == ["Useless", "Partly", "Fully"]
    assert saved.judge_cuts == [0.3, 0.7]
    assert saved.pass_threshold == 2


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (
            {"scale": "ordinal", "scale_max": "5", "pass_threshold": ""},
            "pass_threshold",
            "needs a pass threshold",
        ),
        (
            {"scale": "ordinal", "scale_max": "5", "pass_threshold": "6"},
            "pass_threshold",
            "between 1 and 5",
        ),
        ({"scale": "ordinal", "scale_max": "11", "pass_threshold": "3"}, "scale_max", "2 to 10"),
        (
            {"point_descriptions_text": "only one"},
            "point_descriptions_text",
            "1 descriptions for 2 scale points",
        ),
        (
            {"judge_score_type": "continuous", "judge_bins": "4", "judge_cuts_text": "0.2,0.5"},
            "judge_cuts_text",
            "4 bins need 3 cut points, not 2",
        ),
        (
            {"judge_score_type": "continuous", "judge_bins": "3", "judge_cuts_text": "0.5,0.2"},
            "judge_cuts_text",
            "strictly increasing",
        ),
        ({"judge_score_type": "binary", "judge_bins": "3"}, "judge_bins", "exactly 2 bins"),
        ({"judge_score_type": "likert", "judge_bins": "5"}, "judge_min", "needs its range"),
        ({"judge_min": "1", "judge_max": "0"}, "judge_max", "above its min"),
        ({"margin": "1.5"}, "margin", "from 0 up to 1"),
        ({"key": "refusal"}, "key", "already has a dimension with key"),
    ],
)
def test_dimension_mistakes_are_explained(client, admin_user, study, overrides, field, message):
    client.force_login(admin_user)
    d = study.dimensions.get(key="correctness")
    r = client.post(
        url("annotate-setup-dimension", study, dimension_id=d.pk), dimension_data(d, **overrides)
    )
    assert r.status_code == 200
    errors = r.context["form"].errors
    assert field in errors, errors
    assert message in " ".join(errors[field])


def test_a_graded_dimension_keeps_its_scale(client, admin_user, study, annotator):
    client.force_login(admin_user)
    d = study.dimensions.get(key="correctness")
    response = ResponseFactory(
        prompt=PromptFactory(study=study, region=study.regions.first()), arm=study.incumbent
    )
    annotation = Annotation.objects.create(response=response, annotator=annotator, study=study)
    Label.objects.create(annotation=annotation, dimension=d, value=1)
    r = client.post(
        url("annotate-setup-dimension", study, dimension_id=d.pk),
        dimension_data(d, scale="ordinal", scale_max="5", pass_threshold="3"),
    )
    assert r.status_code == 200
    assert "already has 1 human grades" in r.context["form"].errors["scale"][0]
    r = client.post(url("annotate-setup-dimension-delete", study, dimension_id=d.pk), follow=True)
    assert "has 1 human grades" in r.content.decode()
    assert Dimension.objects.filter(pk=d.pk).exists()


# --- Changes to what a fit depends on ----------------------------------------------------


def test_margin_change_on_an_active_study_is_confirmed_audited_and_refits(
    client, admin_user, study, refits, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    d = study.dimensions.get(key="style")
    target = url("annotate-setup-dimension", study, dimension_id=d.pk)
    data = dimension_data(d, margin="0.05", pass_threshold="3")

    r = client.post(target, data)
    assert r.status_code == 200
    assert r.templates[0].name == "annotate/setup_confirm.html"
    page = r.content.decode()
    assert "margin" in page and "0.02" in page and "0.05" in page and "pass_threshold" in page
    d.refresh_from_db()
    assert (d.margin, d.pass_threshold) == (0.02, 4)  # nothing saved before confirmation
    assert refits == [] and not AuditEvent.objects.exists()

    # The confirm page re-posts the same data with confirmed=1.
    resubmit = dict(r.context["resubmit"])
    assert resubmit["margin"] == "0.05"
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(target, {**resubmit, "confirmed": "1"})
    assert r.status_code == 302
    d.refresh_from_db()
    assert (d.margin, d.pass_threshold) == (0.05, 3)
    event = AuditEvent.objects.get(action="dimension.update")
    assert event.actor == admin_user and event.study == study
    assert event.details["changes"]["margin"] == [0.02, 0.05]
    assert event.details["changes"]["pass_threshold"] == [4, 3]
    assert event.details["refit"] is True
    assert refits == [{"study": study, "trigger": "config", "requested_by": admin_user}]


def test_a_wording_change_needs_no_confirmation_nor_refit(
    client, admin_user, study, refits, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    d = study.dimensions.get(key="correctness")
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(
            url("annotate-setup-dimension", study, dimension_id=d.pk),
            dimension_data(d, rubric="Is every fact right?"),
        )
    assert r.status_code == 302
    assert refits == []
    event = AuditEvent.objects.get(action="dimension.update")
    assert event.details["changes"]["rubric"] == ["", "Is every fact right?"]
    assert event.details["refit"] is False


def test_confidence_change_on_an_active_study_asks_confirmation(
    client, admin_user, study, refits, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    data = {
        "name": study.name,
        "description": "",
        "confidence": "0.9",
        "label_budget": "1000",
        "exploration_share": "0.15",
        "overlap_share": "0.1",
        "lease_seconds": "600",
        "refit_every": "20",
    }
    r = client.post(url("annotate-setup-study", study), data)
    assert r.templates[0].name == "annotate/setup_confirm.html"
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(url("annotate-setup-study", study), {**data, "confirmed": "1"})
    assert r.status_code == 302
    study.refresh_from_db()
    assert study.confidence == 0.9
    assert AuditEvent.objects.get(action="study.update").details["changes"]["confidence"] == [
        0.95,
        0.9,
    ]
    assert len(refits) == 1


def test_a_draft_study_saves_fit_changes_directly(
    client, admin_user, draft, refits, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    d = DimensionFactory(study=draft, key="c")
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(
            url("annotate-setup-dimension", draft, dimension_id=d.pk),
            dimension_data(d, margin="0.1"),
        )
    assert r.status_code == 302
    d.refresh_from_db()
    assert d.margin == 0.1
    assert refits == []


# --- Regions -------------------------------------------------------------------------------


def test_shares_that_do_not_sum_to_one_are_refused_with_the_sum(client, admin_user, study):
    client.force_login(admin_user)
    eu, us = study.regions.order_by("position")
    r = client.post(
        url("annotate-setup-regions", study),
        regions_data([(eu.pk, "eu", "0.5"), (us.pk, "us", "0.3")], initial=2),
    )
    assert r.status_code == 200
    errors = " ".join(r.context["formset"].non_form_errors())
    assert "Traffic shares sum to 0.8; they must sum to 1" in errors
    eu.refresh_from_db()
    assert eu.traffic_share == Decimal("0.6")


def test_regions_are_added_and_shares_changed_with_confirmation(
    client, admin_user, study, refits, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    eu, us = study.regions.order_by("position")
    data = regions_data(
        [(eu.pk, "eu", "0.5"), (us.pk, "us", "0.3"), ("", "apac", "0.2")], initial=2
    )
    r = client.post(url("annotate-setup-regions", study), data)
    assert r.templates[0].name == "annotate/setup_confirm.html"
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(url("annotate-setup-regions", study), {**data, "confirmed": "1"})
    assert r.status_code == 302
    assert dict(study.regions.values_list("key", "traffic_share")) == {
        "eu": Decimal("0.5"),
        "us": Decimal("0.3"),
        "apac": Decimal("0.2"),
    }
    changes = AuditEvent.objects.get(action="regions.update").details["changes"]
    assert changes["eu.traffic_share"] == ["0.600000", "0.5"]
    assert changes["apac.traffic_share"] == [None, "0.2"]
    assert len(refits) == 1


def test_a_region_with_prompts_cannot_be_removed(client, admin_user, study):
    client.force_login(admin_user)
    eu, us = study.regions.order_by("position")
    PromptFactory(study=study, region=us)
    data = regions_data([(eu.pk, "eu", "1"), (us.pk, "us", "0.4")], initial=2)
    data["form-1-DELETE"] = "on"
    r = client.post(url("annotate-setup-regions", study), data)
    assert r.status_code == 200
    assert "“us” has prompts" in " ".join(r.context["formset"].non_form_errors())
    assert Region.objects.filter(pk=us.pk).exists()


def test_the_share_sum_updates_live_through_htmx(client, admin_user, study):
    client.force_login(admin_user)
    eu, us = study.regions.order_by("position")
    r = client.post(
        url("annotate-setup-regions", study) + "?preview=1",
        regions_data([(eu.pk, "eu", "0.5"), (us.pk, "us", "0.45")], initial=2),
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 200
    body = r.content.decode()
    assert body.strip().startswith('<p id="share-total"') and "0.95" in body
    eu.refresh_from_db()
    assert eu.traffic_share == Decimal("0.6")


# --- People --------------------------------------------------------------------------------


def test_admin_assigns_annotators_and_leads_by_username(client, admin_user, draft):
    client.force_login(admin_user)
    UserFactory(username="dora")
    r = client.post(url("annotate-setup-members", draft), {"username": "dora", "role": "annotator"})
    assert r.status_code == 302
    assert draft.memberships.get(user__username="dora").role == "annotator"
    client.post(url("annotate-setup-members", draft), {"username": "dora", "role": "lead"})
    assert draft.memberships.get(user__username="dora").role == "lead"
    assert AuditEvent.objects.get(action="membership.update").details["changes"] == {
        "role": ["annotator", "lead"]
    }


def test_an_unknown_username_is_named_in_the_error(client, admin_user, draft):
    client.force_login(admin_user)
    r = client.post(
        url("annotate-setup-members", draft),
        {"username": "nobody", "role": "lead"},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 200
    body = r.content.decode()
    assert body.strip().startswith('<div id="members">')
    assert "No active user is called “nobody”" in body


def test_the_last_admin_cannot_be_removed(client, admin_user, draft):
    client.force_login(admin_user)
    m = draft.memberships.get(user=admin_user)
    r = client.post(url("annotate-setup-member-remove", draft, membership_id=m.pk), follow=True)
    assert "only admin" in r.content.decode()
    assert draft.memberships.filter(pk=m.pk).exists()


# --- Activation ----------------------------------------------------------------------------


def test_activation_is_refused_with_every_reason(client, admin_user, draft):
    client.force_login(admin_user)
    RegionFactory(study=draft, key="eu", traffic_share=Decimal("0.7"))
    r = client.post(url("annotate-setup-activate", draft))
    assert r.status_code == 400
    problems = r.context["problems"]
    assert [p.split(":")[0] for p in problems] == [
        "No incumbent",
        "No candidate",
        "No dimension",
        "Regions",
        "No data",
    ]
    assert "traffic shares sum to 0.7" in problems[3]
    draft.refresh_from_db()
    assert draft.status == Study.Status.DRAFT


def test_a_complete_study_is_activated(client, admin_user, draft):
    client.force_login(admin_user)
    inc = ArmFactory(study=draft, key="inc", role="incumbent")
    ArmFactory(study=draft, key="c1")
    DimensionFactory(study=draft)
    region = RegionFactory(study=draft, traffic_share=Decimal("1"))
    ResponseFactory(prompt=PromptFactory(study=draft, region=region), arm=inc)
    r = client.get(url("annotate-setup", draft))
    assert "Ready: activate" in r.content.decode()
    r = client.post(url("annotate-setup-activate", draft))
    assert r.status_code == 302
    draft.refresh_from_db()
    assert draft.status == Study.Status.ACTIVE
    assert AuditEvent.objects.filter(action="study.activate", study=draft).exists()


def test_checklist_shows_what_is_done_and_missing(client, admin_user, draft):
    client.force_login(admin_user)
    ArmFactory(study=draft, key="inc", role="incumbent")
    r = client.get(url("annotate-setup", draft))
    steps = {s.key: s.done for s in r.context["steps"]}
    assert steps == {
        "study": True,
        "arms": False,
        "dimensions": False,
        "regions": False,
        "data": False,
        "blind": True,
        "people": False,
        "activate": False,
    }
    assert "1 incumbent, 0 candidate(s)" in r.content.decode()


def test_data_page_links_to_the_upload_when_there_is_one(client, admin_user, study):
    client.force_login(admin_user)
    r = client.get(url("annotate-setup-data", study))
    assert r.status_code == 200
    try:
        upload = reverse("annotate-upload", kwargs={"slug": study.slug})
    except Exception:
        upload = None
    assert r.context["upload_url"] == upload


# --- Binning of imported judge scores ----------------------------------------------------


def _scored_response(study, ext: str, values: dict[str, float], bins: dict[str, int]):
    """A response with the judge's ``values`` and a cell of the given ``bins``."""
    dims = list(study.dimensions.order_by("position", "id"))
    return ResponseFactory(
        prompt=PromptFactory(study=study, region=study.regions.first(), external_id=ext),
        arm=study.incumbent,
        cell=cell_of(*(bins[d.key] for d in dims)),
        scores=scores_of({d: values[d.key] for d in dims}, "j"),
    )


def test_changing_judge_bins_rebins_imported_scores_and_cells(
    client, admin_user, study, refits, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    a = _scored_response(
        study,
        "a",
        {"correctness": 1, "refusal": 0, "style": 5},
        {"correctness": 1, "refusal": 0, "style": 4},
    )
    b = _scored_response(
        study,
        "b",
        {"correctness": 0, "refusal": 1, "style": 2},
        {"correctness": 0, "refusal": 1, "style": 1},
    )
    style = study.dimensions.get(key="style")
    target = url("annotate-setup-dimension", study, dimension_id=style.pk)
    data = dimension_data(style, judge_bins="2", judge_cuts_text="3.5")
    r = client.post(target, data)
    assert "2 scores" in r.content.decode() and "re-binned" in r.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(target, {**data, "confirmed": "1"})
    assert r.status_code == 302
    assert [row for row in score_rows(study) if row[1] == style.pk] == [
        (a.pk, style.pk, "j", 5.0, 1),
        (b.pk, style.pk, "j", 2.0, 0),
    ]
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.cell, b.cell) == ("1.0.1", "0.1.0")
    event = AuditEvent.objects.get(action="dimension.update")
    assert event.details["rebinned_scores"] == 2
    assert event.details["changes"]["judge_cuts"] == [None, [3.5]]
    assert len(refits) == 1


def test_cleared_cuts_are_set_from_the_scores(client, admin_user, study, refits):
    from calibration.bayes.data import quantile_cuts  # noqa: F401  (what the import uses)

    client.force_login(admin_user)
    for i in range(4):
        _scored_response(
            study,
            f"r{i}",
            {"correctness": 1, "refusal": 1, "style": 1 + i},
            {"correctness": 1, "refusal": 1, "style": i},
        )
    style = study.dimensions.get(key="style")
    data = dimension_data(
        style, judge_score_type="continuous", judge_bins="2", judge_cuts_text="", confirmed="1"
    )
    r = client.post(url("annotate-setup-dimension", study, dimension_id=style.pk), data)
    assert r.status_code == 302
    style.refresh_from_db()
    assert style.judge_cuts and len(style.judge_cuts) == 1
    rows = [row for row in score_rows(study) if row[1] == style.pk]
    assert sorted((value, bin_) for _, _, _, value, bin_ in rows) == [
        (1.0, 0),
        (2.0, 0),
        (3.0, 1),
        (4.0, 1),
    ]


def test_no_new_dimension_nor_new_order_once_data_is_imported(client, admin_user, study):
    client.force_login(admin_user)
    _scored_response(
        study,
        "a",
        {"correctness": 1, "refusal": 0, "style": 5},
        {"correctness": 1, "refusal": 0, "style": 4},
    )
    r = client.post(
        url("annotate-setup-dimension-new", study),
        dimension_data(Dimension(key="new", title="New", margin=0.02)),
    )
    assert r.status_code == 200
    assert "set up every dimension before uploading data" in str(r.context["form"].errors)
    style = study.dimensions.get(key="style")
    r = client.post(
        url("annotate-setup-dimension", study, dimension_id=style.pk),
        dimension_data(style, position="0"),
    )
    assert "order of dimensions is fixed" in r.context["form"].errors["position"][0]


def test_home_links_admins_to_the_setup(client, admin_user, lead, study):
    client.force_login(admin_user)
    assert url("annotate-setup", study) in client.get(reverse("home")).content.decode()
    client.force_login(lead)
    assert url("annotate-setup", study) not in client.get(reverse("home")).content.decode()
