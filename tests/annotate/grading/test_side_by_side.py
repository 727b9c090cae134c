"""Side-by-side grading: the pair lease (annotate/grading/queue_pairs.py) and its page.

Every test runs on SQLite by default and on PostgreSQL with DATABASE_URL set.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from datetime import timedelta

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from annotate.grading import queue, queue_pairs
from annotate.grading.queue import QueueClosed, UndoRefused
from annotate.grading.queue_pairs import LEFT, RIGHT, Pair
from annotate.models import Annotation, Arm, Assignment, Response, Study
from tests.annotate.grading.queue_helpers import add_annotator
from tests.factories import PromptFactory
from tests.scores import scores_of

pytestmark = pytest.mark.django_db

JUDGE_VALUE = "0.8731"
SECRETS = ("acme-large-1", "nova-1", "nova-2", "cand1", "cand2", "incumbent", "candidate",
           JUDGE_VALUE, "judge-gpt-x", "metadata-secret", "policy", "partner")  # fmt: skip
HTMX = {"HTTP_HX_REQUEST": "true"}
GOOD = {"correctness": 1, "refusal": 0, "style": 4}
OTHER = {"correctness": 0, "refusal": 1, "style": 2}


def add_prompts(study: Study, n: int, *, arms: list[Arm] | None = None) -> list[list[Response]]:
    """n prompts, each answered by every arm (or the given ones), judge-scored."""
    arms = arms or list(study.arms.all())
    regions = list(study.regions.all())
    dimensions = list(study.dimensions.all())
    start = study.prompts.count()
    out = []
    for i in range(start, start + n):
        region = regions[i % len(regions)]
        prompt = PromptFactory(
            study=study, region=region, external_id=f"sbs-{i}", text=f"Question {i}?",
            metadata={"source": "metadata-secret"},
        )  # fmt: skip
        responses = []
        for k, arm in enumerate(arms):
            response = Response.objects.create(
                prompt=prompt, arm=arm, study=study, region=region, cell="1.1.3",
                text=f"Reply {i}.{k} to question {i}.", metadata={"m": "metadata-secret"},
                scores=scores_of(dict.fromkeys(dimensions, float(JUDGE_VALUE)), "judge-gpt-x"),
            )  # fmt: skip
            responses.append(response)
        out.append(responses)
    return out


@pytest.fixture
def sbs(study) -> Study:
    Study.objects.filter(pk=study.pk).update(side_by_side=True, overlap_share=0)
    study.refresh_from_db()
    return study


def arms_of(pair: Pair) -> list[str]:
    return [h.response.arm.role for h in pair.halves]


def answered(annotator) -> list[Annotation]:
    return list(
        Annotation.objects.filter(annotator=annotator, undone_at__isnull=True).order_by("pk")
    )


def labels_of(annotation: Annotation) -> dict[str, int]:
    return {lab.dimension.key: lab.value for lab in annotation.labels.select_related("dimension")}


# --------------------------------------------------------------------------- the lease


def test_pairs_are_two_arms_of_one_prompt_preferring_the_incumbent(sbs, annotator):
    """Grade until nothing is left: every pick is checked against what was available."""
    prompts = add_prompts(sbs, 6)
    incumbent_of = {rs[0].prompt_id: rs[0].pk for rs in prompts}
    siblings = {r.pk: {s.pk for s in rs if s.pk != r.pk} for rs in prompts for r in rs}
    done: set[int] = set()
    rng = np.random.default_rng(3)
    kinds = Counter()
    while True:
        try:
            served = queue_pairs.next_pair(study=sbs, annotator=annotator, rng=rng)
        except QueueClosed:
            break
        if isinstance(served, Assignment):
            kinds["single"] += 1
            assert not siblings[served.response_id] - done, "a partner was available"
            queue.submit_annotation(
                assignment_id=served.pk, annotator=annotator, client_key=uuid.uuid4(), labels=GOOD
            )
            done.add(served.response_id)
            continue
        left, right = served.left.response, served.right.response
        assert left.prompt_id == right.prompt_id and left.arm_id != right.arm_id
        assert (served.left.side, served.right.side) == (LEFT, RIGHT)
        assert served.left.pair_key == served.right.pair_key == served.key
        partner = next(h for h in served.halves if h.policy == "partner")
        first = next(h for h in served.halves if h is not partner)
        assert first.policy == "uniform" and 0 < first.probability <= 1
        incumbent = incumbent_of[left.prompt_id]
        if incumbent not in done:
            # The comparison the decision is about: the incumbent and a candidate.
            assert incumbent in (left.pk, right.pk)
            kinds["with incumbent"] += 1
        else:
            kinds["two candidates"] += 1
        # Given the first pick: uniform over the available responses of the preferred group.
        group = (
            siblings[first.response_id] - {incumbent}
            if first.response_id == incumbent
            else ({incumbent} if incumbent not in done else siblings[first.response_id])
        )
        assert partner.probability == pytest.approx(1 / len(group - done))
        queue_pairs.submit_pair(
            pair_key=served.key, annotator=annotator, client_key=uuid.uuid4(),
            labels={LEFT: GOOD, RIGHT: OTHER},
        )  # fmt: skip
        done |= {left.pk, right.pk}
    assert done == set(siblings)  # every response graded exactly once
    assert kinds["with incumbent"] == 6  # each prompt's first pair holds its incumbent
    assert kinds["single"] + kinds["two candidates"] == 6


def test_a_reload_serves_the_same_pair(sbs, annotator):
    add_prompts(sbs, 3)
    first = queue_pairs.next_pair(study=sbs, annotator=annotator)
    again = queue_pairs.next_pair(study=sbs, annotator=annotator)
    assert isinstance(first, Pair) and isinstance(again, Pair)
    assert (again.key, again.left.pk, again.right.pk) == (first.key, first.left.pk, first.right.pk)
    assert Assignment.objects.filter(annotator=annotator).count() == 2


def test_no_response_is_leased_twice_across_annotators(sbs, annotator):
    add_prompts(sbs, 4)
    others = [add_annotator(sbs, f"ann{i}") for i in range(3)]
    rng = np.random.default_rng(0)
    leased = []
    for user in [annotator, *others]:
        served = queue_pairs.next_pair(study=sbs, annotator=user, rng=rng)
        halves = served.halves if isinstance(served, Pair) else (served,)
        leased += [h.response_id for h in halves]
    assert len(leased) == len(set(leased))
    open_leases = Assignment.objects.filter(completed_at__isnull=True)
    assert Counter(open_leases.values_list("response_id", flat=True)).most_common(1)[0][1] == 1


def test_a_prompt_with_one_available_response_falls_back_to_a_single_item(sbs, annotator):
    (responses,) = add_prompts(sbs, 1)
    # Another annotator graded two of the three responses: one is left.
    dora = add_annotator(sbs, "dora")
    for response in responses[:2]:
        Annotation.objects.create(study=sbs, response=response, annotator=dora)
    served = queue_pairs.next_pair(study=sbs, annotator=annotator)
    assert isinstance(served, Assignment)
    assert served.response_id == responses[2].pk
    assert served.pair_key is None and served.side is None
    # The page shows it as a single item, graded through the single form.
    client = _client_for(annotator)
    html = client.get(reverse("annotate-grade", args=[sbs.slug])).content.decode()
    assert 'data-side="left"' not in html
    assert reverse("annotate-grade-submit", args=[sbs.slug, served.pk]) in html


def test_a_leased_partner_is_never_leased_again(sbs, annotator):
    (responses,) = add_prompts(sbs, 1, arms=list(sbs.arms.order_by("position")[:2]))
    dora = add_annotator(sbs, "dora")
    now = timezone.now()
    Assignment.objects.create(
        study=sbs, response=responses[0], annotator=dora, policy="uniform", probability=1,
        leased_at=now, expires_at=now + timedelta(minutes=5),
    )  # fmt: skip
    served = queue_pairs.next_pair(study=sbs, annotator=annotator)
    assert isinstance(served, Assignment) and served.response_id == responses[1].pk
    # Both are leased now: a third annotator gets nothing, not a second lease.
    with pytest.raises(QueueClosed):
        queue_pairs.next_pair(study=sbs, annotator=add_annotator(sbs, "erin"))


def test_an_overlap_pick_is_paired_with_the_other_half_of_a_graded_pair(sbs, annotator):
    add_prompts(sbs, 1, arms=list(sbs.arms.order_by("position")[:2]))
    dora = add_annotator(sbs, "dora")
    graded = queue_pairs.next_pair(study=sbs, annotator=dora)
    queue_pairs.submit_pair(
        pair_key=graded.key, annotator=dora, client_key=uuid.uuid4(),
        labels={LEFT: GOOD, RIGHT: OTHER},
    )  # fmt: skip
    # Room for one more graded response: a fresh pair would not fit, a second grade does.
    Study.objects.filter(pk=sbs.pk).update(overlap_share=0.99, label_budget=3)
    rng = np.random.default_rng(5)
    assert rng.random() < 0.99  # the draw next_item makes with the same seed: overlap
    second = queue_pairs.next_pair(study=sbs, annotator=annotator, rng=np.random.default_rng(5))
    assert isinstance(second, Pair)
    assert {h.response_id for h in second.halves} == {h.response_id for h in graded.halves}
    # Both are second grades: the budget is not charged again, and the late-submission
    # rule allows the one earlier grader.
    assert [h.policy for h in second.halves] == ["overlap", "overlap"]


def test_the_budget_for_one_more_grade_leases_one_response(sbs, annotator):
    add_prompts(sbs, 2)
    Study.objects.filter(pk=sbs.pk).update(label_budget=1)
    served = queue_pairs.next_pair(study=sbs, annotator=annotator)
    assert isinstance(served, Assignment)


def test_sides_are_drawn_at_random_and_recorded(sbs, annotator):
    add_prompts(sbs, 40, arms=list(sbs.arms.order_by("position")[:2]))
    rng = np.random.default_rng(11)
    incumbent_left = 0
    for _ in range(40):
        pair = queue_pairs.next_pair(study=sbs, annotator=annotator, rng=rng)
        assert isinstance(pair, Pair)
        incumbent_left += pair.left.response.arm.role == "incumbent"
        queue_pairs.submit_pair(
            pair_key=pair.key, annotator=annotator, client_key=uuid.uuid4(),
            labels={LEFT: GOOD, RIGHT: OTHER},
        )  # fmt: skip
    # Binomial(40, 1/2): 10..30 holds with probability > 0.998; the seed fixes it anyway.
    assert 10 <= incumbent_left <= 30
    rows = queue_pairs.pair_sides(study=sbs)
    assert len(rows) == 80
    by_pair: dict[uuid.UUID, dict[int, str]] = {}
    for row in rows:
        by_pair.setdefault(row["pair_key"], {})[row["side"]] = row["arm"]
    assert len(by_pair) == 40 and all(set(p) == {LEFT, RIGHT} for p in by_pair.values())
    assert sum(p[LEFT] == "inc" for p in by_pair.values()) == incumbent_left
    # The left side's grades are GOOD, the right side's OTHER: labels follow their side.
    for row in rows:
        expected = GOOD if row["side"] == LEFT else OTHER
        assert labels_of(Annotation.objects.get(pk=row["annotation_id"])) == expected


# --------------------------------------------------------------------------- answers


def test_both_grades_are_stored_together_with_their_labels_and_time(sbs, annotator):
    add_prompts(sbs, 2)
    pair = queue_pairs.next_pair(study=sbs, annotator=annotator)
    outcome = queue_pairs.submit_pair(
        pair_key=pair.key, annotator=annotator, client_key=uuid.uuid4(),
        labels={LEFT: GOOD, RIGHT: OTHER}, comment="A is clearer.", flags={RIGHT: "Broken"},
        time_spent_ms=9001,
    )  # fmt: skip
    left, right = outcome.annotations[LEFT], outcome.annotations[RIGHT]
    assert (left.response_id, right.response_id) == (pair.left.response_id, pair.right.response_id)
    assert labels_of(left) == GOOD and labels_of(right) == OTHER
    assert left.time_spent_ms + right.time_spent_ms == 9001
    assert abs(left.time_spent_ms - right.time_spent_ms) <= 1
    assert left.created_at == right.created_at
    assert (left.flagged, right.flagged, right.flag_reason) == (False, True, "Broken")
    assert left.comment == right.comment == "A is clearer."
    assert not Assignment.objects.filter(pair_key=pair.key, completed_at__isnull=True).exists()


def test_an_incomplete_side_records_nothing(sbs, annotator):
    add_prompts(sbs, 1)
    pair = queue_pairs.next_pair(study=sbs, annotator=annotator)
    with pytest.raises(ValidationError) as caught:
        queue_pairs.submit_pair(
            pair_key=pair.key, annotator=annotator, client_key=uuid.uuid4(),
            labels={LEFT: GOOD, RIGHT: {"correctness": 1, "refusal": 7}},
        )  # fmt: skip
    errors = caught.value.message_dict
    assert set(errors) == {"right.labels.refusal", "right.labels.style"}
    assert Annotation.objects.count() == 0


def test_a_retry_with_the_same_client_key_counts_once(sbs, annotator):
    add_prompts(sbs, 2)
    pair = queue_pairs.next_pair(study=sbs, annotator=annotator)
    key = uuid.uuid4()
    first = queue_pairs.submit_pair(
        pair_key=pair.key, annotator=annotator, client_key=key, labels={LEFT: GOOD, RIGHT: OTHER}
    )
    again = queue_pairs.submit_pair(
        pair_key=pair.key, annotator=annotator, client_key=key, labels={LEFT: GOOD, RIGHT: OTHER}
    )
    assert not first.replayed and again.replayed
    assert {a.pk for a in again.annotations.values()} == {a.pk for a in first.annotations.values()}
    assert Annotation.objects.count() == 2


def test_a_pair_is_skipped_as_a_whole(sbs, annotator):
    add_prompts(sbs, 2)
    pair = queue_pairs.next_pair(study=sbs, annotator=annotator)
    queue_pairs.skip_pair(
        pair_key=pair.key, annotator=annotator, client_key=uuid.uuid4(), reason="unreadable"
    )
    skipped = answered(annotator)
    assert [a.status for a in skipped] == ["skipped", "skipped"]
    assert {a.response_id for a in skipped} == {pair.left.response_id, pair.right.response_id}


def test_an_expired_side_graded_by_someone_else_is_refused_alone(sbs, annotator):
    add_prompts(sbs, 1)
    pair = queue_pairs.next_pair(study=sbs, annotator=annotator)
    past = timezone.now() - timedelta(minutes=1)
    Assignment.objects.filter(pair_key=pair.key).update(
        leased_at=past - timedelta(hours=1), expires_at=past
    )
    dora = add_annotator(sbs, "dora")
    Annotation.objects.create(study=sbs, response=pair.right.response, annotator=dora)
    outcome = queue_pairs.submit_pair(
        pair_key=pair.key, annotator=annotator, client_key=uuid.uuid4(),
        labels={LEFT: GOOD, RIGHT: OTHER},
    )  # fmt: skip
    assert set(outcome.annotations) == {LEFT} and set(outcome.refused) == {RIGHT}
    assert [a.response_id for a in answered(annotator)] == [pair.left.response_id]


def test_undo_takes_back_the_pair_and_leases_it_again_on_the_same_sides(sbs, annotator):
    add_prompts(sbs, 3)
    pair = queue_pairs.next_pair(study=sbs, annotator=annotator)
    outcome = queue_pairs.submit_pair(
        pair_key=pair.key, annotator=annotator, client_key=uuid.uuid4(),
        labels={LEFT: GOOD, RIGHT: OTHER},
    )  # fmt: skip
    queue_pairs.next_pair(study=sbs, annotator=annotator)  # the next pair is on screen
    again = queue_pairs.undo_pair(annotation_id=outcome.annotations[RIGHT].pk, annotator=annotator)
    assert isinstance(again, Pair) and again.key != pair.key
    assert again.left.response_id == pair.left.response_id
    assert again.right.response_id == pair.right.response_id
    assert answered(annotator) == []
    assert Annotation.objects.filter(undone_at__isnull=False).count() == 2
    # The undone pair is what the annotator is served now, then the one they had.
    served = queue_pairs.next_pair(study=sbs, annotator=annotator)
    assert isinstance(served, Pair) and served.key == again.key
    with pytest.raises(UndoRefused):
        queue_pairs.undo_pair(annotation_id=outcome.annotations[LEFT].pk, annotator=annotator)


def test_undo_outside_the_window_undoes_neither(sbs, annotator):
    add_prompts(sbs, 1)
    pair = queue_pairs.next_pair(study=sbs, annotator=annotator)
    outcome = queue_pairs.submit_pair(
        pair_key=pair.key, annotator=annotator, client_key=uuid.uuid4(),
        labels={LEFT: GOOD, RIGHT: OTHER}, now=timezone.now() - timedelta(minutes=10),
    )  # fmt: skip
    with pytest.raises(UndoRefused):
        queue_pairs.undo_pair(annotation_id=outcome.annotations[LEFT].pk, annotator=annotator)
    assert len(answered(annotator)) == 2


def test_single_mode_is_unchanged(study, annotator):
    Study.objects.filter(pk=study.pk).update(overlap_share=0)
    add_prompts(study, 2)
    served = queue.next_item(study=study, annotator=annotator)
    assert served.pair_key is None
    html = _client_for(annotator).get(reverse("annotate-grade", args=[study.slug])).content
    assert b"data-side=" not in html


# --------------------------------------------------------------------------- the page


def _client_for(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def _page_pair(html: str) -> tuple[str, str]:
    """(pair key, client key) of the pair on the page."""
    pair_key = re.search(r'data-assignment="([0-9a-f-]{36})"', html).group(1)
    client_key = re.search(r'name="client_key" value="([^"]+)"', html).group(1)
    return pair_key, client_key


def _labels(left: dict[str, int], right: dict[str, int]) -> dict[str, str]:
    return {
        **{f"label-left-{k}": str(v) for k, v in left.items()},
        **{f"label-right-{k}": str(v) for k, v in right.items()},
    }


def test_the_page_shows_one_prompt_and_both_responses_blind(sbs, annotator):
    add_prompts(sbs, 2)
    client = _client_for(annotator)
    html = client.get(reverse("annotate-grade", args=[sbs.slug])).content.decode()
    pair = queue_pairs.next_pair(study=sbs, annotator=annotator)
    assert isinstance(pair, Pair)
    texts = re.findall(r'data-role="response" data-side="(left|right)">([^<]*)<', html)
    assert texts == [("left", pair.left.response.text), ("right", pair.right.response.text)]
    assert html.count(pair.left.response.prompt.text) == 1
    # Every dimension once per side, named by side.
    for side in ("left", "right"):
        for key in ("correctness", "refusal", "style"):
            assert f'id="dim-{side}-{key}"' in html and f'name="label-{side}-{key}"' in html
    lowered = html.lower()
    leaks = [s for s in SECRETS if s in lowered]
    assert not leaks, f"the side-by-side page leaks {leaks}"
    # No assignment id anywhere (it would tell the first pick from its partner).
    for half in pair.halves:
        assert f"/grade/{half.pk}/" not in html
        assert f'data-assignment="{half.pk}"' not in html


def test_the_study_home_says_responses_come_in_pairs(sbs, study, annotator):
    home = reverse("annotate-study-home", args=[sbs.slug])
    assert "two responses" in _client_for(annotator).get(home).content.decode()
    Study.objects.filter(pk=sbs.pk).update(side_by_side=False)
    assert "two responses" not in _client_for(annotator).get(home).content.decode()


def test_submitting_the_page_stores_both_and_shows_the_next_pair(sbs, annotator):
    add_prompts(sbs, 3, arms=list(sbs.arms.order_by("position")[:2]))  # pairs only
    client = _client_for(annotator)
    html = client.get(reverse("annotate-grade", args=[sbs.slug])).content.decode()
    pair_key, client_key = _page_pair(html)
    url = reverse("annotate-grade-pair-submit", args=[sbs.slug, pair_key])
    data = {"client_key": client_key, "time_spent_ms": "6000", **_labels(GOOD, OTHER),
            "flag_choice": "broken", "flag_side": "left", "comment": "B rambles."}  # fmt: skip
    r = client.post(url, data, **HTMX)
    body = r.content.decode()
    assert r.status_code == 200 and "Both saved and flagged." in body
    assert _page_pair(body)[0] != pair_key
    pair = queue_pairs.get_pair(pair_key=uuid.UUID(pair_key), annotator=annotator)
    left = Annotation.objects.get(response_id=pair.left.response_id)
    right = Annotation.objects.get(response_id=pair.right.response_id)
    assert labels_of(left) == GOOD and labels_of(right) == OTHER
    assert left.flagged and left.flag_reason == "Broken or truncated" and not right.flagged
    assert left.time_spent_ms + right.time_spent_ms == 6000
    # The retry of the same form (a lost answer) is not counted twice.
    r = client.post(url, data, **HTMX)
    assert "Already saved" in r.content.decode()
    assert Annotation.objects.filter(annotator=annotator).count() == 2


def test_a_missing_grade_is_named_by_side_and_nothing_is_saved(sbs, annotator):
    add_prompts(sbs, 1)
    client = _client_for(annotator)
    html = client.get(reverse("annotate-grade", args=[sbs.slug])).content.decode()
    pair_key, client_key = _page_pair(html)
    data = {"client_key": client_key, **_labels(GOOD, {"correctness": 1, "refusal": 1})}
    r = client.post(reverse("annotate-grade-pair-submit", args=[sbs.slug, pair_key]), data)
    body = r.content.decode()
    assert r.status_code == 422
    assert "Pick a grade for Style adherence of response B." in body
    assert 'name="label-left-style" value="4" data-key="4" required checked' in body
    assert Annotation.objects.count() == 0


def test_the_page_undoes_the_pair_with_both_grades_preselected(sbs, annotator):
    add_prompts(sbs, 3)
    client = _client_for(annotator)
    html = client.get(reverse("annotate-grade", args=[sbs.slug])).content.decode()
    pair_key, client_key = _page_pair(html)
    data = {"client_key": client_key, **_labels(GOOD, OTHER)}
    body = client.post(
        reverse("annotate-grade-pair-submit", args=[sbs.slug, pair_key]), data, **HTMX
    ).content.decode()
    annotation_id = re.search(r'name="annotation_id" value="(\d+)"', body).group(1)
    r = client.post(
        reverse("annotate-grade-undo", args=[sbs.slug]), {"annotation_id": annotation_id}, **HTMX
    )
    body = r.content.decode()
    assert "both grades are back" in body
    assert 'name="label-left-style" value="4" data-key="4" required checked' in body
    assert 'name="label-right-style" value="2" data-key="2" required checked' in body
    assert Annotation.objects.filter(annotator=annotator, undone_at__isnull=True).count() == 0


def test_the_page_skips_the_pair(sbs, annotator):
    add_prompts(sbs, 2)
    client = _client_for(annotator)
    html = client.get(reverse("annotate-grade", args=[sbs.slug])).content.decode()
    pair_key, client_key = _page_pair(html)
    r = client.post(
        reverse("annotate-grade-pair-skip", args=[sbs.slug, pair_key]),
        {"client_key": client_key, "skip_choice": "expertise"},
        **HTMX,
    )
    assert "Skipped both." in r.content.decode()
    assert Counter(answered(annotator)[i].status for i in range(2)) == {"skipped": 2}


def test_a_pair_skip_the_queue_refuses_shows_the_pair_again(sbs, annotator):
    add_prompts(sbs, 2)
    client = _client_for(annotator)
    html = client.get(reverse("annotate-grade", args=[sbs.slug])).content.decode()
    pair_key, client_key = _page_pair(html)
    # The side keys of this client key already answered other responses (a replayed form).
    for side in (LEFT, RIGHT):
        Annotation.objects.create(
            study=sbs, response=add_prompts(sbs, 1)[0][0], annotator=annotator,
            client_key=queue_pairs.side_key(uuid.UUID(client_key), side), status="skipped",
            skip_reason="Outside my expertise",
        )  # fmt: skip
    r = client.post(
        reverse("annotate-grade-pair-skip", args=[sbs.slug, pair_key]),
        {"client_key": client_key, "skip_choice": "expertise"},
    )
    body = r.content.decode()
    assert r.status_code == 422
    assert "Not saved: This client key was already used for another response." in body
    assert _page_pair(body) == (pair_key, client_key)
    assert Annotation.objects.filter(annotator=annotator).count() == 2


def test_another_annotators_pair_is_not_found(sbs, annotator):
    add_prompts(sbs, 2)
    pair = queue_pairs.next_pair(study=sbs, annotator=annotator)
    dora = add_annotator(sbs, "dora")
    r = _client_for(dora).post(
        reverse("annotate-grade-pair-submit", args=[sbs.slug, pair.key]),
        {"client_key": str(uuid.uuid4()), **_labels(GOOD, OTHER)},
    )
    assert r.status_code == 404
    assert Annotation.objects.count() == 0


def test_admins_switch_side_by_side_on_and_off(client, study, admin_user):
    client.force_login(admin_user)
    url = reverse("annotate-setup-study", args=[study.slug])
    fields = {"name": study.name, "description": "", "confidence": "0.95",
              "label_budget": "1000", "exploration_share": "0.15", "overlap_share": "0.1",
              "lease_seconds": "600", "refit_every": "20"}  # fmt: skip
    assert 'name="side_by_side"' in client.get(url).content.decode()
    client.post(url, {**fields, "side_by_side": "on"})
    study.refresh_from_db()
    assert study.side_by_side
    client.post(url, fields)
    study.refresh_from_db()
    assert not study.side_by_side
