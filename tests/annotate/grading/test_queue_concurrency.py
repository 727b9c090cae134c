"""Many annotators at once on PostgreSQL: no double lease, every grade kept exactly once.

24 threads, each with its own database connection, run next → submit (sometimes a replay of
the same client key, sometimes a skip, sometimes an undo) against a study of 60 responses, so
they collide constantly. Each thread registers the response it holds in a shared registry
*after* ``next_item`` committed and releases it *before* answering; since an answered
response cannot be leased again until the answer commits (open lease, then a grade or the
skipper's own annotation), two holders in the registry at once is a real double lease.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter, defaultdict

import numpy as np
import pytest
from django.db import connection, connections

from annotate.grading import queue
from annotate.models import Annotation, Assignment, Membership, Study
from tests.annotate.grading.queue_helpers import GOOD_LABELS, add_responses
from tests.factories import MembershipFactory, UserFactory, make_study

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 24
CYCLES = 14
RESPONSES = 60


@pytest.fixture(autouse=True)
def postgres_only(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip(
            "the queue's locks (advisory try-locks that skip busy responses) only exist on "
            "PostgreSQL; SQLite serialises writers with BEGIN IMMEDIATE instead. Set "
            "DATABASE_URL to run this."
        )
    # A fit per 20 grades would run PyMC inside the threads (immediate task backend).
    monkeypatch.setattr(queue, "notify_new_labels", lambda *, study: None)


def test_concurrent_annotators_never_share_a_lease_and_lose_no_grade():
    from calibration import selection

    selection.forget_cell_totals()
    study = make_study(slug="crowd")
    Study.objects.filter(pk=study.pk).update(overlap_share=0.2, label_budget=10_000)
    add_responses(study, RESPONSES, cells=("0.0.1", "1.0.3", "1.1.5"))
    users = []
    for i in range(THREADS):
        user = UserFactory(username=f"ann{i}")
        MembershipFactory(study=study, user=user, role=Membership.Role.ANNOTATOR)
        users.append(user)

    registry: dict[int, dict[int, str]] = defaultdict(dict)  # response → {holder: policy}
    registry_lock = threading.Lock()
    conflicts: list[str] = []
    errors: list[BaseException] = []
    submitted: list[tuple[uuid.UUID, int]] = []  # (client key, annotation id) of grades
    skipped: list[int] = []
    undone: list[int] = []
    closed_reasons: Counter[str] = Counter()
    start = threading.Barrier(THREADS)

    def hold(response_id: int, user_id: int, policy: str) -> None:
        with registry_lock:
            for other, other_policy in registry[response_id].items():
                if other != user_id and Assignment.Policy.OVERLAP not in (policy, other_policy):
                    conflicts.append(f"response {response_id}: {other} and {user_id}")
            registry[response_id][user_id] = policy

    def release(response_id: int, user_id: int) -> None:
        with registry_lock:
            registry[response_id].pop(user_id, None)

    def annotate(user, seed: int) -> None:
        rng = np.random.default_rng(seed)
        pyrng = random.Random(seed)
        try:
            start.wait()
            for _ in range(CYCLES):
                try:
                    assignment = queue.next_item(study=study, annotator=user, rng=rng)
                except queue.QueueClosed as closed:
                    closed_reasons[closed.reason] += 1
                    break
                hold(assignment.response_id, user.pk, assignment.policy)
                roll = pyrng.random()
                release(assignment.response_id, user.pk)
                if roll < 0.1:
                    annotation = queue.skip_item(
                        assignment_id=assignment.pk,
                        annotator=user,
                        client_key=uuid.uuid4(),
                        reason="cannot judge",
                    )
                    skipped.append(annotation.pk)
                    continue
                client_key = uuid.uuid4()
                annotation = queue.submit_annotation(
                    assignment_id=assignment.pk,
                    annotator=user,
                    client_key=client_key,
                    labels=GOOD_LABELS,
                )
                if roll < 0.3:  # a flaky network: the same submission again
                    replay = queue.submit_annotation(
                        assignment_id=assignment.pk,
                        annotator=user,
                        client_key=client_key,
                        labels=GOOD_LABELS,
                    )
                    assert replay.pk == annotation.pk and replay.replayed
                if roll > 0.93:  # changed their mind: undo, then grade the same response again
                    reopened = queue.undo_annotation(annotation_id=annotation.pk, annotator=user)
                    undone.append(annotation.pk)
                    hold(reopened.response_id, user.pk, reopened.policy)
                    release(reopened.response_id, user.pk)
                    client_key = uuid.uuid4()
                    annotation = queue.submit_annotation(
                        assignment_id=reopened.pk,
                        annotator=user,
                        client_key=client_key,
                        labels=GOOD_LABELS,
                    )
                submitted.append((client_key, annotation.pk))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=annotate, args=(user, i)) for i, user in enumerate(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    assert not conflicts, conflicts

    # Every grade that was acknowledged is stored exactly once, live, with its labels.
    assert len(submitted) > RESPONSES  # the pool was exhausted, overlap picks happened
    for client_key, annotation_id in submitted:
        rows = list(Annotation.objects.filter(client_key=client_key))
        assert [a.pk for a in rows] == [annotation_id]
        assert rows[0].status == Annotation.Status.GRADED and rows[0].undone_at is None
        assert rows[0].labels.count() == len(GOOD_LABELS)
    live_graded = Annotation.objects.filter(
        study=study, status=Annotation.Status.GRADED, undone_at__isnull=True
    )
    assert live_graded.count() == len(submitted)  # nothing stored that was not acknowledged
    assert Annotation.objects.filter(pk__in=undone, undone_at__isnull=False).count() == len(undone)

    # A response carries a second grade only through an overlap pick, never a third.
    grades = Counter(live_graded.values_list("response_id", flat=True))
    overlap_done = Counter(
        Assignment.objects.filter(
            study=study, policy=Assignment.Policy.OVERLAP, completed_at__isnull=False
        ).values_list("response_id", flat=True)
    )
    for response_id, n in grades.items():
        assert n <= 2, (response_id, n)
        if n == 2:
            assert overlap_done[response_id] >= 1, response_id
    assert sum(grades.values()) > RESPONSES

    # In the database: no two open-at-once exclusive leases of one response, ever. With
    # lease_seconds far above the test's length, "open" means "not yet completed" at the
    # time the next lease of the response was created (ids grow in creation order).
    by_response: dict[int, list[Assignment]] = defaultdict(list)
    for a in Assignment.objects.filter(study=study).order_by("id"):
        by_response[a.response_id].append(a)
    for response_id, leases in by_response.items():
        for earlier, later in zip(leases, leases[1:], strict=False):
            if Assignment.Policy.OVERLAP in (earlier.policy, later.policy):
                continue
            if earlier.annotator_id == later.annotator_id:
                continue  # an undo gives the same response back to the same annotator
            assert earlier.completed_at is not None, (response_id, earlier.pk, later.pk)
            # Leases are stamped after the row lock, so stored times follow lock order.
            assert earlier.completed_at <= later.leased_at, (response_id, earlier.pk, later.pk)
    assert sum(closed_reasons.values()) <= THREADS
