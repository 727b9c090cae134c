"""Next-item latency over loopback HTTP: PostgreSQL, 1M responses, 20 concurrent annotators.

What it does
------------
1. Creates (once) a separate database ``baton_bench`` on the PostgreSQL server of
   ``--admin-url``, migrates it, and builds a study of ``--responses`` responses with
   server-side ``INSERT … SELECT generate_series`` (3 arms × 3 regions × 20 judge cells,
   ~200-character texts), then ``VACUUM ANALYZE`` so index-only scans are possible.
   A later run reuses the data and only clears the grading state.
2. Starts a real server: ``gunicorn config.wsgi`` (gthread workers) on 127.0.0.1 with
   ``DEBUG=0``, a ``SECRET_KEY``, ``ALLOWED_HOSTS`` and ``SECURE_SSL_REDIRECT=0``.
3. Runs a bounded load generator: ``--annotators`` threads, each an annotator with an API
   token, doing ``POST /api/studies/{slug}/next/`` → ``POST /api/assignments/{id}/submit/``
   cycles for ``--duration`` seconds (after ``--warmup`` seconds not measured), at most
   ``--max-cycles`` per annotator, loopback only.
4. Stops the server and checks the database: leases of one response held by two annotators
   at once (overlap picks excepted), responses with more live grades than overlap picks
   explain, acknowledged grades missing or stored twice.
5. Writes ``bench/results/next_item_latency.json``.

Run::

    .venv/bin/python bench/next_item_latency.py                       # 1M responses
    .venv/bin/python bench/next_item_latency.py --responses 100000    # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "next_item_latency.json"
SLUG = "bench-latency"
LABELS = {"correctness": 1, "refusal": 0, "style": 4}

GUNICORN_CONFIG = """
def when_ready(server):
    # Import the calibration stack (PyMC) once in the master, before the workers fork,
    # so the first grade a worker takes does not pay for it.
    import calibration.selection  # noqa: F401
    import calibration.services  # noqa: F401
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--admin-url", default="postgres://baton@127.0.0.1:55432/baton")
    p.add_argument("--database", default="baton_bench")
    p.add_argument("--responses", type=int, default=1_000_000)
    p.add_argument("--annotators", type=int, default=20)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=8.0)
    p.add_argument("--max-cycles", type=int, default=5000, help="per annotator")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--threads", type=int, default=5)
    p.add_argument("--port", type=int, default=0, help="0: a free port")
    p.add_argument("--rebuild", action="store_true", help="drop and rebuild the study")
    p.add_argument("--breakdown-rounds", type=int, default=100)
    p.add_argument(
        "--think",
        type=float,
        nargs="+",
        default=[0.0, 2.0],
        help="pause after each submit, seconds; one scenario per value",
    )
    p.add_argument("--output", type=Path, default=RESULTS)
    return p.parse_args()


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
    sys.path.insert(0, str(ROOT))
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
            cur.execute(
                "DELETE FROM annotate_judgescore WHERE response_id IN "
                "(SELECT id FROM annotate_response WHERE study_id = %s)",
                [study.pk],
            )
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
                        (prompt_id, arm_id, study_id, region_id, text, metadata, cell)
                    SELECT p.id, a.id, p.study_id, p.region_id,
                           'Open Settings, then Account, then Transfer. Your saved settings '
                           || 'move with the subscription; sign in on the other account to '
                           || 'confirm. Reference ' || p.external_id || '/' || a.id,
                           '{"model": "hidden"}'::jsonb,
                           floor(random() * 2)::int || '.' || floor(random() * 2)::int
                           || '.' || floor(random() * 5)::int
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
    Fit.objects.filter(study=study).delete()


def issue_tokens(users) -> list[str]:
    try:
        from accounts.services import issue_token
    except ImportError:
        from rest_framework.authtoken.models import Token

        return [Token.objects.get_or_create(user=u)[0].key for u in users]
    return [issue_token(user=u, name="latency bench").key for u in users]


def query_plans(study) -> dict[str, str]:
    """EXPLAIN ANALYZE of the two in-cell queries of a pick (count, then offset)."""
    from django.db import connection

    from annotate.models import Response

    row = Response.objects.filter(study=study).values("arm_id", "region_id", "cell").first()
    cell = Response.objects.filter(study=study, **row)
    out = {"cell_size": cell.count()}
    for name, qs in (
        ("count", cell),
        ("offset", cell.values_list("pk", flat=True)[out["cell_size"] // 2 :][:1]),
    ):
        sql, params = (qs.values("pk") if name == "count" else qs).query.sql_with_params()
        if name == "count":
            sql = f"SELECT COUNT(*) FROM ({sql}) AS c"
        with connection.cursor() as cur:
            cur.execute(f"EXPLAIN (ANALYZE, BUFFERS OFF, TIMING ON) {sql}", params)
            out[name] = "\n".join(r[0] for r in cur.fetchall())
    return out


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str, port: int, workers: int, threads: int) -> subprocess.Popen:
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
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
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


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # the gunicorn master we started; it stops its workers
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- load


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


def run_load(
    base: str,
    tokens: list[str],
    *,
    server_pid: int,
    warmup: float,
    duration: float,
    max_cycles: int,
    think: float,
):
    import requests

    t_start = time.monotonic()
    t_measure = t_start + warmup
    t_end = t_measure + duration
    lock = threading.Lock()
    next_ms: list[float] = []
    submit_ms: list[float] = []
    statuses: Counter[str] = Counter()
    acknowledged: list[str] = []
    errors: list[str] = []

    def annotator(token: str) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        mine_next, mine_submit, mine_status, mine_ack = [], [], Counter(), []
        try:
            for _ in range(max_cycles):
                if time.monotonic() >= t_end:
                    break
                measured = time.monotonic() >= t_measure
                t0 = time.perf_counter()
                res = session.post(f"{base}/api/studies/{SLUG}/next/", timeout=30)
                t1 = time.perf_counter()
                mine_status[f"next {res.status_code}"] += 1
                if measured:
                    mine_next.append((t1 - t0) * 1000)
                if res.status_code != 200:
                    time.sleep(0.2)
                    continue
                item = res.json()
                key = str(uuid.uuid4())
                t0 = time.perf_counter()
                res = session.post(
                    f"{base}/api/assignments/{item['assignment_id']}/submit/",
                    json={"client_key": key, "labels": LABELS, "time_spent_ms": 1000},
                    timeout=30,
                )
                t1 = time.perf_counter()
                mine_status[f"submit {res.status_code}"] += 1
                if measured:
                    mine_submit.append((t1 - t0) * 1000)
                if res.status_code in (200, 201):
                    mine_ack.append(key)
                if think:
                    time.sleep(think)
        except Exception as error:  # reported, the run goes on
            errors.append(repr(error))
        with lock:
            next_ms.extend(mine_next)
            submit_ms.extend(mine_submit)
            statuses.update(mine_status)
            acknowledged.extend(mine_ack)

    threads = [threading.Thread(target=annotator, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    # CPU seconds spent by the server's workers, the database backends and this process
    # over the measured window: what a cycle costs, whatever the machine's other load.
    time.sleep(max(0.0, t_measure - time.monotonic()))
    pids = cpu_pids(server_pid)
    cpu_before = {k: cpu_ticks(v) for k, v in pids.items()}
    time.sleep(max(0.0, t_end - time.monotonic()))
    cpu_after = {k: cpu_ticks(v) for k, v in pids.items()}
    for t in threads:
        t.join(timeout=warmup + duration + 120)
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = {
        k: round(
            sum(
                cpu_after[k][pid] - cpu_before[k][pid]
                for pid in cpu_after[k].keys() & cpu_before[k].keys()
            )
            / ticks,
            2,
        )
        for k in pids
    }
    return {
        "cpu_seconds": cpu,
        "next_ms": next_ms,
        "submit_ms": submit_ms,
        "statuses": dict(statuses),
        "acknowledged": acknowledged,
        "errors": errors,
        "measured_seconds": duration,
    }


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


def service_breakdown(study, user, rounds: int) -> dict[str, dict[str, float]]:
    """In-process, one annotator, sequential: where the time of ``next_item`` goes.

    ``next_item`` end to end; the selection rule's part (``selection_status`` and
    ``pick_cell``) timed by wrapping the queue's two call sites; the queue's own part is the
    difference. Also the queue alone with its uniform fallback (no selection rule).
    """
    from annotate import queue

    timings: dict[str, list[float]] = {"next_item": [], "selection": [], "queue_only": []}
    spent = [0.0]
    real_pick, real_status = queue._selection_pick, queue._selection_status

    def timed(fn):
        def wrapper(**kwargs):
            t0 = time.perf_counter()
            try:
                return fn(**kwargs)
            finally:
                spent[0] += time.perf_counter() - t0

        return wrapper

    queue._selection_pick, queue._selection_status = timed(real_pick), timed(real_status)
    try:
        for _ in range(rounds):
            spent[0] = 0.0
            t0 = time.perf_counter()
            assignment = queue.next_item(study=study, annotator=user)
            timings["next_item"].append((time.perf_counter() - t0) * 1000)
            timings["selection"].append(spent[0] * 1000)
            queue.submit_annotation(
                assignment_id=assignment.pk, annotator=user, client_key=uuid.uuid4(), labels=LABELS
            )
    finally:
        queue._selection_pick, queue._selection_status = real_pick, real_status
    real_module = queue._selection_module
    queue._selection_module = lambda: None
    try:
        for _ in range(rounds):
            t0 = time.perf_counter()
            assignment = queue.next_item(study=study, annotator=user)
            timings["queue_only"].append((time.perf_counter() - t0) * 1000)
            queue.submit_annotation(
                assignment_id=assignment.pk, annotator=user, client_key=uuid.uuid4(), labels=LABELS
            )
    finally:
        queue._selection_module = real_module
    own = [a - b for a, b in zip(timings["next_item"], timings["selection"], strict=True)]
    return {
        "next_item_ms": percentiles(timings["next_item"]),
        "selection_rule_ms": percentiles(timings["selection"]),
        "queue_own_ms": percentiles(own),
        "queue_with_uniform_fallback_ms": percentiles(timings["queue_only"]),
    }


def database_time(study, user) -> dict[str, Any]:
    """The SQL of one ``next_item`` (after a few warm calls): wall time per statement as the
    client saw it, and PostgreSQL's own execution time (EXPLAIN ANALYZE, re-run after).

    The gap between the two is time spent waiting for a CPU on a shared machine, not work.
    """
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from annotate import queue

    for _ in range(3):
        a = queue.next_item(study=study, annotator=user)
        queue.submit_annotation(
            assignment_id=a.pk, annotator=user, client_key=uuid.uuid4(), labels=LABELS
        )
    with CaptureQueriesContext(connection) as ctx:
        a = queue.next_item(study=study, annotator=user)
    queue.submit_annotation(
        assignment_id=a.pk, annotator=user, client_key=uuid.uuid4(), labels=LABELS
    )
    rows = []
    with connection.cursor() as cur:
        for q in ctx.captured_queries:
            sql = q["sql"]
            executed = None
            if sql.lstrip().startswith("SELECT") and "FOR NO KEY UPDATE" not in sql:
                cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
                executed = round(cur.fetchone()[0][0]["Execution Time"], 3)
            rows.append({"wall_ms": float(q["time"]) * 1000, "exec_ms": executed, "sql": sql[:120]})
    return {
        "policy": a.policy,
        "statements": len(rows),
        "wall_ms_total": round(sum(r["wall_ms"] for r in rows), 1),
        "exec_ms_total_selects": round(sum(r["exec_ms"] or 0 for r in rows), 2),
        "statements_detail": rows,
    }


# --------------------------------------------------------------------------- checks


def database_checks(study, acknowledged: list[str]) -> dict[str, int]:
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
            "SELECT client_key::text FROM annotate_annotation WHERE study_id = %s", [study.pk]
        )
        stored = Counter(r[0] for r in cur.fetchall())
        cur.execute(
            "SELECT policy, count(*) FROM annotate_assignment WHERE study_id = %s GROUP BY 1",
            [study.pk],
        )
        policies = dict(cur.fetchall())
    ack = set(acknowledged)
    return {
        "double_leases": double_leases,
        "responses_with_unexplained_second_grade": unexplained_second_grades,
        "acknowledged_grades": len(ack),
        "acknowledged_missing": sum(1 for k in ack if stored.get(k, 0) == 0),
        "acknowledged_stored_twice": sum(1 for k in ack if stored.get(k, 0) > 1),
        "graded_annotations": graded,
        "graded_responses": graded_responses,
        "assignments_by_policy": policies,
    }


def main() -> None:
    args = parse_args()
    url = bench_url(args.admin_url, args.database)
    ensure_database(args.admin_url, args.database)
    setup_django(url)
    from django.db import connections

    from annotate.models import Response
    from calibration import selection

    study, build_seconds, users = build_study(args.responses, args.annotators, args.rebuild)
    reset_grading(study)
    selection.forget_cell_totals()
    n = Response.objects.filter(study=study).count()
    plans = query_plans(study)
    tokens = issue_tokens(users)
    connections.close_all()

    port = args.port or free_port()
    load_before = os.getloadavg()
    server = start_server(url, port, args.workers, args.threads)
    scenarios = {}
    try:
        for think in args.think:
            reset_grading(study)
            connections.close_all()
            load = run_load(
                f"http://127.0.0.1:{port}",
                tokens,
                server_pid=server.pid,
                warmup=args.warmup,
                duration=args.duration,
                max_cycles=args.max_cycles,
                think=think,
            )
            scenarios[f"think_{think:g}s"] = scenario_result(study, load, args, think)
            connections.close_all()
    finally:
        stop_server(server)
    load_after = os.getloadavg()
    breakdown = service_breakdown(study, users[0], args.breakdown_rounds)
    sql_time = database_time(study, users[1])
    result = {
        "what": "POST /api/studies/{slug}/next/ latency over loopback HTTP, next→submit cycles",
        "database": "PostgreSQL " + _pg_version(),
        "responses": n,
        "cells": "3 arms × 3 regions × 20 judge cells (180), uniform random cells",
        "selection": "calibration.selection.pick_cell with no fit yet (uniform over cells)",
        "build": build_record(build_seconds, n),
        "annotators": args.annotators,
        "server": {
            "command": f"gunicorn config.wsgi --preload --workers {args.workers} "
            f"--worker-class gthread --threads {args.threads} --bind 127.0.0.1:{port}",
            "env": "DEBUG=0 SECRET_KEY=… ALLOWED_HOSTS=127.0.0.1 SECURE_SSL_REDIRECT=0",
        },
        "load_generator": {
            "how": "Python threads with requests.Session, one per annotator, same host; "
            "each cycle POST next then POST submit, then `think` seconds of pause",
            "warmup_seconds": args.warmup,
            "measured_seconds": args.duration,
            "max_cycles_per_annotator": args.max_cycles,
        },
        "target": {"next_item_p95_ms": 50},
        "scenarios": scenarios,
        "service_breakdown_in_process": {
            "what": f"{args.breakdown_rounds} sequential next_item+submit calls, one annotator, "
            "after the HTTP run (grades of the run still in place), no HTTP",
            **breakdown,
        },
        "one_next_item_sql": sql_time,
        "query_plans": plans,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
            "note": "2 cores shared with the load generator and other work on the machine",
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        name: {k: sc[k] for k in ("next_item_ms", "throughput_per_s", "cpu_ms_per_cycle")}
        | {"double_leases": sc["checks"]["double_leases"]}
        for name, sc in scenarios.items()
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"scenarios": summary, "breakdown": breakdown}, indent=2))


BUILD_RECORD = RESULTS.with_name("next_item_latency_build.json")


def build_record(seconds: float, n: int) -> dict[str, Any]:
    """How long building the data took: now, or as recorded when it was built."""
    if seconds:
        record = {
            "seconds": round(seconds, 1),
            "responses": n,
            "how": "INSERT … SELECT generate_series (prompts, then responses) + VACUUM ANALYZE",
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
        BUILD_RECORD.write_text(json.dumps(record, indent=2) + "\n")
        return record
    if BUILD_RECORD.exists():
        return {**json.loads(BUILD_RECORD.read_text()), "reused_by_this_run": True}
    return {"reused_by_this_run": True}


def scenario_result(study, load: dict[str, Any], args: argparse.Namespace, think: float):
    nexts = load["next_ms"]
    cycles = max(1, len(load["submit_ms"]))
    return {
        "think_seconds": think,
        "statuses": load["statuses"],
        "errors": load["errors"][:10],
        "next_item_ms": percentiles(nexts),
        "submit_ms": percentiles(load["submit_ms"]),
        "throughput_per_s": {
            "next": round(len(nexts) / args.duration, 1),
            "submit": round(len(load["submit_ms"]) / args.duration, 1),
        },
        "cpu_seconds_in_measured_window": load["cpu_seconds"],
        "cpu_ms_per_cycle": {
            k: round(v * 1000 / cycles, 1) for k, v in load["cpu_seconds"].items()
        },
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "p95_target_met": bool(nexts) and percentiles(nexts)["p95"] <= 50,
        "checks": database_checks(study, load["acknowledged"]),
    }


def _pg_version() -> str:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        return cur.fetchone()[0]


if __name__ == "__main__":
    main()
