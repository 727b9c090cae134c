"""Cold start: a fresh gunicorn worker takes concurrent first requests to every page kind.

Production runs ``gunicorn config.wsgi`` with gunicorn.conf.py: gthread workers of 8 threads,
no ``--preload``, so every worker loads the app itself and its first requests arrive while
nothing has been used yet: lazy imports (xarray, pandas, plotly), drf-spectacular's
extensions, template loading. This script

1. builds a study with graded responses and a fit (fake draws, no sampling) in a fresh
   database (SQLite in a temporary directory, or ``DATABASE_URL``'s PostgreSQL, in a
   database of its own),
2. starts ``gunicorn config.wsgi`` from the repository (its gunicorn.conf.py: 1 worker,
   8 threads, no preload) and, as soon as it listens, sends ``--requests`` concurrent
   requests to each page kind at once, shuffled, from ``--clients`` threads, each on a new
   connection (the first ones queue in the backlog while the worker boots),
3. counts the answers per kind: any 5xx, any status other than the kind's expected one, or
   any connection error is an error. Three bursts, each on a new server (``scenarios``):
   8 first requests to /api/schema/; the first draws download followed by 36 report and
   chart renders; ``--requests`` of every kind at once. ``--rounds`` repeats them.

Usage::

    python bench/cold_start.py [--requests 50] [--rounds 3] [--out bench/results/cold_start.json]
    DATABASE_URL=postgres://… python bench/cold_start.py …

With ``BATON_WARMUP=0`` (the server's warm-up off) the run is the results file's variant
``no_warmup`` (``bench/results_io.py``).

``tests/test_cold_start.py`` (slow) runs one round and requires 0 errors.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
SLUG = "cold-start"


@dataclass(frozen=True)
class Kind:
    """One page kind: who asks, how, and the status it must answer."""

    name: str
    method: str
    path: str
    persona: str  # lead, annotator, admin (session cookie), lead-token, annotator-token, anon
    status: int = 200


def page_kinds(slug: str, arm: str) -> list[Kind]:
    s = f"/studies/{slug}"
    return [
        Kind("healthz", "GET", "/healthz", "anon"),
        Kind("login", "GET", "/accounts/login/", "anon"),
        Kind("home", "GET", "/", "annotator"),
        Kind("study home", "GET", f"{s}/annotate/", "annotator"),
        Kind("grade page", "GET", f"{s}/grade/", "annotator"),
        Kind("dashboard", "GET", f"{s}/", "lead"),
        Kind("pair charts", "GET", f"{s}/pair/{arm}/", "lead"),
        Kind("annotators", "GET", f"{s}/annotators/", "lead"),
        Kind("report", "GET", f"{s}/report.html", "lead"),
        Kind("draws download", "GET", f"{s}/draws.nc", "lead"),
        Kind("setup checklist", "GET", f"{s}/setup/", "admin"),
        Kind("setup dimensions", "GET", f"{s}/setup/dimensions/", "admin"),
        Kind("upload page", "GET", f"{s}/upload/", "admin"),
        Kind("audit log", "GET", f"/accounts{s}/audit/", "admin"),
        Kind("tokens", "GET", "/accounts/tokens/", "lead"),
        Kind("django admin", "GET", "/admin/", "admin"),
        Kind("api schema", "GET", "/api/schema/", "lead-token"),
        Kind("api posterior", "GET", f"/api{s}/posterior/", "lead-token"),
        Kind("api fits", "GET", f"/api{s}/fits/", "lead-token"),
        Kind("api labels.csv", "GET", f"/api{s}/labels.csv", "lead-token"),
        Kind("api next", "POST", f"/api{s}/next/", "annotator-token"),
    ]


# --------------------------------------------------------------------------- the data


def prepare() -> dict[str, Any]:
    """In a process of its own (DATABASE_URL set): migrate, build the study, log in."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("BATON_INSECURE_DEV_KEY", "1")
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    from accounts.services import issue_token
    from annotate.models import Membership, Study
    from calibration import services
    from tests.calibration.helpers import FakeFitter, populate
    from tests.factories import MembershipFactory, UserFactory, make_study

    study = make_study(slug=SLUG)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.ACTIVE, side_by_side=False)
    populate(study, prompts_per_region=40, graded_share=0.4, annotators=2, seed=15)
    services.get_fitter = lambda: FakeFitter()  # type: ignore[assignment]
    fit = services.fit_now(study=study)
    assert fit.status == "succeeded", fit.error
    users = {
        "admin": UserFactory(username="cold-admin", is_staff=True),
        "lead": UserFactory(username="cold-lead"),
        "annotator": UserFactory(username="cold-annotator"),
    }
    for role, user in users.items():
        MembershipFactory(study=study, user=user, role=getattr(Membership.Role, role.upper()))
    sessions = {}
    for persona, user in users.items():
        client = Client()
        client.force_login(user)
        sessions[persona] = client.cookies["sessionid"].value
    tokens = {
        f"{p}-token": issue_token(user=users[p], name="cold start").key
        for p in ("lead", "annotator")
    }
    arm = study.arms.filter(role="candidate").order_by("position").first()
    assert arm is not None
    return {"slug": study.slug, "arm": arm.key, "sessions": sessions, "tokens": tokens}


def _database(tmp: Path) -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        return f"sqlite:///{tmp / 'cold.sqlite3'}"
    import psycopg

    name = f"baton_cold_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


def _drop_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    import psycopg

    admin = os.environ["DATABASE_URL"].replace("postgres://", "postgresql://")
    name = urlparse(url).path.lstrip("/")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    url: str, port: int, log: Path, *, secret: str, threads: int = 8
) -> subprocess.Popen:
    """``gunicorn config.wsgi`` as deployed (gunicorn.conf.py), one worker; returns once it
    listens, i.e. before the worker has loaded the app."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DEBUG": "0",
        "SECRET_KEY": secret,  # the one the sessions were signed with
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": str(threads),
        "LOG_LEVEL": "WARNING",
        "TASKS_BACKEND": "django_tasks_db.DatabaseBackend",
    }
    env.pop("BATON_INSECURE_DEV_KEY", None)
    cmd = [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi", "--backlog", "2048"]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=out, start_new_session=True
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.05)
    stop_server(proc)
    raise RuntimeError("gunicorn did not listen within 120 s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # the master we started; it stops its worker
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- the burst


def _request(port: int, kind: Kind, auth: dict[str, Any], timeout: float) -> tuple[int, float]:
    headers = {"Host": "127.0.0.1"}
    if kind.persona in auth["sessions"]:
        headers["Cookie"] = f"sessionid={auth['sessions'][kind.persona]}"
    elif kind.persona in auth["tokens"]:
        headers["Authorization"] = f"Token {auth['tokens'][kind.persona]}"
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(kind.method, kind.path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    except (OSError, http.client.HTTPException):
        return 0, time.perf_counter() - started  # 0: no answer (reset, timeout)
    finally:
        conn.close()


def burst(
    port: int,
    todo: list[Kind],
    auth: dict[str, Any],
    *,
    clients: int,
    lead: Kind | None = None,
) -> dict[str, Any]:
    """Send ``todo`` at once (``lead`` first, 20 ms ahead); per kind: statuses, errors."""
    results: list[tuple[Kind, int, float]] = []
    lock = threading.Lock()
    wave = todo[:clients]
    gate = threading.Barrier(len(wave) + 1)

    def one(kind: Kind, first: bool) -> None:
        if first:
            gate.wait()  # the first wave leaves together
        status, seconds = _request(port, kind, auth, timeout=300)
        with lock:
            results.append((kind, status, seconds))

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients + 1) as pool:
        if lead is not None:
            pool.submit(one, lead, False)
            time.sleep(0.02)
        for i, kind in enumerate(todo):
            pool.submit(one, kind, i < len(wave))
        gate.wait()
    wall = time.perf_counter() - started
    by_kind: dict[str, list[tuple[int, float]]] = defaultdict(list)
    kinds: dict[str, Kind] = {}
    for kind, status, seconds in results:
        by_kind[kind.name].append((status, seconds))
        kinds[kind.name] = kind
    per_kind: dict[str, Any] = {}
    for name, answers in by_kind.items():
        kind = kinds[name]
        statuses = Counter(status for status, _ in answers)
        per_kind[name] = {
            "path": kind.path,
            "method": kind.method,
            "expected": kind.status,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "errors": sum(v for k, v in statuses.items() if k != kind.status),
            "server_errors": sum(v for k, v in statuses.items() if k >= 500 or k == 0),
            "max_seconds": round(max(s for _, s in answers), 3),
        }
    return {
        "requests": len(results),
        "errors": sum(k["errors"] for k in per_kind.values()),
        "server_errors": sum(k["server_errors"] for k in per_kind.values()),
        "wall_seconds": round(wall, 2),
        "kinds": per_kind,
    }


def scenarios(kinds: list[Kind], requests: int, seed: int) -> list[tuple[str, Any]]:
    """Each on a fresh worker: (name, (todo, lead)).

    - ``schema``: 8 concurrent first requests to /api/schema/ (drf-spectacular extensions).
    - ``draws then charts``: the first draws download (it imports xarray, hence pandas),
      then 36 report and chart renders at once (plotly looks pandas up half imported).
    - ``every page kind``: ``requests`` of each kind, shuffled, all at once.
    """
    by = {k.name: k for k in kinds}
    mixed = [k for k in kinds for _ in range(requests)]
    random.Random(seed).shuffle(mixed)
    charts = [by["pair charts"], by["report"], by["dashboard"]] * 12
    return [
        ("schema", ([by["api schema"]] * 8, None)),
        ("draws then charts", (charts, by["draws download"])),
        ("every page kind", (mixed, None)),
    ]


def run(*, requests: int, rounds: int, clients: int, threads: int = 8) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="baton-cold-"))
    url = _database(tmp)
    secret = uuid.uuid4().hex * 2
    try:
        prepared = subprocess.run(
            [sys.executable, __file__, "--prepare"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url, "SECRET_KEY": secret},
            check=True,
            capture_output=True,
            text=True,
        )
        auth = json.loads(prepared.stdout.strip().splitlines()[-1])
        kinds = page_kinds(auth["slug"], auth["arm"])
        out: list[dict[str, Any]] = []
        for r in range(rounds):
            for name, (todo, lead) in scenarios(kinds, requests, seed=r):
                port = _free_port()
                log = tmp / f"gunicorn-{r}-{name.replace(' ', '-')}.log"
                server = start_server(url, port, log, secret=secret, threads=threads)
                try:
                    result = burst(port, todo, auth, clients=clients, lead=lead)
                finally:
                    stop_server(server)
                result["round"], result["scenario"] = r, name
                lines = log.read_text(errors="replace").splitlines()
                result["server_log_tail"] = lines[-40:]
                out.append(result)
    finally:
        _drop_database(url)
    return {
        "database": "postgresql" if url.startswith("postgres") else "sqlite",
        "gunicorn": f"gunicorn.conf.py: 1 worker, gthread, {threads} threads, no preload",
        "requests_per_kind": requests,
        "kinds": len(kinds),
        "clients": clients,
        "warm_up": os.environ.get("BATON_WARMUP", "1") != "0",
        "bursts": out,
        "requests": sum(r["requests"] for r in out),
        "errors": sum(r["errors"] for r in out),
        "server_errors": sum(r["server_errors"] for r in out),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50, help="per page kind (default 50)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh servers (default 3)")
    parser.add_argument("--clients", type=int, default=200, help="client threads (default 200)")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads (default 8)")
    parser.add_argument("--out", type=Path, help="write the JSON result there")
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    # Imported here: tests import this module as bench.cold_start, without bench/ on the path.
    from results_io import add_variant_argument, header, write_results

    add_variant_argument(parser, "default with BATON_WARMUP=0: no_warmup")
    args = parser.parse_args()
    if args.prepare:
        print(json.dumps(prepare()))
        return
    head = header("cold_start", env=("BATON_WARMUP",))
    result = run(
        requests=args.requests, rounds=args.rounds, clients=args.clients, threads=args.threads
    )
    variant = args.variant or (None if result["warm_up"] else "no_warmup")
    if args.out:
        write_results(head, result, variant=variant, path=args.out)
    summary = {k: v for k, v in result.items() if k != "bursts"}
    print(json.dumps(summary, indent=2))
    for r in result["bursts"]:
        bad = {k: v["statuses"] for k, v in r["kinds"].items() if v["errors"]}
        print(
            f"round {r['round']} {r['scenario']}: {r['requests']} requests, "
            f"{r['errors']} errors, {r['wall_seconds']} s {json.dumps(bad) if bad else ''}"
        )


if __name__ == "__main__":
    main()
