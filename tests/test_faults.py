"""Faults: a worker killed in the middle of a fit, PostgreSQL restarted while annotators grade.

Both need PostgreSQL. The worker test runs a real ``manage.py db_worker`` against the test
database (a transactional test, so the subprocess sees the rows). The restart test starts a
throwaway cluster of its own (``.ci/postgres.sh`` on a free port), so that restarting it
disturbs nobody else, and runs gunicorn against it.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from django.utils import timezone

from annotate.models import Study
from calibration import services
from calibration.models import Fit
from tests.calibration.helpers import FakeFitter, populate, worker_alive
from tests.factories import ArmFactory, DimensionFactory, RegionFactory, StudyFactory

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


@pytest.fixture(autouse=True)
def postgres_only(db_vendor):
    if db_vendor != "postgresql":
        pytest.skip(
            "fault tests need PostgreSQL (advisory locks, a server to restart); "
            "set DATABASE_URL to run them"
        )


@pytest.fixture
def db_vendor() -> str:
    return connection.vendor


@pytest.fixture
def fake_fitter(monkeypatch) -> FakeFitter:
    fitter = FakeFitter()
    monkeypatch.setattr(services, "get_fitter", lambda: fitter)
    return fitter


def binary_study(slug: str) -> Study:
    """Two arms, two binary dimensions, two regions: the cheapest real fit there is."""
    study = StudyFactory(slug=slug, refit_every=10)
    ArmFactory(study=study, key="inc", role="incumbent", position=0)
    ArmFactory(study=study, key="cand1", position=1)
    DimensionFactory(study=study, key="correctness", position=0)
    DimensionFactory(study=study, key="refusal", position=1)
    RegionFactory(study=study, key="eu", traffic_share="0.6", position=0)
    RegionFactory(study=study, key="us", traffic_share="0.4", position=1)
    populate(study, prompts_per_region=20, graded_share=0.5, seed=3)
    return study


# ---------------------------------------------------------------------------------------
# Recovery of fits whose worker is gone (the service, no subprocess)


@pytest.mark.django_db
def test_a_fit_whose_worker_session_ended_is_retried_at_the_next_grade(
    fake_fitter, django_capture_on_commit_callbacks
):
    study = binary_study("lost-now")
    # Started a minute ago: far from the 15-minute timeout, but no session holds its lock.
    lost = Fit.objects.create(
        study=study, status="running", started_at=timezone.now() - timedelta(minutes=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        retry = services.note_new_labels(study=study)
    lost.refresh_from_db()
    assert lost.status == Fit.Status.FAILED
    assert "worker lost" in lost.error and "session ended" in lost.error
    assert retry is not None and retry.pk != lost.pk
    retry.refresh_from_db()
    assert retry.status == Fit.Status.SUCCEEDED  # the immediate backend ran it
    assert services.latest_fit(study) == retry


@pytest.mark.django_db
def test_a_fit_whose_worker_is_alive_is_left_running(
    fake_fitter, django_capture_on_commit_callbacks
):
    study = binary_study("alive")
    running = Fit.objects.create(study=study, status="running", started_at=timezone.now())
    with worker_alive(running.pk), django_capture_on_commit_callbacks(execute=True):
        follow_up = services.request_fit(study=study, trigger=Fit.Trigger.MANUAL)
        assert services.note_new_labels(study=study) == follow_up
    running.refresh_from_db()
    follow_up.refresh_from_db()
    assert running.status == Fit.Status.RUNNING
    assert follow_up.status == Fit.Status.QUEUED  # waits behind the live one
    assert fake_fitter.calls == 0


@pytest.mark.django_db
def test_a_worker_claiming_behind_a_lost_fit_takes_its_place(fake_fitter):
    study = binary_study("takeover")
    lost = Fit.objects.create(study=study, status="running", started_at=timezone.now())
    queued = Fit.objects.create(study=study, status="queued")
    assert services.run_fit(fit_id=queued.pk) is not None
    lost.refresh_from_db()
    queued.refresh_from_db()
    assert lost.status == Fit.Status.FAILED and "worker lost" in lost.error
    assert queued.status == Fit.Status.SUCCEEDED


# ---------------------------------------------------------------------------------------
# A real worker, killed in the middle of a fit


def _subprocess_env(**extra: str) -> dict[str, str]:
    """Environment of a subprocess that uses this test's PostgreSQL database."""
    db = connection.settings_dict
    auth = quote(db["USER"], safe="")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"], safe="")
    url = f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "BATON_INSECURE_DEV_KEY": "1", **extra}
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def _start_worker(log: Path) -> subprocess.Popen:
    env = _subprocess_env(TASKS_BACKEND="django_tasks_db.DatabaseBackend", LOG_LEVEL="INFO")
    cmd = [PY, "manage.py", "db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.2"]
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)  # the process group we started, and only it
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_for(what: str, predicate: Any, timeout: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(
        f"{what}: not within {timeout:.0f} s; worker log:\n{log.read_text()[-3000:]}"
    )


def _lock_held(fit: Fit) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
            "AND objid = %s AND granted",
            [services.RUNNING_LOCK_CLASS, fit.pk],
        )
        return bool(cursor.fetchone()[0])


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_killing_the_worker_mid_fit_keeps_the_posterior_and_the_fit_is_retried(
    settings, fake_fitter, tmp_path
):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    study = binary_study("killed-worker")
    # The last good posterior, fitted here (fake fitter) before any worker exists.
    good = services.request_fit(study=study, trigger=Fit.Trigger.MANUAL)
    services.run_fit(fit_id=good.pk)
    good.refresh_from_db()
    assert good.status == Fit.Status.SUCCEEDED

    doomed = services.request_fit(study=study, trigger=Fit.Trigger.MANUAL)
    log = tmp_path / "worker.log"
    first = _start_worker(log)
    try:
        _wait_for(
            "the worker starts the fit",
            lambda: Fit.objects.filter(pk=doomed.pk, status="running").exists(),
            180,
            log,
        )
        _stop(first, signal.SIGKILL)  # mid-fit: compiling or sampling, never finishing
    finally:
        _stop(first, signal.SIGKILL)
    # PostgreSQL ends the dead worker's session (and so its locks) as soon as it sees the
    # socket closed; wait for that, not for any recovery of ours.
    _wait_for("the killed worker's session ends", lambda: not _lock_held(doomed), 30, log)
    doomed.refresh_from_db()
    assert doomed.status == Fit.Status.RUNNING  # nobody has noticed yet
    assert services.latest_fit(study) == good  # ... and the last good posterior is served

    second = _start_worker(log)
    try:
        # The next grade notices the lost fit (its worker's lock died with its session)
        # and queues a retry, which the new worker runs: no one has to step in.
        retry = services.note_new_labels(study=study)
        doomed.refresh_from_db()
        assert doomed.status == Fit.Status.FAILED, doomed.error
        assert "worker lost" in doomed.error
        assert retry is not None and retry.pk not in (good.pk, doomed.pk)

        def settled() -> Fit | None:
            served = services.latest_fit(study)
            assert served in (good, retry)  # never anything else, never nothing
            retry.refresh_from_db()
            return retry if retry.status in ("succeeded", "failed") else None

        _wait_for("the new worker completes the retried fit", settled, 600, log)
        assert retry.status == Fit.Status.SUCCEEDED, retry.error
        assert services.latest_fit(study) == retry
        assert retry.n_labels == good.n_labels  # the same labels, fitted for real
    finally:
        _stop(second)
    assert fake_fitter.calls == 2  # only the good fit ran here; the retry ran in the worker


# ---------------------------------------------------------------------------------------
# PostgreSQL restarted while annotators grade (a cluster of the test's own, and gunicorn)

FAULT_PGROOT = "/tmp/baton-pg-faults"
GRADERS = 3
GRADES_EACH = 12
OUTAGE_SECONDS = 3.0


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb, postgres and pg_ctl refuse to run as root (CI's .ci/run runs as root).
    return ["runuser", "-u", "postgres", "--", *cmd] if os.getuid() == 0 else cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def own_cluster() -> Iterator[tuple[str, Path]]:
    """A fresh throwaway PostgreSQL cluster (``.ci/postgres.sh``); stopped and removed after.

    Its port is one the system finds free at the time; a port taken between that check and
    the server's start (another test's server, an outgoing connection) is retried with
    another, and a cluster that still will not start fails with the end of its log.
    """
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are absent (apt-get install postgresql)")
    script = str(ROOT / ".ci" / "postgres.sh")
    failures = []
    for _attempt in range(3):
        env = {**os.environ, "PGPORT": str(_free_port()), "PGROOT": FAULT_PGROOT}
        subprocess.run([script, "stop"], env=env, check=True, capture_output=True)
        started = subprocess.run([script, "start"], env=env, capture_output=True, text=True)
        if started.returncode == 0:
            break
        failures.append(started.stderr)
    else:
        subprocess.run([script, "stop"], env=env, check=False, capture_output=True)
        pytest.fail(".ci/postgres.sh start failed three times:\n" + "\n".join(failures))
    try:
        yield started.stdout.strip().splitlines()[-1], bindir
    finally:
        subprocess.run([script, "stop"], env=env, check=False, capture_output=True)


def _manage(url: str, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": url, "BATON_INSECURE_DEV_KEY": "1", "LOG_LEVEL": "WARNING"}
    out = subprocess.run(
        [PY, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


SEED = """
from annotate.models import Study
from accounts.services import issue_token
from tests.annotate.grading.queue_helpers import add_annotator, add_responses
from tests.factories import make_study
import json
study = make_study(slug="restart")
Study.objects.filter(pk=study.pk).update(label_budget=100_000, refit_every=100_000)
add_responses(study, 120, cells=("0.0.1", "1.0.3"))
keys = [issue_token(user=add_annotator(study, f"grader{i}"), name="faults").key
        for i in range(%d)]
print("KEYS=" + json.dumps(keys))
"""


def _start_gunicorn(url: str, port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DEBUG": "0",
        "SECRET_KEY": uuid.uuid4().hex * 2,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "LOG_LEVEL": "WARNING",
        "DATABASE_CONN_MAX_AGE": "600",  # persistent connections: the restart breaks them
        "TASKS_BACKEND": "django_tasks_db.DatabaseBackend",
    }
    env.pop("BATON_INSECURE_DEV_KEY", None)
    cmd = [
        str(Path(PY).parent / "gunicorn"),
        "config.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--worker-class",
        "gthread",
        "--threads",
        "4",
        "--log-level",
        "warning",
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"gunicorn exited:\n{log.read_text()[-3000:]}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.3)
    _stop(proc)
    raise AssertionError("gunicorn did not start within 120 s")


class Grader(threading.Thread):
    """Grades through the queue API like the browser does, retrying the same client key."""

    def __init__(self, base: str, key: str) -> None:
        super().__init__(daemon=True)
        import requests

        self.base = base
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Token {key}"
        self.stored: dict[str, int] = {}  # client key → annotation id, once stored
        self.replays: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.unavailable: list[tuple[str, dict]] = []  # (content type, body) of each 503
        self.other_errors: list[str] = []
        self.gave_up: BaseException | None = None

    def _post(self, path: str, payload: dict | None = None) -> Any:
        """POST until the server answers something other than 503 or a dropped connection."""
        import requests

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                response = self.http.post(self.base + path, json=payload, timeout=30)
            except requests.ConnectionError as error:
                self.other_errors.append(f"connection: {error}")
                time.sleep(0.2)
                continue
            self.statuses[response.status_code] += 1
            if response.status_code != 503:
                return response
            self.unavailable.append((response.headers.get("Content-Type", ""), response.json()))
            time.sleep(0.2)
        raise AssertionError(f"{path}: still failing after 120 s")

    def run(self) -> None:
        try:
            while len(self.stored) < GRADES_EACH:
                item = self._post("/api/studies/restart/next/")
                assert item.status_code == 200, item.text
                key = str(uuid.uuid4())
                body = {"client_key": key, "labels": {"correctness": 1, "refusal": 0, "style": 4}}
                answer = self._post(
                    f"/api/assignments/{item.json()['assignment_id']}/submit/", body
                )
                assert answer.status_code in (200, 201), answer.text
                # Whatever happened to the first answer, the same key again is a replay.
                again = self._post(f"/api/assignments/{item.json()['assignment_id']}/submit/", body)
                assert again.status_code == 200 and again.json()["replayed"], again.text
                assert again.json()["id"] == answer.json()["id"]
                if answer.status_code == 200:
                    self.replays[key] += 1  # stored before an outage hid the first answer
                self.stored[key] = answer.json()["id"]
        except BaseException as error:  # reported by the test
            self.gave_up = error


def _db_rows(url: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        partial = conn.execute(
            "SELECT a.id, count(l.id) FROM annotate_annotation a "
            "LEFT JOIN annotate_label l ON l.annotation_id = a.id "
            "WHERE a.status = 'graded' GROUP BY a.id HAVING count(l.id) <> 3"
        ).fetchall()
        keys = conn.execute(
            "SELECT client_key::text, id FROM annotate_annotation WHERE status = 'graded'"
        ).fetchall()
        return {"partial": partial, "keys": dict(keys)}


@pytest.mark.slow
def test_restarting_postgresql_while_annotators_grade(own_cluster, tmp_path):
    url, bindir = own_cluster
    _manage(url, "migrate", "--verbosity", "0")
    seeded = _manage(url, "shell", "--no-imports", "-c", SEED % GRADERS)
    keys = json.loads(seeded.split("KEYS=")[-1])
    port = _free_port()
    log = tmp_path / "gunicorn.log"
    server = _start_gunicorn(url, port, log)
    graders = [Grader(f"http://127.0.0.1:{port}", key) for key in keys]
    pgdata = str(Path(FAULT_PGROOT) / "data")
    try:
        for grader in graders:
            grader.start()
        # Let them grade a little, then take the database away for a few seconds while they
        # keep asking, and bring it back (pg_ctl stop -m fast, then start: a restart with an
        # outage long enough to be seen).
        deadline = time.monotonic() + 120
        while sum(len(g.stored) for g in graders) < GRADERS * 3:
            assert time.monotonic() < deadline, "no grading before the restart"
            assert all(g.gave_up is None for g in graders), [g.gave_up for g in graders]
            time.sleep(0.1)
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", pgdata, "-m", "fast", "-w", "stop"]),
            check=True,
            capture_output=True,
        )
        time.sleep(OUTAGE_SECONDS)
        subprocess.run(
            _as_postgres(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    pgdata,
                    "-l",
                    str(Path(FAULT_PGROOT) / "server.log"),
                    "-w",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        for grader in graders:
            grader.join(timeout=300)
    finally:
        _stop(server)

    problems = [f"{i}: {g.gave_up!r}" for i, g in enumerate(graders) if g.gave_up is not None]
    assert not problems, problems
    statuses = sum((g.statuses for g in graders), Counter())
    unavailable = [u for g in graders for u in g.unavailable]
    # Clients were told, clearly: 503 with a JSON body, never a 500 page.
    assert statuses[500] == 0, statuses
    assert unavailable, f"no request met the outage: {statuses}"
    for content_type, body in unavailable:
        assert content_type.startswith("application/json")
        assert body["code"] == "database_unavailable" and "unavailable" in body["detail"]
    # Grading resumed, every grade stored once, and nothing half-written.
    rows = _db_rows(url)
    assert rows["partial"] == []
    stored = {key: ann for g in graders for key, ann in g.stored.items()}
    assert len(stored) == GRADERS * GRADES_EACH
    assert rows["keys"] == stored  # each client key: exactly its one annotation, no other
