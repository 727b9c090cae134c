"""Shared by the HTTP benchmarks of the annotation queue (next_item_latency, load_test).

The bench database and its study of generated responses, a real gunicorn server, an
annotator's next → submit loop over loopback HTTP, CPU accounting by process group
(server workers, database backends, load generator), percentiles, and the database checks
that no grade was lost or counted twice.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
SLUG = "bench-latency"
LABELS = {"correctness": 1, "refusal": 0, "style": 4}

GUNICORN_CONFIG = """
def when_ready(server):
    # Import the calibration stack (PyMC) once in the master, before the workers fork,
    # so the first grade a worker takes does not pay for it.
    import calibration.selection  # noqa: F401
    import calibration.services  # noqa: F401
"""


def bench_url(admin_url: str, database: str) -> str:
    parts = urlparse(admin_url)
    return urlunparse(parts._replace(path=f"/{database}"))


def ensure_database(admin_url: str, database: str) -> None:
    import psycopg

    with psycopg.connect(admin_url.replace("postgres://", "postgresql://"), autocommit=True) as c:
        exists = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            c.execute(f'CREATE DATABASE "{database}"')


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("BATON_INSECURE_DEV_KEY", "1")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=ROOT,
        env={**os.environ},
        check=True,
    )
    import django

    django.setup()


# --------------------------------------------------------------------------- data


def build_study(n_responses: int, annotators: int, rebuild: bool) -> tuple[Any, float, list[Any]]:
    """The bench study with n responses (built by SQL), its annotators; build seconds."""
    from decimal import Decimal

    from django.db import connection, transaction

    from annotate.models import Arm, Dimension, Membership, Region, Response, Study

    study = Study.objects.filter(slug=SLUG).first()
    if study is not None and (
        rebuild or Response.objects.filter(study=study).count() != n_responses
    ):
        reset_grading(study)
        with connection.cursor() as cur:
            # By SQL: the ORM's cascade would load a million rows into Python.
            cur.execute("DELETE FROM annotate_response WHERE study_id = %s", [study.pk])
            cur.execute("DELETE FROM annotate_prompt WHERE study_id = %s", [study.pk])
        study.delete()
        study = None
    seconds = 0.0
    if study is None:
        t0 = time.perf_counter()
        with transaction.atomic():
            study = Study.objects.create(
                name="Latency bench",
                slug=SLUG,
                status=Study.Status.ACTIVE,
                label_budget=1_000_000,
            )
            arms = [
                Arm.objects.create(study=study, key="inc", model_name="acme-1", role="incumbent"),
                Arm.objects.create(study=study, key="c1", model_name="nova-1", role="candidate"),
                Arm.objects.create(study=study, key="c2", model_name="nova-2", role="candidate"),
            ]
            Dimension.objects.create(study=study, key="correctness", title="Correctness")
            Dimension.objects.create(study=study, key="refusal", title="Refusal", position=1)
            Dimension.objects.create(
                study=study,
                key="style",
                title="Style",
                scale="ordinal",
                scale_max=5,
                pass_threshold=4,
                judge_bins=5,
                position=2,
            )
            regions = [
                Region.objects.create(
                    study=study, key=k, name=k.upper(), traffic_share=Decimal(s), position=i
                )
                for i, (k, s) in enumerate((("eu", "0.5"), ("us", "0.3"), ("apac", "0.2")))
            ]
            n_prompts = -(-n_responses // len(arms))
            with connection.cursor() as cur:
                cur.execute("SET LOCAL synchronous_commit = off")
                cur.execute(
                    """
                    INSERT INTO annotate_prompt (study_id, region_id, external_id, text, metadata)
                    SELECT %s, (%s::bigint[])[1 + g %% 3], 'p' || g,
                           'Customer question ' || g || ': how do I move my subscription to '
                           || 'another account without losing my saved settings?', '{}'::jsonb
                    FROM generate_series(0, %s - 1) AS g
                    """,
                    [study.pk, [r.pk for r in regions], n_prompts],
                )
                cur.execute(
                    """
                    INSERT INTO annotate_response
                        (prompt_id, arm_id, study_id, region_id, text, metadata, cell, scores)
                    SELECT p.id, a.id, p.study_id, p.region_id,
                           'Open Settings, then Account, then Transfer. Your saved settings '
                           || 'move with the subscription; sign in on the other account to '
                           || 'confirm. Reference ' || p.external_id || '/' || a.id,
                           '{"model": "hidden"}'::jsonb,
                           floor(random() * 2)::int || '.' || floor(random() * 2)::int
                           || '.' || floor(random() * 5)::int,
                           '{}'::jsonb
                    FROM annotate_prompt p CROSS JOIN unnest(%s::bigint[]) AS a(id)
                    WHERE p.study_id = %s
                    ORDER BY p.id, a.id
                    LIMIT %s
                    """,
                    [[a.pk for a in arms], study.pk, n_responses],
                )
        with connection.cursor() as cur:
            cur.execute("VACUUM ANALYZE annotate_prompt")
            cur.execute("VACUUM ANALYZE annotate_response")
        # Built by SQL, not by an import: count the cells as an import would.
        from calibration.selection import refresh_cell_totals

        refresh_cell_totals(study=study)
        seconds = time.perf_counter() - t0
    from django.contrib.auth import get_user_model

    users = []
    for i in range(annotators):
        user, _ = get_user_model().objects.get_or_create(username=f"bench-annotator-{i}")
        Membership.objects.get_or_create(
            study=study, user=user, defaults={"role": Membership.Role.ANNOTATOR}
        )
        users.append(user)
    return study, seconds, users


def reset_grading(study) -> None:
    from django.db import connection

    from calibration.models import Fit

    with connection.cursor() as cur:
        cur.execute(
            "DELETE FROM annotate_label WHERE annotation_id IN "
            "(SELECT id FROM annotate_annotation WHERE study_id = %s)",
            [study.pk],
        )
        cur.execute("DELETE FROM annotate_annotation WHERE study_id = %s", [study.pk])
        cur.execute("DELETE FROM annotate_assignment WHERE study_id = %s", [study.pk])
        cur.execute("VACUUM ANALYZE annotate_annotation")
        cur.execute("VACUUM ANALYZE annotate_assignment")
        # Autovacuum's job in a deployment. A VACUUM right after the build's insert leaves
        # the pages not all-visible (measured on PostgreSQL 15: relallvisible 0 of 1,082
        # pages after one, all of them after a second VACUUM 2 s later, with synchronous
        # commit either way), and index-only scans of the pick then visit the heap for
        # every row they skip; this one, before every scenario, sets them.
        cur.execute("VACUUM annotate_response")
    Fit.objects.filter(study=study).delete()


def all_visible_share(table: str = "annotate_response") -> float:
    """Share of the table's pages marked all-visible (index-only scans skip their heap)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT relallvisible::float / GREATEST(relpages, 1) FROM pg_class WHERE relname = %s",
            [table],
        )
        return round(float(cur.fetchone()[0]), 3)


def issue_tokens(users) -> list[str]:
    try:
        from accounts.services import issue_token
    except ImportError:
        from rest_framework.authtoken.models import Token

        return [Token.objects.get_or_create(user=u)[0].key for u in users]
    return [issue_token(user=u, name="latency bench").key for u in users]


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class ServerSettings:
    """How gunicorn runs. Defaults reasoned for 2 cores shared with PostgreSQL and the load
    generator, not tuned by measurement (the machine was too loaded to tell configurations
    apart): one process per core, since each runs Python under one GIL and more only add
    context switches when the cores are busy; 8 threads each, to overlap database waits;
    a deep listen backlog so a burst of connections queues instead of being refused.

    ``keep_alive`` must outlast an annotator's pause: gunicorn's default (2 s) closes an
    idle connection just as a client that paused 2 s sends its next request on it, and
    that request dies with "connection reset by peer".
    """

    workers: int = 2
    threads: int = 8
    keep_alive: float = 75.0
    backlog: int = 2048

    def args(self) -> list[str]:
        return [
            "--workers",
            str(self.workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(self.threads),
            "--keep-alive",
            f"{self.keep_alive:g}",
            "--backlog",
            str(self.backlog),
        ]


def start_server(url: str, port: int, settings: ServerSettings) -> subprocess.Popen:
    config = Path(tempfile.mkdtemp(prefix="baton-bench-")) / "gunicorn_conf.py"
    config.write_text(GUNICORN_CONFIG)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DEBUG": "0",
        "SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",
        "LOG_LEVEL": "WARNING",
        # Persistent connections for the whole run, as a production server would keep them.
        "DATABASE_CONN_MAX_AGE": "600",
        "TASKS_BACKEND": "django_tasks_db.DatabaseBackend",
    }
    env.pop("BATON_INSECURE_DEV_KEY", None)
    cmd = [
        str(Path(sys.executable).parent / "gunicorn"),
        "config.wsgi",
        "--config",
        str(config),
        "--preload",
        "--bind",
        f"127.0.0.1:{port}",
        *settings.args(),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return proc
            except OSError:
                time.sleep(0.3)
        stop_server(proc)
        raise RuntimeError("gunicorn did not start within 120 s")
    finally:
        # gunicorn has read its config file once it listens (or it failed): remove it.
        shutil.rmtree(config.parent, ignore_errors=True)


def server_command(settings: ServerSettings, port: int) -> str:
    return " ".join(
        ["gunicorn config.wsgi --preload", f"--bind 127.0.0.1:{port}", *settings.args()]
    )


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # the gunicorn master we started; it stops its workers
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- CPU


def cpu_pids(server_pid: int) -> dict[str, list[int]]:
    """Process ids of the gunicorn workers, the bench database's backends, and this process."""
    from django.db import connection

    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == server_pid:
            workers.append(int(stat.parent.name))
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        backends = [r[0] for r in cur.fetchall()]
    return {"server": [server_pid, *workers], "database": backends, "load_generator": [os.getpid()]}


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    """utime + stime of each process still alive (a process that exits is left out)."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = int(fields[11]) + int(fields[12])
    return out


class CpuMeter:
    """CPU seconds of the server, the database backends and this process between start/stop.

    Processes are listed at both ends: one that appeared in between (a database backend
    opened by the server's first request, a gunicorn worker forked late) counts in full,
    since its whole life lies inside the window; one that exited is left out.
    """

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.before: dict[str, dict[int, int]] = {}

    def start(self) -> None:
        self.before = {k: cpu_ticks(v) for k, v in cpu_pids(self.server_pid).items()}

    def stop(self) -> dict[str, float]:
        after = {k: cpu_ticks(v) for k, v in cpu_pids(self.server_pid).items()}
        ticks = os.sysconf("SC_CLK_TCK")
        return {
            k: round(sum(t - self.before[k].get(p, 0) for p, t in after[k].items()) / ticks, 2)
            for k in after
        }


# --------------------------------------------------------------------------- load


@dataclass
class Tally:
    """What all annotator threads saw; ``add`` merges one thread's part under the lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    ms: dict[str, list[float]] = field(default_factory=lambda: {"next": [], "submit": []})
    statuses: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    acknowledged: dict[str, dict[str, int]] = field(default_factory=dict)  # key -> labels
    retried_submits: int = 0

    def add(self, part: Tally) -> None:
        with self.lock:
            for k, v in part.ms.items():
                self.ms.setdefault(k, []).extend(v)
            self.statuses.update(part.statuses)
            self.errors.extend(part.errors)
            self.acknowledged.update(part.acknowledged)
            self.retried_submits += part.retried_submits

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s.split()[-1].startswith("5"))


def _session(token: str) -> Any:
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    return session


def annotate_loop(
    base: str,
    token: str,
    tally: Tally,
    *,
    grades: int,
    until: float,
    measure_from: float,
    think: Callable[[], float],
    labels: Callable[[], dict[str, int]] = lambda: dict(LABELS),
    submit_attempts: int = 3,
) -> None:
    """One annotator: POST next, POST submit with a fresh client key, pause ``think()``.

    Stops after ``grades`` acknowledged grades or at ``until`` (monotonic). A submit that
    fails on the network is sent again with the *same* client key (the API is idempotent
    by key: a replay answers 200 with the first annotation), so an acknowledged grade is
    one the server says it stored. Latencies count from ``measure_from`` on.
    """
    import requests

    mine = Tally()
    session = _session(token)
    done = 0
    try:
        while done < grades and time.monotonic() < until:
            measured = time.monotonic() >= measure_from
            t0 = time.perf_counter()
            try:
                res = session.post(f"{base}/api/studies/{SLUG}/next/", timeout=30)
            except requests.RequestException as error:
                mine.errors.append(f"next: {error!r}")
                session = _session(token)
                time.sleep(0.2)
                continue
            if measured:
                mine.ms["next"].append((time.perf_counter() - t0) * 1000)
            mine.statuses[f"next {res.status_code}"] += 1
            if res.status_code != 200:
                time.sleep(0.2)
                continue
            assignment = res.json()["assignment_id"]
            key, values = str(uuid.uuid4()), labels()
            for attempt in range(submit_attempts):
                t0 = time.perf_counter()
                try:
                    res = session.post(
                        f"{base}/api/assignments/{assignment}/submit/",
                        json={"client_key": key, "labels": values, "time_spent_ms": 1000},
                        timeout=30,
                    )
                except requests.RequestException as error:
                    mine.errors.append(f"submit: {error!r}")
                    mine.retried_submits += attempt + 1 < submit_attempts
                    session = _session(token)
                    continue
                if measured:
                    mine.ms["submit"].append((time.perf_counter() - t0) * 1000)
                mine.statuses[f"submit {res.status_code}"] += 1
                if res.status_code in (200, 201):
                    mine.acknowledged[key] = values
                    done += 1
                break
            pause = think()
            if pause > 0:
                time.sleep(pause)
    finally:
        tally.add(mine)


def percentiles(values: list[float]) -> dict[str, float]:
    import numpy as np

    if not values:
        return {"n": 0}
    a = np.asarray(values)
    return {
        "n": int(a.size),
        "p50": round(float(np.percentile(a, 50)), 2),
        "p95": round(float(np.percentile(a, 95)), 2),
        "p99": round(float(np.percentile(a, 99)), 2),
        "mean": round(float(a.mean()), 2),
        "max": round(float(a.max()), 2),
    }


def machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "note": "2 cores shared by the server, PostgreSQL, the load generator and other work",
    }


# --------------------------------------------------------------------------- checks


def database_checks(study, acknowledged: dict[str, dict[str, int]]) -> dict[str, Any]:
    """What the database holds after a run, against what the server acknowledged.

    ``acknowledged`` maps each client key the server answered 200/201 for to the labels
    sent with it. Lost: acknowledged but not stored as a live grade. Counted twice: a
    client key stored more than once, or a response graded by more annotators than its
    overlap leases explain. Labels: each stored grade has exactly the labels sent.
    """
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT count(*) FROM annotate_assignment a
            JOIN annotate_assignment b
              ON a.response_id = b.response_id AND a.id < b.id
             AND a.annotator_id <> b.annotator_id
            WHERE a.study_id = %s AND a.policy <> 'overlap' AND b.policy <> 'overlap'
              AND b.leased_at < COALESCE(a.completed_at, a.expires_at)
              AND a.leased_at < COALESCE(b.completed_at, b.expires_at)
            """,
            [study.pk],
        )
        double_leases = cur.fetchone()[0]
        cur.execute(
            """
            SELECT count(*) FROM (
              SELECT g.response_id, count(*) AS n,
                     (SELECT count(*) FROM annotate_assignment o
                      WHERE o.response_id = g.response_id AND o.policy = 'overlap'
                        AND o.completed_at IS NOT NULL) AS overlaps
              FROM annotate_annotation g
              WHERE g.study_id = %s AND g.status = 'graded' AND g.undone_at IS NULL
              GROUP BY g.response_id
            ) s WHERE s.n > 1 + s.overlaps
            """,
            [study.pk],
        )
        unexplained_second_grades = cur.fetchone()[0]
        cur.execute(
            "SELECT count(*), count(DISTINCT response_id) FROM annotate_annotation "
            "WHERE study_id = %s AND status = 'graded' AND undone_at IS NULL",
            [study.pk],
        )
        graded, graded_responses = cur.fetchone()
        cur.execute(
            """
            SELECT a.client_key::text, a.status, a.undone_at IS NULL, d.key, l.value
            FROM annotate_annotation a
            LEFT JOIN annotate_label l ON l.annotation_id = a.id
            LEFT JOIN annotate_dimension d ON d.id = l.dimension_id
            WHERE a.study_id = %s
            """,
            [study.pk],
        )
        stored: dict[str, list[tuple[str, bool, str | None, int | None]]] = {}
        for key, status, live, dim, value in cur.fetchall():
            stored.setdefault(key, []).append((status, live, dim, value))
        cur.execute(
            "SELECT client_key::text, count(*) FROM annotate_annotation WHERE study_id = %s "
            "GROUP BY 1 HAVING count(*) > 1",
            [study.pk],
        )
        keys_twice = len(cur.fetchall())
        cur.execute(
            "SELECT policy, count(*) FROM annotate_assignment WHERE study_id = %s GROUP BY 1",
            [study.pk],
        )
        policies = dict(cur.fetchall())

    def live_grade(rows) -> bool:
        return any(status == "graded" and live for status, live, _, _ in rows)

    wrong_labels = 0
    for key, sent in acknowledged.items():
        rows = stored.get(key, [])
        got = {dim: value for _, _, dim, value in rows if dim is not None}
        if rows and (got != sent or len([r for r in rows if r[2] is not None]) != len(sent)):
            wrong_labels += 1
    return {
        "acknowledged_grades": len(acknowledged),
        "acknowledged_missing": sum(1 for k in acknowledged if not live_grade(stored.get(k, []))),
        "client_keys_stored_twice": keys_twice,
        "acknowledged_with_wrong_labels": wrong_labels,
        "stored_but_not_acknowledged": sum(1 for k in stored if k not in acknowledged),
        "double_leases": double_leases,
        "responses_with_unexplained_second_grade": unexplained_second_grades,
        "graded_annotations": graded,
        "graded_responses": graded_responses,
        "assignments_by_policy": policies,
    }


def pg_version() -> str:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        return cur.fetchone()[0]
