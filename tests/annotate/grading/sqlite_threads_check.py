"""Threads against the queue on a file-backed SQLite database (run by test_queue_sqlite.py).

pytest-django's SQLite test database lives in memory with a shared cache, whose table locks
do not behave like a real file database; so this runs in its own process on a temporary
file, with the project's real settings (WAL, ``BEGIN IMMEDIATE``, 20 s busy timeout).
Exit status 0 and a JSON summary on stdout when every invariant holds.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from collections import Counter
from decimal import Decimal

THREADS = 12
CYCLES = 8
RESPONSES = 30
LABELS = {"correctness": 1, "refusal": 0, "style": 4}


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections

    from annotate.grading import queue
    from annotate.models import (
        Annotation,
        Arm,
        Assignment,
        Dimension,
        Membership,
        Prompt,
        Region,
        Response,
        Study,
    )

    call_command("migrate", verbosity=0)
    queue.notify_new_labels = lambda *, study: None  # no fits in this check
    study = Study.objects.create(
        name="Threads", slug="threads", status="active", overlap_share=0.2, label_budget=10_000
    )
    arms = [
        Arm.objects.create(study=study, key="inc", model_name="a", role="incumbent"),
        Arm.objects.create(study=study, key="c1", model_name="b", role="candidate"),
    ]
    Dimension.objects.create(study=study, key="correctness", title="Correctness")
    Dimension.objects.create(study=study, key="refusal", title="Refusal", position=1)
    Dimension.objects.create(
        study=study, key="style", title="Style", scale="ordinal", scale_max=5, pass_threshold=4
    )
    region = Region.objects.create(study=study, key="eu", name="EU", traffic_share=Decimal(1))
    for i in range(RESPONSES):
        prompt = Prompt.objects.create(study=study, region=region, external_id=f"p{i}", text="q")
        Response.objects.create(
            prompt=prompt,
            arm=arms[i % 2],
            study=study,
            region=region,
            text=f"a{i}",
            cell=f"{i % 2}.0.1",
        )
    users = []
    for i in range(THREADS):
        user = get_user_model().objects.create(username=f"t{i}")
        Membership.objects.create(study=study, user=user, role="annotator")
        users.append(user)

    errors: list[str] = []
    acknowledged: list[tuple[str, int]] = []
    closed: Counter[str] = Counter()
    barrier = threading.Barrier(THREADS)

    def work(user) -> None:
        try:
            barrier.wait()
            for _ in range(CYCLES):
                try:
                    assignment = queue.next_item(study=study, annotator=user)
                except queue.QueueClosed as refused:
                    closed[refused.reason] += 1
                    break
                key = uuid.uuid4()
                annotation = queue.submit_annotation(
                    assignment_id=assignment.pk, annotator=user, client_key=key, labels=LABELS
                )
                again = queue.submit_annotation(
                    assignment_id=assignment.pk, annotator=user, client_key=key, labels=LABELS
                )
                assert again.pk == annotation.pk
                acknowledged.append((str(key), annotation.pk))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(repr(error))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)

    problems: list[str] = list(errors)
    stored = Counter(str(k) for k in Annotation.objects.values_list("client_key", flat=True))
    problems += [f"grade {k} stored {stored[k]} times" for k, _ in acknowledged if stored[k] != 1]
    if Annotation.objects.count() != len(acknowledged):
        problems.append("stored annotations differ from acknowledged ones")
    leases = list(Assignment.objects.order_by("id"))
    # An audit draw that lands on a response graded or leased elsewhere is recorded as an
    # audit assignment completed as it is made (queue._draw_audit): a record, not a lease.
    records = [
        a for a in leases if a.policy == Assignment.Policy.AUDIT and a.completed_at == a.leased_at
    ]
    # Stamped after the response's lock, a record never predates the lease it records.
    for r in records:
        for a in leases:
            if (
                a.response_id == r.response_id
                and a.pk < r.pk
                and a not in records
                and r.leased_at < a.leased_at
            ):
                problems.append(f"audit record {r.pk} predates lease {a.pk} it records")
    for a in [x for x in leases if x not in records]:
        for b in [x for x in leases if x not in records]:
            if (
                a.pk < b.pk
                and a.response_id == b.response_id
                and a.annotator_id != b.annotator_id
                and Assignment.Policy.OVERLAP not in (a.policy, b.policy)
                and b.leased_at < (a.completed_at or a.expires_at)
            ):
                problems.append(f"response {a.response_id} leased by {a.pk} and {b.pk} at once")
    per_response = Counter(
        Annotation.objects.filter(status="graded").values_list("response_id", flat=True)
    )
    problems += [f"response {r} graded {n} times" for r, n in per_response.items() if n > 2]
    print(
        json.dumps(
            {
                "grades": len(acknowledged),
                "leases": len(leases),
                "closed": dict(closed),
                "problems": problems[:20],
            }
        )
    )
    return 1 if problems or len(acknowledged) < RESPONSES else 0


if __name__ == "__main__":
    sys.exit(main())
