"""Schemathesis against the OpenAPI schema, in process: no server error, nothing off-schema.

Every operation of ``/api/schema/`` gets generated requests, valid (positive) and invalid
(negative), sent to the Django WSGI app in this process with the API token of the persona
who may call it: the annotator for the queue, the study's admin for imports, the lead or
the admin for labels, fits and the posterior. Most requests name the seeded study and the
annotator's live assignment or latest annotation, so they reach the services and not only
the 404 of an unknown slug; a share keep the generated values, and a share come from
another persona (outsider, anonymous, a wrong role), so the refusals are checked too.

Each response must not be a server error and must match the schema: a documented status,
the documented content type, a body valid against the documented schema, the documented
headers. Cases are counted per operation and the total must reach ``MIN_CASES``; a summary
goes to ``test-output/api_fuzz.json`` (a test run never rewrites a tracked file). To refresh
the committed record, ``bench/results/api_fuzz.json``: ``python bench/api_fuzz.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import time
import traceback
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.core.signals import got_request_exception, request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Flaky, FlakyStrategyDefinition
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.services import issue_token
from annotate.grading import queue
from annotate.imports.importing import import_file
from annotate.models import Annotation, Membership, Study
from calibration import services
from calibration.models import Fit
from tests.annotate.grading.queue_helpers import GOOD_LABELS
from tests.annotate.imports.import_helpers import interaction, jsonl
from tests.calibration.helpers import FakeFitter
from tests.factories import MembershipFactory, UserFactory, make_study

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "test-output" / "api_fuzz.json"
SCHEMA_URL = "/api/schema/"
MIN_CASES = 1000
#: Generated cases per operation and generation mode (at most; a small input space gives fewer).
EXAMPLES = int(os.environ.get("BATON_FUZZ_EXAMPLES", "75"))
SLUG = "fuzz-study"

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# What this fuzzing found, and the commits that fixed it (kept in the JSON summary).
FOUND_AND_FIXED = [
    "POST fits/ answered 202 but the schema said 201 (919e619)",
    "refusals (400/403/404/415) were undocumented on every operation (b49f3b6)",
    "a URL under /api/ that matched no pattern answered an HTML 404 (a6d9596)",
    "label export refusals were JSON labelled text/csv (c6c43af)",
    "the import API's form errors did not match its documented 400 (1e9c353)",
    "500s from the import-job endpoint and ?async=1 imports, seen while that code was "
    "uncommitted work in progress (another engineer's; gone by its commit 1e9c353)",
]

# Who calls each operation (by operationId prefix); the first persona of a tuple is used
# for most cases and the others in turn.
CALLERS: dict[str, tuple[str, ...]] = {
    "annotate_": ("annotator",),
    "studies_imports_": ("admin",),
    "studies_labels_": ("lead", "admin"),
    "studies_fits_": ("lead", "admin"),
    "studies_posterior_": ("lead", "admin"),
}
# Every REFUSED_EVERY-th case comes from someone who may not call the operation.
REFUSED_EVERY = 8
KEEP_GENERATED_EVERY = 5  # every 5th case keeps its generated path parameters


@pytest.fixture
def wsgi_app(settings):
    """The project's WSGI app, called in this thread like Django's test client calls it."""
    from django.core.wsgi import get_wsgi_application

    settings.ALLOWED_HOSTS = ["localhost", "testserver"]
    # Django's test client does the same: closing "old" connections at each request would
    # close the test's own connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def world(monkeypatch) -> dict[str, Any]:
    """A small active study: 60 imported interactions, graders, tokens, a served fit."""
    fitter = FakeFitter()
    monkeypatch.setattr(services, "get_fitter", lambda: fitter)
    study = make_study(slug=SLUG)
    Study.objects.filter(pk=study.pk).update(label_budget=100_000, refit_every=25)
    study.refresh_from_db()
    lines = [interaction(n, region=("eu", "us")[n % 2]) for n in range(60)]
    import_file(jsonl(*lines), study=study, filename="seed.jsonl")

    users = {
        "admin": UserFactory(username="alice", is_staff=True),
        "lead": UserFactory(username="bob"),
        "annotator": UserFactory(username="charlie"),
        "outsider": UserFactory(username="mallory"),
    }
    for persona, role in (
        ("admin", Membership.Role.ADMIN),
        ("lead", Membership.Role.LEAD),
        ("annotator", Membership.Role.ANNOTATOR),
    ):
        MembershipFactory(study=study, user=users[persona], role=role)
    # A second annotator grades a few so that there are labels to export and to fit.
    grader = UserFactory(username="dave")
    MembershipFactory(study=study, user=grader, role=Membership.Role.ANNOTATOR)
    for i in range(12):
        assignment = queue.next_item(study=study, annotator=grader)
        queue.submit_annotation(
            assignment_id=assignment.pk,
            annotator=grader,
            client_key=uuid.uuid4(),
            labels={"correctness": i % 2, "refusal": (i // 2) % 2, "style": 1 + i % 5},
        )
    # Committed at once (transactional test), so the immediate task backend runs it.
    services.request_fit(study=study, trigger=Fit.Trigger.MANUAL)
    assert services.latest_fit(study) is not None
    tokens = {p: issue_token(user=u, name="fuzz").key for p, u in users.items()}
    return {"study": study, "users": users, "tokens": tokens}


def _callers(operation_id: str) -> tuple[str, ...]:
    for prefix, personas in CALLERS.items():
        if operation_id.startswith(prefix):
            return personas
    raise AssertionError(f"no caller persona for operation {operation_id!r}: add it to CALLERS")


def _refused_persona(allowed: tuple[str, ...], i: int) -> str | None:
    """Someone who may not call the operation (None: anonymous)."""
    others = [p for p in ("outsider", None, "annotator", "lead", "admin") if p not in allowed]
    return others[i % len(others)]


def _can_be_invalid(operation: Any) -> bool:
    """Whether negative generation has anything to break (hypothesis gives up otherwise).

    A free-text slug in the path is the only input of some operations; no value of it is
    invalid, and hypothesis would spend hundreds of tries before saying so.
    """
    raw = operation.definition.raw
    return "requestBody" in raw or any(
        p.get("in") == "query" or p.get("schema", {}).get("type") == "integer"
        for p in raw.get("parameters", [])
    )


def _live_path_values(world: dict[str, Any]) -> dict[str, Any]:
    """The annotator's current assignment and latest annotation, leasing one if needed."""
    study, annotator = world["study"], world["users"]["annotator"]
    values: dict[str, Any] = {"slug": study.slug}
    with contextlib.suppress(queue.QueueError):
        values["assignment_id"] = queue.next_item(study=study, annotator=annotator).pk
    latest = Annotation.objects.filter(annotator=annotator).order_by("-id").first()
    if latest is not None:
        values["annotation_id"] = latest.pk
    jobs = getattr(study, "import_jobs", None)  # imports run in the worker (?async=1)
    job = jobs.order_by("-id").first() if jobs is not None else None
    if job is not None:
        values["job_id"] = job.pk
    return values


class Tally:
    """What the fuzzing saw: statuses per operation and mode, and every failed check."""

    def __init__(self) -> None:
        self.per_operation: dict[str, Counter[str]] = defaultdict(Counter)
        self.statuses: Counter[int] = Counter()
        self.failures: list[dict[str, Any]] = []
        self.lenient: Counter[str] = Counter()
        self.no_negative: list[str] = []
        self.exceptions: list[str] = []

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.per_operation.values())


def fuzz_operation(operation: Any, mode: GenerationMode, world: dict[str, Any], tally: Tally):
    """Run EXAMPLES generated cases of one operation in one generation mode."""
    op_id = operation.definition.raw["operationId"]
    allowed = _callers(op_id)
    counter = Counter[str]()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        counter["i"] += 1
        i = counter["i"]
        if i % KEEP_GENERATED_EVERY:
            live = _live_path_values(world)
            for name in list(case.path_parameters or {}):
                if name in live:
                    case.path_parameters[name] = live[name]
            if op_id == "annotate_submit" and i % 3 == 0 and isinstance(case.body, dict):
                # Random dimension keys are refused (400); a third get real ones, so the
                # grade is stored, replayed, or refused by the queue itself.
                case.body["labels"] = dict(GOOD_LABELS)
        persona = (
            _refused_persona(allowed, i // REFUSED_EVERY)
            if i % REFUSED_EVERY == 0
            else allowed[i % len(allowed)]
        )
        headers = {}
        if persona is not None:
            headers["Authorization"] = f"Token {world['tokens'][persona]}"
        response = case.call(headers=headers)
        tally.statuses[response.status_code] += 1
        tally.per_operation[operation.label][f"{mode.value}:{response.status_code}"] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, FailureGroup) as failure:
            tally.failures.append(
                {
                    "operation": operation.label,
                    "mode": mode.value,
                    "persona": persona or "anonymous",
                    "status": response.status_code,
                    "failure": str(failure)[:3000],
                    "exception": tally.exceptions[-1] if response.status_code >= 500 else "",
                }
            )
        if mode == GenerationMode.NEGATIVE and persona in allowed:
            # Informative only: DRF accepts some values the schema calls invalid (an
            # integer as a UUID, an empty page number); counted, not failed.
            try:
                case.validate_response(response, checks=[negative_data_rejection])
            except (AssertionError, FailureGroup):
                tally.lenient[operation.label] += 1

    run()


def test_api_survives_generated_requests(wsgi_app, world):
    schema = schemathesis.openapi.from_wsgi(SCHEMA_URL, wsgi_app)
    tally = Tally()

    def keep_traceback(sender: Any, request: Any = None, **_: Any) -> None:
        tally.exceptions.append(traceback.format_exc(limit=-6))

    got_request_exception.connect(keep_traceback, weak=False)
    try:
        _fuzz_all(schema, world, tally)
    finally:
        got_request_exception.disconnect(keep_traceback)


def _fuzz_all(schema: Any, world: dict[str, Any], tally: Tally) -> None:
    t0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    load_before = os.getloadavg()

    # Undo last: it needs the annotations that submit and skip leave behind.
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()),
        key=lambda op: (op.definition.raw["operationId"] == "annotate_undo", op.label),
    )
    assert len(operations) >= 9, [op.label for op in operations]
    for operation in operations:
        fuzz_operation(operation, GenerationMode.POSITIVE, world, tally)
        if _can_be_invalid(operation):
            fuzz_operation(operation, GenerationMode.NEGATIVE, world, tally)
        else:
            tally.no_negative.append(operation.label)

    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    summary = {
        "benchmark": "api_fuzz",
        "what": "schemathesis cases against /api/schema/, in process (WSGI), per operation",
        "command": "python -m pytest tests/test_api_fuzz.py",
        "schemathesis": schemathesis.__version__,
        "examples_per_operation_and_mode": EXAMPLES,
        "total_cases": tally.total,
        "cases_per_operation": {k: sum(v.values()) for k, v in tally.per_operation.items()},
        "statuses_per_operation": {
            k: dict(sorted(v.items())) for k, v in tally.per_operation.items()
        },
        "status_histogram": {str(k): v for k, v in sorted(tally.statuses.items())},
        "negative_mode_impossible": tally.no_negative,
        "invalid_requests_accepted": dict(tally.lenient),
        "failures": tally.failures,
        "found_and_fixed": FOUND_AND_FIXED,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()),
            "cpu_seconds": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
        },
    }
    out = Path(os.environ.get("BATON_FUZZ_OUT", RESULTS))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    assert not tally.failures, json.dumps(tally.failures[:5], indent=2)
    assert tally.total >= MIN_CASES, summary["cases_per_operation"]


# --------------------------------------------------------------------------- stateful

#: Stateful steps (API calls) the sequence run must reach (BATON_FUZZ_SEQUENCES sets its size).
MIN_STATEFUL_STEPS = 5000
STATEFUL_SEQUENCES = int(os.environ.get("BATON_FUZZ_SEQUENCES", "360"))
STATEFUL_STEP_COUNT = 25  # at most, per sequence; a sequence ends early at random
STATEFUL_RESULTS = ROOT / "test-output" / "api_fuzz_stateful.json"
QUEUE_OPERATIONS = {"annotate_next_item", "annotate_submit", "annotate_skip", "annotate_undo"}


def test_queue_sequences_next_submit_undo_submit_never_fail(wsgi_app, world):
    """Schemathesis' state machine follows the schema's links: next → submit or skip →
    undo → submit or skip …, with the values each answer gives (the assignment, then the
    annotation). Two in three submits carry valid labels, so grades are stored, undone and
    stored again; every 8th call comes from someone who may not make it. No answer may be a
    server error or leave the schema."""
    # Enough responses that ~5,000 calls do not use up the annotator's queue.
    more = [interaction(n, region=("eu", "us")[n % 2]) for n in range(60, 400)]
    import_file(jsonl(*more), study=world["study"], filename="more.jsonl")
    schema = schemathesis.openapi.from_wsgi(SCHEMA_URL, wsgi_app)
    # Only the queue: the other operations are covered above and have no links.
    schema = schema.include(operation_id=sorted(QUEUE_OPERATIONS))
    tally = Tally()
    steps = Counter[str]()
    sequences = Counter[str]()

    def keep_traceback(sender: Any, request: Any = None, **_: Any) -> None:
        tally.exceptions.append(traceback.format_exc(limit=-6))

    class Queue(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            sequences["n"] += 1

        def before_call(self, case: Any) -> None:
            op_id = case.operation.definition.raw["operationId"]
            steps["i"] += 1
            if op_id == "annotate_submit" and steps["i"] % 3 and isinstance(case.body, dict):
                case.body["labels"] = dict(GOOD_LABELS)
            if "slug" in (case.path_parameters or {}):
                case.path_parameters["slug"] = world["study"].slug

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            i = steps["i"]
            persona = _refused_persona(("annotator",), i) if i % REFUSED_EVERY == 0 else "annotator"
            if persona is None:
                return {}
            return {"headers": {"Authorization": f"Token {world['tokens'][persona]}"}}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            label = case.operation.label
            tally.statuses[response.status_code] += 1
            tally.per_operation[label][f"stateful:{response.status_code}"] += 1
            try:
                case.validate_response(response, checks=CHECKS)
            except (AssertionError, FailureGroup) as failure:
                tally.failures.append(
                    {
                        "operation": label,
                        "status": response.status_code,
                        "failure": str(failure)[:3000],
                        "exception": tally.exceptions[-1] if response.status_code >= 500 else "",
                    }
                )

    t0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    got_request_exception.connect(keep_traceback, weak=False)
    batches, replays_refused = 0, 0
    try:
        # In batches: Hypothesis replays the start of earlier sequences to build new ones,
        # and against a server whose data has moved on (graded, undone) a replay can meet
        # another answer; it then stops the batch (Flaky). Failures are not raised but
        # recorded above, so a stopped batch loses no finding: the next batch goes on.
        while tally.total < MIN_STATEFUL_STEPS and batches < STATEFUL_SEQUENCES // 10:
            batches += 1
            try:
                Queue.run(
                    settings=settings(
                        max_examples=20,
                        stateful_step_count=STATEFUL_STEP_COUNT,
                        deadline=None,
                        database=None,
                        phases=[Phase.generate],
                        suppress_health_check=list(HealthCheck),
                    )
                )
            except (Flaky, FlakyStrategyDefinition):
                replays_refused += 1
    finally:
        got_request_exception.disconnect(keep_traceback)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    graded = Annotation.objects.filter(annotator=world["users"]["annotator"])
    summary = {
        "benchmark": "api_fuzz_stateful",
        "what": "schemathesis state machine over the queue's links, in process (WSGI)",
        "command": "python -m pytest tests/test_api_fuzz.py -k sequences",
        "schemathesis": schemathesis.__version__,
        "sequences": sequences["n"],
        "steps": tally.total,
        "batches": batches,
        "batches_stopped_by_a_replay": replays_refused,
        "statuses_per_operation": {
            k: dict(sorted(v.items())) for k, v in tally.per_operation.items()
        },
        "status_histogram": {str(k): v for k, v in sorted(tally.statuses.items())},
        "annotations": {
            "stored": graded.count(),
            "undone": graded.filter(undone_at__isnull=False).count(),
        },
        "failures": tally.failures,
        "seconds": round(time.perf_counter() - t0, 1),
        "cpu_seconds": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    out = Path(os.environ.get("BATON_FUZZ_STATEFUL_OUT", STATEFUL_RESULTS))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    assert not tally.failures, json.dumps(tally.failures[:5], indent=2)
    assert tally.total >= MIN_STATEFUL_STEPS, summary
    # The sequences went through the whole cycle, not only refusals.
    for op_id, status in (("submit", "201"), ("undo", "200"), ("next", "200")):
        label = next(k for k in tally.per_operation if op_id in k)
        assert tally.per_operation[label][f"stateful:{status}"] > 0, summary
