"""Many annotators grading pairs at once on PostgreSQL: no response leased twice, every
response graded exactly once.

Each thread registers the responses it holds *after* ``next_pair`` committed and releases
them *before* answering (an answered response cannot be leased again until the answer
commits), so two holders of one response in the registry at once is a real double lease.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import numpy as np
import pytest
from django.db import connection, connections

from annotate.grading import queue, queue_pairs
from annotate.grading.queue import QueueClosed
from annotate.grading.queue_pairs import LEFT, RIGHT, Pair
from annotate.models import Annotation, Assignment, Study
from tests.annotate.grading.queue_helpers import GOOD_LABELS, add_annotator
from tests.annotate.grading.test_side_by_side import add_prompts
from tests.factories import make_study

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 12
PROMPTS = 30


@pytest.fixture(autouse=True)
def postgres_only(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("the queue's try-locks only exist on PostgreSQL. Set DATABASE_URL.")
    # A fit per 20 grades would run PyMC inside the threads (immediate task backend).
    monkeypatch.setattr(queue, "notify_new_labels", lambda *, study: None)


def test_concurrent_pairs_never_share_a_response_and_grade_each_once():
    from calibration import selection

    selection.forget_cell_totals()
    study = make_study(slug="pairs-crowd")
    Study.objects.filter(pk=study.pk).update(
        side_by_side=True, overlap_share=0, label_budget=10_000
    )
    study.refresh_from_db()
    add_prompts(study, PROMPTS)
    users = [add_annotator(study, f"ann{i}") for i in range(THREADS)]

    held: dict[int, int] = {}  # response → holder
    lock = threading.Lock()
    conflicts: list[str] = []
    errors: list[BaseException] = []
    served: Counter[str] = Counter()
    start = threading.Barrier(THREADS)

    def grade(user, seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            start.wait()
            while True:
                try:
                    item = queue_pairs.next_pair(study=study, annotator=user, rng=rng)
                except QueueClosed:
                    return
                halves = item.halves if isinstance(item, Pair) else (item,)
                with lock:
                    served["pair" if isinstance(item, Pair) else "single"] += 1
                    for half in halves:
                        if held.get(half.response_id, user.pk) != user.pk:
                            conflicts.append(f"response {half.response_id} held twice")
                        held[half.response_id] = user.pk
                time.sleep(float(rng.uniform(0, 0.01)))  # "reading": others pick meanwhile
                with lock:
                    for half in halves:
                        held.pop(half.response_id, None)
                if isinstance(item, Pair):
                    queue_pairs.submit_pair(
                        pair_key=item.key, annotator=user, client_key=uuid.uuid4(),
                        labels={LEFT: GOOD_LABELS, RIGHT: GOOD_LABELS},
                    )  # fmt: skip
                else:
                    queue.submit_annotation(
                        assignment_id=item.pk, annotator=user, client_key=uuid.uuid4(),
                        labels=GOOD_LABELS,
                    )  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=grade, args=(u, i)) for i, u in enumerate(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    assert not conflicts, conflicts
    per_response = Counter(
        Annotation.objects.filter(study=study, undone_at__isnull=True).values_list(
            "response_id", flat=True
        )
    )
    assert len(per_response) == PROMPTS * 3  # every response graded...
    assert set(per_response.values()) == {1}  # ...exactly once
    # Every response was served once, in a pair or alone, and most in pairs.
    assert 2 * served["pair"] + served["single"] == PROMPTS * 3
    assert served["pair"] >= served["single"]
    # No two annotators' leases of one response overlap in time (the stored record).
    leases: dict[int, list[tuple]] = {}
    for response_id, user_id, start_at, end_at in Assignment.objects.filter(
        study=study
    ).values_list("response_id", "annotator_id", "leased_at", "completed_at"):
        leases.setdefault(response_id, []).append((start_at, end_at, user_id))
    for response_id, spans in leases.items():
        spans.sort()
        for (_, end_a, user_a), (start_b, _, user_b) in zip(spans, spans[1:], strict=False):
            assert user_a == user_b or end_a <= start_b, f"response {response_id} double-leased"
