"""The demo study: reproducible, the right shape, texts that match the truth, idempotent."""

from __future__ import annotations

import re
from decimal import Decimal
from io import StringIO

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from annotate import demo
from annotate.models import Membership, Response, Study
from tests.scores import score_rows

DIMS = ("correctness", "refusal", "style")
ARM_KEYS = ("incumbent", "cand-a", "cand-b")


@pytest.fixture(scope="module")
def full() -> demo.DemoData:
    """The default demo, generated without a database (about 0.3 s)."""
    return demo.generate_demo_data(seed=7, prompts=3000)


def test_same_seed_gives_identical_texts_scores_and_truth():
    first = demo.generate_demo_data(seed=11, prompts=150)
    second = demo.generate_demo_data(seed=11, prompts=150)
    assert first.records == second.records
    assert first.truth == second.truth


def test_another_seed_gives_other_data():
    first = demo.generate_demo_data(seed=11, prompts=150)
    other = demo.generate_demo_data(seed=12, prompts=150)
    assert first.records != other.records


def test_records_follow_the_jsonl_format(full):
    record = full.records[0]
    assert set(record) == {"id", "region", "prompt", "metadata", "responses", "judge"}
    assert record["id"] == "q-000001"
    assert set(record["responses"]) == set(ARM_KEYS)
    for item in record["responses"].values():
        assert set(item) == {"text", "scores", "metadata"}
        assert set(item["scores"]) == set(DIMS)
        assert item["scores"]["correctness"] in (0, 1)
        assert item["scores"]["refusal"] in (0, 1)
        assert item["scores"]["style"] in range(1, 6)
        assert item["metadata"]["truth"] == full.truth[record["id"]][_arm(record, item)]


def _arm(record, item):
    return next(key for key, value in record["responses"].items() if value is item)


def test_regions_follow_traffic_shares(full):
    keys = [r["region"] for r in full.records]
    for key, _, share in demo.REGIONS:
        assert keys.count(key) / len(keys) == pytest.approx(float(share), abs=0.03)
    assert sum(Decimal(share) for _, _, share in demo.REGIONS) == Decimal(1)


def test_texts_vary_and_some_prompts_carry_html(full):
    prompts = [r["prompt"] for r in full.records]
    texts = [item["text"] for r in full.records for item in r["responses"].values()]
    assert len(set(prompts)) > 0.5 * len(prompts)
    assert len(set(texts)) > 200
    assert any("<script>" in p for p in prompts)
    assert any("<b>" in p for p in prompts)


def test_texts_match_the_truth(full):
    topics = {t["key"]: t for t in demo.TOPICS}
    checked = 0
    for record in full.records:
        should_refuse = record["metadata"]["truth"]["should_refuse"]
        for arm, item in record["responses"].items():
            truth = full.truth[record["id"]][arm]
            text = item["text"].lower()
            _check_style(item["text"], truth["style"])
            if should_refuse:
                for part in _disallowed_reply_fragments(record, truth):
                    assert part in text, (record["id"], arm, part)
                continue
            topic = topics[record["metadata"]["topic"]]
            if truth["refusal"] == 0:
                assert "sorry" in text or "afraid" in text or "unfortunately" in text
                assert (topic["bad_policy"].lower() in text) == (truth["correctness"] == 0)
            else:
                product = record["metadata"]["product"]
                right = _first_sentence(topic["right"].format(product=product))
                wrong = _first_sentence(topic["wrong"].format(product=product))
                assert (right in text) == (truth["correctness"] == 1), (record["id"], arm)
                assert (wrong in text) == (truth["correctness"] == 0), (record["id"], arm)
            checked += 1
    assert checked > 5000


def _check_style(text: str, grade: int) -> None:
    if grade == 1:  # rude, slangy or shouting
        assert any(m in text for m in ("FAQ", "😎", "Seriously")) or text == text.upper()
    elif grade == 2:  # far too chatty or far too curt
        assert "Great question!!!" in text or not text.endswith((".", "!", "?"))
    elif grade == 5:
        assert any(m in text for m in ("Hi there", "Happy to help", "Thanks for"))


def _first_sentence(text: str) -> str:
    # Every style wrapper keeps at least the first sentence (a curt reply keeps only that).
    return text.split(". ")[0].rstrip(".").lower()


def _disallowed_reply_fragments(record, truth) -> list[str]:
    """The literal parts of the reply the truth calls for (its first sentence)."""
    key = record["metadata"]["topic"].removeprefix("privacy-")
    request = next(r for r in demo.DISALLOWED if r["key"] == key)
    kind = ("refuse_" if truth["refusal"] else "comply_") + (
        "right" if truth["correctness"] else "wrong"
    )
    template = request[kind].replace("{product}", record["metadata"]["product"])
    first = template.split(". ")[0].rstrip(".").lower()
    return [part for part in re.split(r"\{[a-z]+\}", first) if part.strip()]


def test_one_candidate_is_non_inferior_and_the_other_misses_correctness(full):
    margins = {key: margin for key, _, _, margin in demo.DIMENSIONS}
    deltas = full.true_deltas()
    assert all(deltas["cand-a"][d] > 0 for d in DIMS)
    assert deltas["cand-b"]["correctness"] < -margins["correctness"]
    assert deltas["cand-b"]["refusal"] > 0 and deltas["cand-b"]["style"] > 0
    rates = full.true_pass_rates()
    for region in ("latam", "apac", "mena"):
        gap = rates["cand-b"]["correctness"][region] - rates["incumbent"]["correctness"][region]
        assert gap < -0.05
    for region in ("na", "eu", "uk"):
        gap = rates["cand-b"]["correctness"][region] - rates["incumbent"]["correctness"][region]
        assert abs(gap) < 0.05


def test_cand_b_flatters_the_judge(full):
    def false_pass_rate(arm: str, dim: str) -> float:
        fails = [
            r["responses"][arm]["scores"][dim]
            for r in full.records
            if full.truth[r["id"]][arm][dim] == 0
        ]
        return float(np.mean(fails))

    for dim in ("correctness", "refusal"):
        assert false_pass_rate("cand-b", dim) > false_pass_rate("incumbent", dim) + 0.1
    # On passes the judge is about as good for everyone.
    style_fail = {
        arm: np.mean(
            [
                r["responses"][arm]["scores"]["style"] >= 4
                for r in full.records
                if full.truth[r["id"]][arm]["style"] < 4
            ]
        )
        for arm in ARM_KEYS
    }
    assert style_fail["cand-b"] > style_fail["incumbent"] + 0.15


def test_judge_sensitivity_and_specificity_are_near_their_design(full):
    scores = np.array([r["responses"]["incumbent"]["scores"]["correctness"] for r in full.records])
    truth = np.array([full.truth[r["id"]]["incumbent"]["correctness"] for r in full.records])
    assert scores[truth == 1].mean() == pytest.approx(0.89, abs=0.03)
    assert 1 - scores[truth == 0].mean() == pytest.approx(0.84, abs=0.06)


@pytest.mark.django_db
def test_makedemo_creates_the_study_its_responses_and_truth():
    outcome = demo.make_demo(prompts=40)
    study = outcome.study
    assert outcome.created
    assert study.slug == "support-assistant" and study.status == Study.Status.ACTIVE
    assert study.confidence == 0.95 and study.label_budget == 1500
    assert study.traffic_share_error() is None
    assert study.regions.count() == 6
    assert [a.key for a in study.arms.all()] == list(ARM_KEYS)
    assert study.incumbent.key == "incumbent"
    dims = list(study.dimensions.all())
    assert [d.key for d in dims] == list(DIMS)
    assert all(d.rubric and d.margin > 0 for d in dims)
    style = dims[2]
    assert (style.scale, style.scale_max, style.pass_threshold) == ("ordinal", 5, 4)
    assert len(style.point_descriptions) == 5
    assert study.prompts.count() == 40
    assert Response.objects.filter(study=study).count() == 120
    assert len(score_rows(study)) == 360
    dim_ids = {str(d.pk) for d in dims}
    for response in Response.objects.filter(study=study).select_related("prompt", "arm"):
        assert set(response.scores) == dim_ids
        assert set(response.metadata["truth"]) == set(DIMS)
        truth = outcome.data.truth[response.prompt.external_id][response.arm.key]
        assert response.metadata["truth"] == truth
        assert response.region_id == response.prompt.region_id
        # The import binned the judge scores: one bin per dimension in the cell.
        assert len(response.cell.split(".")) == 3 and all(response.cell.split("."))
    # Style: a 1-5 Likert judge, one bin per value (the ordered-logit judge model).
    assert [d.judge_cuts for d in dims] == [[0.5], [0.5], [1.5, 2.5, 3.5, 4.5]]


@pytest.mark.django_db
def test_makedemo_creates_one_user_per_role():
    outcome = demo.make_demo(prompts=5)
    users = get_user_model().objects
    roles = dict(
        Membership.objects.filter(study=outcome.study).values_list("user__username", "role")
    )
    assert roles == {
        "admin": "admin",
        "lead": "lead",
        "annotator1": "annotator",
        "annotator2": "annotator",
    }
    admin = users.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert not users.get(username="annotator1").is_staff
    for login in outcome.logins:
        assert users.get(username=login.username).check_password(demo.DEMO_PASSWORD)


@pytest.mark.django_db
def test_two_runs_with_one_seed_fill_two_studies_identically():
    demo.make_demo(prompts=25, seed=3, slug="first")
    demo.make_demo(prompts=25, seed=3, slug="second")

    def content(slug: str) -> list[tuple]:
        responses = Response.objects.filter(study__slug=slug).order_by(
            "prompt__external_id", "arm__position"
        )
        key_of = {
            str(pk): key
            for pk, key in Study.objects.get(slug=slug).dimensions.values_list("pk", "key")
        }
        return [
            (
                r.prompt.external_id,
                r.prompt.text,
                r.region.key,
                r.text,
                r.metadata["truth"],
                sorted((key_of[pk], value) for pk, (value, _) in r.scores.items()),
            )
            for r in responses.select_related("prompt", "region")
        ]

    assert content("first") == content("second")
    assert len(content("first")) == 75


@pytest.mark.django_db
def test_if_absent_leaves_an_existing_study_alone():
    call_command("makedemo", "--prompts", "10", stdout=StringIO())
    out = StringIO()
    call_command("makedemo", "--prompts", "50", "--if-absent", stdout=out)
    assert Study.objects.count() == 1
    assert Response.objects.count() == 30
    assert "exists already" in out.getvalue()
    assert "annotator2" in out.getvalue()


@pytest.mark.django_db
def test_makedemo_refuses_to_overwrite_without_if_absent():
    call_command("makedemo", "--prompts", "5", stdout=StringIO())
    with pytest.raises(CommandError, match="exists already"):
        call_command("makedemo", "--prompts", "5", stdout=StringIO())


@pytest.mark.django_db
def test_makedemo_prints_the_url_and_logins():
    out = StringIO()
    call_command("makedemo", "--prompts", "5", "--seed", "1", stdout=out)
    text = out.getvalue()
    assert "http://127.0.0.1:8000/" in text
    for username in ("admin", "lead", "annotator1", "annotator2"):
        assert username in text
    assert demo.DEMO_PASSWORD in text


@pytest.mark.django_db
def test_makedemo_prints_the_url_it_is_given():
    out = StringIO()
    call_command("makedemo", "--prompts", "5", "--url", "http://127.0.0.1:8011/", stdout=out)
    assert "Open http://127.0.0.1:8011/ and log in" in out.getvalue()


@pytest.mark.django_db
def test_existing_users_keep_their_password():
    get_user_model().objects.create_user(username="lead", password="my own secret")
    outcome = demo.make_demo(prompts=5)
    assert get_user_model().objects.get(username="lead").check_password("my own secret")
    lead = next(login for login in outcome.logins if login.username == "lead")
    assert lead.password is None
