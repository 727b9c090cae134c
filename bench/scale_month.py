"""Scale: the reference month (5.3M interactions × 3 arms, ~16M responses) end to end.

The reference case is a production QA system: 5.3 million interactions a month in six
regions, three arms (one incumbent, two candidates), judged on three dimensions, so ~16M
responses and ~48M judge scores. This bench builds that month and measures the app at that
size, only through its public entry points:

1. **generate** — the month as JSONL under /tmp, streamed: ``--interactions`` lines, each a
   prompt (~120 characters) with three responses (~400 characters, texts from
   ``bench/import_speed.py``'s generator) judged on correctness (continuous 0..1, binned by
   this import's quantiles into 4), refusal (binary) and style (Likert 1..5); the region of
   a line is drawn by the six regions' traffic shares. A sidecar ``<file>.params.json``
   holds the parameters: a later run with the same ones reuses the file.
2. **import** — into PostgreSQL (``DATABASE_URL``; a scratch database ``<name>_bench_scale``
   is dropped and created), through ``annotate.imports.importing.import_file``, in a fresh
   Python process so its peak RSS is the import's own; then ``VACUUM ANALYZE`` (autovacuum's
   job in a deployment), timed apart. Responses/s, CPU of both sides, peak RSS.
3. At that size, each step skippable (``--skip-STEP``); ``--skip-import`` resumes on the
   database of an earlier run (its grades and fits are cleared first):

   * **refit** — a real ``manage.py db_worker`` and a real gunicorn server (as
     ``bench/http_common.py`` starts it); one annotator grades over HTTP until a grade
     triggers a fit (``refit_every``), and the time from that grade's submit to
     ``calibration.services.latest_fit`` serving the fit is taken: the worker's first fit
     (it compiles), then ``--refits`` warm ones. Target ≤ 10 s warm.
   * **next_item** — 20 annotators (``--annotators``) over HTTP, each pausing uniformly
     1–3 s between grades (``bench/next_item_latency.py``'s load loop), ``--warmup`` s
     unmeasured then ``--duration`` s measured, picks made with the latest real fit; p50/
     p95/p99 of ``POST next``. Target p95 ≤ 50 ms. Two runs (``--load-scenarios``): the fit
     worker *paused* (SIGSTOP while idle: the web tier and PostgreSQL alone on the cores),
     then *running* (grades trigger real refits every ``refit_every`` grades, as deployed;
     on 2 cores a busy worker takes one of them).
   * **pages** — logged in as a lead through the real log-in form, the study page, its two
     htmx polls, each pair page and the annotators page, ``--renders`` times each after two
     warm-up requests (those are reported too: the first pair view after a fit builds its
     view model). Target p95 ≤ 300 ms for the study and pair pages.
   * **export** — ``GET /api/studies/{slug}/labels/`` as CSV and JSON Lines with the lead's
     API token: seconds to the last byte, bytes, rows.
   * **sizes** — ``pg_database_size`` and ``pg_total_relation_size`` of the largest tables,
     each also per million responses.

   Peak RSS (``VmHWM``) of the gunicorn workers and of the fit worker is read before they
   stop; the import's is its process's. After the HTTP steps the database is checked as
   ``bench/http_common.py`` does: no acknowledged grade lost or stored twice, no response
   leased twice at once.

Run (PostgreSQL from ``DATABASE_URL``)::

    DATABASE_URL=postgres://baton@127.0.0.1:55432/baton .venv/bin/python bench/scale_month.py
    # resume after the import, on the database it left:
    DATABASE_URL=… .venv/bin/python bench/scale_month.py --skip-import
    # a small trial (written as the variant trial_20000, not as the plain run):
    DATABASE_URL=… .venv/bin/python bench/scale_month.py --interactions 20000 --duration 20

Writes ``bench/results/scale_month.json`` (``bench/results_io.py``): the full month as the
plain run; any other ``--interactions`` as the variant ``trial_<interactions>`` unless
``--variant`` names one; ``--out`` writes elsewhere. The JSONL file (~1.7 KB a line: ~9 GB
for the month) and the scratch database (``--drop-database`` drops it at the end) stay
for a resumed run.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import random
import resource
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_common import (  # noqa: E402
    ServerSettings,
    Tally,
    cpu_ticks,
    database_checks,
    free_port,
    issue_tokens,
    percentiles,
    pg_version,
    reset_grading,
    server_command,
    setup_django,
    start_server,
    stop_server,
)
from import_speed import ARMS, _cpu_seconds, add_bench_schema, text  # noqa: E402
from results_io import add_variant_argument, header, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "scale_month.json"
REFERENCE_INTERACTIONS = 5_300_000
SLUG = "bench-latency"  # http_common's load loop asks this study for items
# The demo's six regions and their traffic shares (annotate.demo.REGIONS).
REGIONS = (
    ("na", "0.34"),
    ("eu", "0.27"),
    ("uk", "0.12"),
    ("latam", "0.11"),
    ("apac", "0.10"),
    ("mena", "0.06"),
)
GENERATOR = 1  # bump when the generated file changes for the same parameters
TARGETS = {
    "next_item_p95_ms": 50,
    "pages_p95_ms": 300,
    "warm_refit_trigger_to_served_s": 10,
    "import_responses_per_s": 100_000,  # bench/import_speed.py's target
}
LEAD = "bench-lead"
LEAD_PASSWORD = "bench-lead-password-7"  # noqa: S105 - a scratch database's bench user
STEPS = ("import", "refit", "next_item", "pages", "export", "sizes")


# --------------------------------------------------------------------------- generate


def month_parameters(interactions: int, seed: int) -> dict[str, Any]:
    return {
        "interactions": interactions,
        "seed": seed,
        "arms": list(ARMS),
        "regions": dict(REGIONS),
        "dimensions": {
            "correctness": "continuous 0..1, 4 quantile bins fixed by this import",
            "refusal": "binary",
            "style": "likert 1..5",
        },
        "prompt_chars": 120,
        "response_chars": 400,
        "judge": "gpt-judge-1",
        "generator": GENERATOR,
    }


def generate_month(path: Path, interactions: int, seed: int) -> dict[str, int]:
    """Write the month line by line (nothing held but a 10k-line buffer); lines per region."""
    rng = random.Random(seed)
    keys = [k for k, _ in REGIONS]
    cumulative, total = [], 0.0
    for _, share in REGIONS:
        total += float(share)
        cumulative.append(total)
    # Texts come from pools, as in import_speed.py; a suffix makes every text its own.
    prompts = [text(rng, 120) for _ in range(997)]
    answers = [text(rng, 400) for _ in range(1999)]
    per_region = dict.fromkeys(keys, 0)
    tmp = path.with_suffix(".part")
    with tmp.open("w", encoding="utf-8") as out:
        buffer: list[str] = []
        for n in range(interactions):
            region = keys[min(bisect.bisect(cumulative, rng.random() * total), len(keys) - 1)]
            per_region[region] += 1
            responses = {
                arm: {
                    "text": answers[rng.randrange(len(answers))] + f" [{n}/{arm}]",
                    "scores": {
                        "correctness": round(rng.random(), 4),
                        "refusal": int(rng.random() < 0.1),
                        "style": rng.randint(1, 5),
                    },
                }
                for arm in ARMS
            }
            line = {
                "id": f"q-{n:07d}",
                "region": region,
                "prompt": prompts[n % len(prompts)] + f" (#{n})",
                "responses": responses,
                "judge": "gpt-judge-1",
            }
            buffer.append(json.dumps(line, separators=(",", ":")))
            if len(buffer) >= 10_000:
                out.write("\n".join(buffer) + "\n")
                buffer.clear()
        if buffer:
            out.write("\n".join(buffer) + "\n")
    tmp.rename(path)
    return per_region


def ensure_month(interactions: int, seed: int) -> tuple[Path, dict[str, Any]]:
    """The month's file, generated unless one with the same parameters is there."""
    path = Path(f"/tmp/baton_scale_month_{interactions}_{seed}.jsonl")
    sidecar = path.with_suffix(".params.json")
    params = month_parameters(interactions, seed)
    if path.exists() and sidecar.exists():
        known = json.loads(sidecar.read_text())
        if known.get("parameters") == params and known.get("bytes") == path.stat().st_size:
            return path, {**known, "reused": True}
    sidecar.unlink(missing_ok=True)
    print(f"generating {path} ({interactions:,} interactions) ...", file=sys.stderr)
    started = time.perf_counter()
    per_region = generate_month(path, interactions, seed)
    record = {
        "parameters": params,
        "file": str(path),
        "bytes": path.stat().st_size,
        "lines_per_region": per_region,
        "seconds": round(time.perf_counter() - started, 1),
    }
    sidecar.write_text(json.dumps(record, indent=1) + "\n")
    return path, {**record, "reused": False}


# --------------------------------------------------------------------------- import


def child_import(path: Path, label_budget: int) -> dict[str, Any]:
    """Runs in a fresh process on the scratch database: migrate, make the study, import."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("BATON_INSECURE_DEV_KEY", "1")
    import django

    django.setup()

    from django.core.management import call_command
    from django.db import connection

    from annotate.imports.importing import import_file
    from annotate.models import Study

    call_command("migrate", verbosity=0)
    study = Study.objects.create(
        name="Reference month",
        slug=SLUG,
        status=Study.Status.ACTIVE,
        label_budget=label_budget,
    )
    add_bench_schema(study, REGIONS)
    assert study.traffic_share_error() is None, study.traffic_share_error()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    client0, server0 = _cpu_seconds(connection)
    started = time.perf_counter()
    report = import_file(path, study=study)
    seconds = time.perf_counter() - started
    client1, server1 = _cpu_seconds(connection)
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    vacuum = time.perf_counter() - started
    client_cpu = client1 - client0
    server_cpu = None if server0 is None or server1 is None else server1 - server0
    return {
        "lines": report.lines,
        "responses": report.responses.created,
        "scores": report.scores.created,
        "seconds": round(seconds, 1),
        "responses_per_second": round(report.responses.created / seconds),
        "phases_seconds": report.phases,
        "client_cpu_seconds": round(client_cpu, 1),
        "server_cpu_seconds": None if server_cpu is None else round(server_cpu, 1),
        "peak_rss_mib_before_import": round(rss_before / 1024, 1),
        "peak_rss_mib": round(rss_peak / 1024, 1),
        "vacuum_analyze_seconds": round(vacuum, 1),
        "vacuum_analyze_note": "after the import, apart from it: autovacuum's job when deployed",
    }


def admin_url(database_url: str) -> str:
    return urlunparse(urlparse(database_url)._replace(path="/postgres"))


def scratch_url(database_url: str) -> tuple[str, str]:
    parsed = urlparse(database_url)
    name = parsed.path.lstrip("/") + "_bench_scale"
    return name, urlunparse(parsed._replace(path="/" + name))


def run_import(path: Path, database_url: str, label_budget: int) -> dict[str, Any]:
    import psycopg

    name, url = scratch_url(database_url)
    with psycopg.connect(admin_url(database_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {**os.environ, "DATABASE_URL": url, "BATON_INSECURE_DEV_KEY": "1", "DEBUG": "0"}
    print(f"importing {path} into {name} ...", file=sys.stderr)
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child-import", str(path), f"--label-budget={label_budget}"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        sys.stderr.write(out.stderr[-4000:])
        raise RuntimeError(f"the import process failed ({out.returncode})")
    record = json.loads(out.stdout.strip().splitlines()[-1])
    record["process_seconds"] = round(time.perf_counter() - started, 1)
    record["file_mib"] = round(path.stat().st_size / 2**20, 1)
    record["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return record


def import_record_path(database: str) -> Path:
    """Where the import's figures wait for a run resumed with --skip-import."""
    return Path(f"/tmp/baton_scale_month_{database}.import.json")


# --------------------------------------------------------------------------- processes


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def peak_rss_mib(pid: int) -> float | None:
    """The process's peak resident set size so far (VmHWM), MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def server_rss(server_pid: int) -> dict[str, Any]:
    workers = {pid: peak_rss_mib(pid) for pid in children(server_pid)}
    values = [v for v in workers.values() if v is not None]
    return {
        "master": peak_rss_mib(server_pid),
        "workers": sorted(values),
        "max_worker": max(values) if values else None,
    }


def start_worker(url: str, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "TASKS_BACKEND": "django_tasks_db.DatabaseBackend",
        "DEBUG": "0",
        "BATON_INSECURE_DEV_KEY": "1",
        "LOG_LEVEL": "WARNING",
    }
    cmd = [sys.executable, "manage.py", "db_worker", "--no-startup-delay"]
    cmd += ["--interval", "0.2", "--no-reload"]
    with log.open("w") as out:
        return subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)  # the session of the worker we started
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def worker_rss(worker: subprocess.Popen) -> dict[str, Any]:
    return {
        "worker": peak_rss_mib(worker.pid),
        "children": [peak_rss_mib(p) for p in children(worker.pid)],
    }


# --------------------------------------------------------------------------- refit


def _session(token: str) -> Any:
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    return session


def grade_once(session: Any, base: str, tally: Tally, rng: random.Random) -> float:
    """One next → submit over HTTP; the monotonic time the submit was sent."""
    import uuid

    res = session.post(f"{base}/api/studies/{SLUG}/next/", timeout=60)
    if res.status_code != 200:
        raise RuntimeError(f"next answered {res.status_code}: {res.text[:300]}")
    assignment = res.json()["assignment_id"]
    key = str(uuid.uuid4())
    labels = {
        "correctness": int(rng.random() < 0.8),
        "refusal": int(rng.random() < 0.9),
        "style": rng.randint(1, 5),
    }
    sent = time.monotonic()
    res = session.post(
        f"{base}/api/assignments/{assignment}/submit/",
        json={"client_key": key, "labels": labels, "time_spent_ms": 1000},
        timeout=60,
    )
    if res.status_code not in (200, 201):
        raise RuntimeError(f"submit answered {res.status_code}: {res.text[:300]}")
    tally.acknowledged[key] = labels
    return sent


def wait_idle(study: Any, timeout: float) -> float:
    """Wait until no fit of the study is queued or running; seconds waited."""
    from calibration.models import Fit

    started = time.monotonic()
    while Fit.objects.filter(study=study, status__in=["queued", "running"]).exists():
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"fits still queued or running after {timeout:.0f} s")
        time.sleep(0.2)
    return round(time.monotonic() - started, 1)


def refit_once(
    study: Any, session: Any, base: str, tally: Tally, rng: random.Random, *, timeout: float
) -> dict[str, Any]:
    """Grade until a grade requests a fit; seconds from that submit to the fit served."""
    from calibration import services
    from calibration.models import Fit

    last = Fit.objects.filter(study=study).order_by("-pk").values_list("pk", flat=True).first()
    fit = None
    grades = 0
    while fit is None:
        if grades > 10 * study.refit_every:
            raise RuntimeError(f"no fit requested after {grades} grades")
        sent = grade_once(session, base, tally, rng)
        grades += 1
        fit = Fit.objects.filter(study=study, pk__gt=last or 0).order_by("pk").first()
    while True:
        latest = services.latest_fit(study)
        if latest is not None and latest.pk >= fit.pk:
            served = time.monotonic()
            break
        fit.refresh_from_db(fields=["status", "error"])
        if fit.status == Fit.Status.FAILED:
            raise RuntimeError(f"fit {fit.pk} failed: {fit.error[:500]}")
        if time.monotonic() - sent > timeout:
            raise RuntimeError(f"fit {fit.pk} not served after {timeout:.0f} s ({fit.status})")
        time.sleep(0.05)
    fit = Fit.objects.defer("draws").get(pk=latest.pk)
    diag = fit.diagnostics or {}
    return {
        "trigger_to_served_s": round(served - sent, 2),
        "grades_to_trigger": grades,
        "fit_id": fit.pk,
        "queued_s": round((fit.started_at - fit.created_at).total_seconds(), 2),
        "run_s": fit.seconds if hasattr(fit, "seconds") else None,
        "compile_s": round(sum(d.get("compile_seconds", 0.0) for d in diag.values()), 2),
        "sample_s": round(sum(d.get("sample_seconds", 0.0) for d in diag.values()), 2),
        "n_labels": fit.n_labels,
        "n_responses": fit.n_responses,
        "trustworthy": fit.trustworthy,
    }


def step_refit(
    study: Any,
    base: str,
    token: str,
    tally: Tally,
    args: argparse.Namespace,
    worker: subprocess.Popen,
) -> dict[str, Any]:
    session = _session(token)
    rng = random.Random(args.seed)
    waited = wait_idle(study, args.fit_timeout)
    cpu0 = cpu_ticks([worker.pid]).get(worker.pid)
    first = refit_once(study, session, base, tally, rng, timeout=args.fit_timeout)
    warm = []
    for _ in range(args.refits):
        wait_idle(study, args.fit_timeout)
        warm.append(refit_once(study, session, base, tally, rng, timeout=args.fit_timeout))
    cpu1 = cpu_ticks([worker.pid]).get(worker.pid)
    seconds = [w["trigger_to_served_s"] for w in warm]
    return {
        "what": "seconds from the submit of the grade that requests a fit (refit_every "
        "grades since the last one) to calibration.services.latest_fit serving that fit; "
        "a real db_worker (django-tasks-db, polling every 0.2 s)",
        "refit_every": study.refit_every,
        "waited_for_earlier_fits_s": waited,
        "first_fit_of_the_worker": first,
        "warm": warm,
        "warm_trigger_to_served_s": seconds,
        "warm_max_s": max(seconds) if seconds else None,
        "target_s": TARGETS["warm_refit_trigger_to_served_s"],
        "target_met": bool(seconds) and max(seconds) <= TARGETS["warm_refit_trigger_to_served_s"],
        "worker_cpu_seconds": None
        if cpu0 is None or cpu1 is None
        else round((cpu1 - cpu0) / os.sysconf("SC_CLK_TCK"), 1),
    }


# --------------------------------------------------------------------------- next item


def load_scenario(
    study: Any,
    base: str,
    tokens: list[str],
    tally: Tally,
    server_pid: int,
    args: argparse.Namespace,
    worker: subprocess.Popen,
    scenario: str,
) -> dict[str, Any]:
    """One load run with the fit worker running (refits as deployed) or paused."""
    from django.utils import timezone
    from next_item_latency import run_load

    from calibration.models import Fit

    paused = scenario == "paused"
    if paused:
        # Stopped while idle (no fit queued or running), so it holds no lock; SIGCONT
        # afterwards keeps its compiled models. Grades meanwhile queue one fit for it.
        wait_idle(study, args.fit_timeout)
        os.killpg(worker.pid, signal.SIGSTOP)
    started = timezone.now()
    ticks0 = cpu_ticks([worker.pid])
    try:
        load = run_load(
            base,
            tokens,
            server_pid=server_pid,
            warmup=args.warmup,
            duration=args.duration,
            max_cycles=5000,
            think=2.0,
            spread=0.5,
            seed=args.seed + (0 if paused else 1),
        )
    finally:
        ticks1 = cpu_ticks([worker.pid])
        if paused:
            os.killpg(worker.pid, signal.SIGCONT)
    mine: Tally = load["tally"]
    tally.add(mine)
    nexts, submits = mine.ms["next"], mine.ms["submit"]
    fits = Fit.objects.filter(study=study, created_at__gte=started)
    worker_cpu = None
    if worker.pid in ticks0 and worker.pid in ticks1:
        worker_cpu = round((ticks1[worker.pid] - ticks0[worker.pid]) / os.sysconf("SC_CLK_TCK"), 1)
    p = percentiles(nexts)
    return {
        "fit_worker": "paused (SIGSTOP) during the load"
        if paused
        else "running: grades "
        "trigger refits every refit_every grades, as deployed, on the same 2 cores",
        "next_item_ms": p,
        "submit_ms": percentiles(submits),
        "target_p95_ms": TARGETS["next_item_p95_ms"],
        "target_met": bool(nexts) and p["p95"] <= TARGETS["next_item_p95_ms"],
        "statuses": dict(mine.statuses),
        "server_errors": mine.server_errors,
        "network_errors": len(mine.errors),
        "errors": mine.errors[:10],
        "submits_resent_with_same_key": mine.retried_submits,
        "throughput_per_s": {
            "next": round(len(nexts) / args.duration, 1),
            "submit": round(len(submits) / args.duration, 1),
        },
        "cpu_seconds_in_measured_window": load["cpu_seconds"],
        "fit_worker_cpu_seconds_whole_load": worker_cpu,
        "fits_requested_during_load": fits.count(),
        "fits_served_during_load": Fit.objects.filter(
            study=study, status=Fit.Status.SUCCEEDED, finished_at__gte=started
        ).count(),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def step_next_item(
    study: Any,
    base: str,
    tokens: list[str],
    tally: Tally,
    server_pid: int,
    args: argparse.Namespace,
    worker: subprocess.Popen,
) -> dict[str, Any]:
    scenarios = {
        f"fit_worker_{scenario}": load_scenario(
            study, base, tokens, tally, server_pid, args, worker, scenario
        )
        for scenario in args.load_scenarios
    }
    return {
        "what": "POST /api/studies/{slug}/next/ over loopback HTTP, next → submit → pause "
        "uniform 1–3 s, one thread per annotator (bench/next_item_latency.run_load); "
        "picks use the latest real fit",
        "annotators": len(tokens),
        "warmup_seconds": args.warmup,
        "measured_seconds": args.duration,
        "scenarios": scenarios,
    }


# --------------------------------------------------------------------------- pages


def login(base: str, username: str, password: str) -> Any:
    """A requests session logged in through the real log-in form."""
    import requests

    session = requests.Session()
    url = f"{base}/accounts/login/"
    res = session.get(url, timeout=30)
    res.raise_for_status()
    token = session.cookies.get("csrftoken")
    if not token:
        raise RuntimeError("the log-in page set no csrftoken cookie")
    res = session.post(
        url,
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": url},
        allow_redirects=False,
        timeout=30,
    )
    if res.status_code != 302 or "sessionid" not in session.cookies:
        raise RuntimeError(f"log-in failed: {res.status_code}")
    return session


def time_page(
    session: Any,
    url: str,
    *,
    renders: int,
    expect: int = 200,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    def get() -> float:
        t0 = time.perf_counter()
        res = session.get(url, headers=headers, timeout=120)
        seconds = time.perf_counter() - t0
        if res.status_code != expect:
            raise RuntimeError(f"{url}: {res.status_code}, not {expect}")
        return seconds * 1000

    warmup = [round(get(), 1) for _ in range(2)]
    return {**percentiles([get() for _ in range(renders)]), "warmup_ms": warmup}


def step_pages(study: Any, base: str, args: argparse.Namespace) -> dict[str, Any]:
    from django.urls import reverse

    from calibration import services

    fit = services.latest_fit(study)
    if fit is None:  # the refit and next_item steps were skipped: ask the worker for one
        services.request_fit(study=study, trigger="manual")
        wait_idle(study, args.fit_timeout)
        fit = services.latest_fit(study)
    if fit is None:
        raise RuntimeError("no fit served: the fit the pages step asked for failed")
    session = login(base, LEAD, LEAD_PASSWORD)
    s = {"slug": study.slug}
    overview = base + reverse("calibration-study", kwargs=s)
    hx = {"HX-Request": "true"}
    n = args.renders
    pages = {
        "overview": time_page(session, overview, renders=n),
        "overview_poll_unchanged": time_page(
            session, f"{overview}?part=decision&shown={fit.pk}", renders=n, expect=204, headers=hx
        ),
        "overview_progress": time_page(session, f"{overview}?part=progress", renders=n, headers=hx),
    }
    for arm in study.candidates().order_by("position"):
        url = base + reverse("calibration-pair", kwargs={**s, "arm": arm.key})
        pages[f"pair_{arm.key}"] = time_page(session, url, renders=n)
    pages["annotators"] = time_page(
        session, base + reverse("calibration-annotators", kwargs=s), renders=n
    )
    in_target = [k for k in pages if k == "overview" or k.startswith(("overview_", "pair_"))]
    return {
        "what": "GET over loopback HTTP as a lead logged in through /accounts/login/, ms to "
        "the whole body; 2 warm-up requests first (the first pair view after a fit builds "
        "its view model in each server process)",
        "fit_id": fit.pk,
        "fit_n_labels": fit.n_labels,
        "pages": pages,
        "target_p95_ms": TARGETS["pages_p95_ms"],
        "pages_in_target": in_target,
        "target_met": all(pages[k]["p95"] <= TARGETS["pages_p95_ms"] for k in in_target),
    }


# --------------------------------------------------------------------------- export


def step_export(study: Any, base: str, token: str, repeats: int) -> dict[str, Any]:
    from django.urls import reverse

    session = _session(token)
    url = base + reverse("annotate-api-labels", kwargs={"slug": study.slug})
    out: dict[str, Any] = {
        "what": "GET /api/studies/{slug}/labels/ with the lead's API token, streamed; "
        "seconds to the last byte (one row per live human label: it grows with the labels, "
        "not with the responses)",
    }
    for fmt in ("csv", "jsonl"):
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            res = session.get(url, params={"format": fmt}, stream=True, timeout=600)
            if res.status_code != 200:
                raise RuntimeError(f"export {fmt}: {res.status_code} {res.text[:300]}")
            size = lines = 0
            for chunk in res.iter_content(1 << 16):
                size += len(chunk)
                lines += chunk.count(b"\n")
            runs.append((time.perf_counter() - t0, size, lines))
        seconds = sorted(r[0] for r in runs)
        rows = runs[-1][2] - (1 if fmt == "csv" else 0)
        out[fmt] = {
            "seconds": [round(s, 3) for s in seconds],
            "median_seconds": round(seconds[len(seconds) // 2], 3),
            "bytes": runs[-1][1],
            "rows": rows,
            "bytes_per_row": round(runs[-1][1] / rows, 1) if rows else None,
        }
    return out


# --------------------------------------------------------------------------- sizes


def step_sizes(responses: int, tables: int = 12) -> dict[str, Any]:
    from django.db import connection

    per_million = max(responses, 1) / 1e6
    with connection.cursor() as cur:
        cur.execute("SELECT pg_database_size(current_database())")
        total = cur.fetchone()[0]
        cur.execute(
            """
            SELECT c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid),
                   pg_indexes_size(c.oid), c.reltuples::bigint
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
            ORDER BY 2 DESC LIMIT %s
            """,
            [tables],
        )
        rows = cur.fetchall()
    mib = 2**20
    return {
        "responses": responses,
        "database_mib": round(total / mib, 1),
        "database_mib_per_million_responses": round(total / mib / per_million, 1),
        "tables": {
            name: {
                "total_mib": round(full / mib, 1),
                "heap_mib": round(heap / mib, 1),
                "indexes_mib": round(idx / mib, 1),
                "rows_estimated": int(tuples),
                "total_mib_per_million_responses": round(full / mib / per_million, 1),
            }
            for name, full, heap, idx, tuples in rows
        },
        "note": f"the {tables} largest tables; rows as estimated by the last ANALYZE",
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--interactions", type=int, default=REFERENCE_INTERACTIONS)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--label-budget", type=int, default=20_000)
    p.add_argument("--annotators", type=int, default=20)
    p.add_argument("--warmup", type=float, default=8.0)
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds of load")
    p.add_argument("--refits", type=int, default=3, help="warm refits to time")
    p.add_argument("--fit-timeout", type=float, default=1800.0)
    p.add_argument("--renders", type=int, default=30)
    p.add_argument("--export-repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=ServerSettings.workers)
    p.add_argument("--threads", type=int, default=ServerSettings.threads)
    p.add_argument(
        "--load-scenarios",
        type=lambda v: [x for x in v.split(",") if x],
        default=["paused", "running"],
        help="next_item runs, comma-separated: paused (the fit worker stopped during the load), "
        "running (refits as deployed)",
    )
    p.add_argument("--drop-database", action="store_true", help="drop the scratch DB at the end")
    for step in STEPS:
        p.add_argument(f"--skip-{step.replace('_', '-')}", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--child-import", type=Path, help=argparse.SUPPRESS)
    add_variant_argument(p, "default for other --interactions than the month: trial_<n>")
    args = p.parse_args(argv)
    if args.variant is None and args.interactions != REFERENCE_INTERACTIONS:
        args.variant = f"trial_{args.interactions}"
    return args


def skipped(args: argparse.Namespace, step: str) -> bool:
    return bool(getattr(args, f"skip_{step}"))


def main() -> None:
    args = parse_args()
    if args.child_import:
        print(json.dumps(child_import(args.child_import, args.label_budget)))
        return
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith("postgres"):
        sys.exit("DATABASE_URL must point at a PostgreSQL server")
    head = header("scale_month", env=("DATABASE_URL",))  # at the start: this run's code
    load_before = os.getloadavg()
    database, url = scratch_url(database_url)
    results: dict[str, Any] = {
        "what": "the reference month (5.3M interactions × 3 arms × 3 dimensions, 6 regions) "
        "imported into PostgreSQL, then the app measured at that size over HTTP",
        "parameters": {
            **month_parameters(args.interactions, args.seed),
            "label_budget": args.label_budget,
            "annotators": args.annotators,
            "think_seconds": "uniform 1–3",
            "refits": args.refits,
            "renders": args.renders,
            "skipped": [s for s in STEPS if skipped(args, s)],
        },
        "targets": TARGETS,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_before],
            "note": "2 cores shared by PostgreSQL, the server, the worker, the load generator",
        },
    }
    errors: dict[str, str] = {}

    def attempt(step: str, fn: Any, *a: Any, **kw: Any) -> Any:
        started = time.perf_counter()
        print(f"-- {step}", file=sys.stderr)
        try:
            value = fn(*a, **kw)
        except Exception as error:  # noqa: BLE001 - a failed step is recorded, the rest run
            traceback.print_exc()
            errors[step] = f"{type(error).__name__}: {error}"
            return None
        if isinstance(value, dict):
            value["step_seconds"] = round(time.perf_counter() - started, 1)
        return value

    path, results["generate"] = ensure_month(args.interactions, args.seed)
    saved = import_record_path(database)
    if not skipped(args, "import"):
        saved.unlink(missing_ok=True)
        record = attempt("import", run_import, path, database_url, args.label_budget)
        if record is None:
            finish(head, results, errors, args)
            return
        saved.write_text(json.dumps({"parameters": results["parameters"], "import": record}))
        results["import"] = record
    elif saved.exists():
        earlier = json.loads(saved.read_text())
        results["import"] = {**earlier["import"], "from_an_earlier_run": True}
        if earlier["parameters"]["interactions"] != args.interactions:
            sys.exit(f"{database} holds another month ({earlier['parameters']['interactions']})")

    os.environ["DEBUG"] = "0"
    # The lead logs in over plain HTTP on loopback: cookies without the Secure flag.
    os.environ["SESSION_COOKIE_SECURE"] = "0"
    os.environ["CSRF_COOKIE_SECURE"] = "0"
    setup_django(url)
    from django.contrib.auth import get_user_model
    from django.db import connections

    from accounts.services import issue_token
    from annotate.models import Membership, Response, Study

    study = Study.objects.filter(slug=SLUG).first()
    if study is None:
        sys.exit(f"no study in {database}: run without --skip-import first")
    responses = Response.objects.filter(study=study).count()
    results["responses"] = responses
    if responses != args.interactions * len(ARMS):
        sys.exit(f"{database} holds {responses:,} responses, not {args.interactions * 3:,}")
    users = []
    for i in range(args.annotators):
        user, _ = get_user_model().objects.get_or_create(username=f"bench-annotator-{i}")
        Membership.objects.get_or_create(
            study=study, user=user, defaults={"role": Membership.Role.ANNOTATOR}
        )
        users.append(user)
    lead, _ = get_user_model().objects.get_or_create(username=LEAD)
    lead.set_password(LEAD_PASSWORD)
    lead.save()
    Membership.objects.get_or_create(study=study, user=lead, defaults={"role": "lead"})
    tokens = issue_tokens(users)
    lead_token = issue_token(user=lead, name="scale bench").key
    print("-- clearing earlier grades and fits", file=sys.stderr)
    reset_grading(study)  # a resumed run starts from the imported month, ungraded
    connections.close_all()

    tally = Tally()
    http_steps = [s for s in ("refit", "next_item", "pages", "export") if not skipped(args, s)]
    rss: dict[str, Any] = {"import_mib": (results.get("import") or {}).get("peak_rss_mib")}
    if http_steps:
        port = free_port()
        settings = ServerSettings(workers=args.workers, threads=args.threads)
        base = f"http://127.0.0.1:{port}"
        results["server"] = server_command(settings, port)
        server = start_server(url, port, settings)
        worker = None
        log = Path(f"/tmp/baton_scale_month_{database}.worker.log")
        try:
            if {"refit", "next_item", "pages"} & set(http_steps):
                worker = start_worker(url, log)
            if "refit" in http_steps:
                results["refit"] = attempt(
                    "refit", step_refit, study, base, tokens[0], tally, args, worker
                )
            if "next_item" in http_steps:
                results["next_item"] = attempt(
                    "next_item", step_next_item, study, base, tokens, tally, server.pid, args,
                    worker,
                )  # fmt: skip
            if "pages" in http_steps:
                if worker is not None:
                    attempt("wait for the worker", wait_idle, study, args.fit_timeout)
                results["pages"] = attempt("pages", step_pages, study, base, args)
            if "export" in http_steps:
                results["export"] = attempt(
                    "export", step_export, study, base, lead_token, args.export_repeats
                )
            rss["web"] = server_rss(server.pid)
            if worker is not None:
                rss["fit_worker"] = worker_rss(worker)
        finally:
            if worker is not None:
                stop_worker(worker)
            stop_server(server)
            if worker is not None and worker.returncode not in (0, -signal.SIGTERM, None):
                tail = log.read_text()[-2000:] if log.exists() else ""
                errors.setdefault("worker", f"exited {worker.returncode}: {tail}")
        results["checks"] = database_checks(study, tally.acknowledged)
    results["peak_rss_mib"] = rss
    if not skipped(args, "sizes"):
        results["sizes"] = attempt("sizes", step_sizes, responses)
    results["database"] = "PostgreSQL " + pg_version()
    connections.close_all()
    if args.drop_database:
        import psycopg

        with psycopg.connect(admin_url(database_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        import_record_path(database).unlink(missing_ok=True)
    finish(head, results, errors, args)


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The headline figures, each beside its target."""

    def get(*keys: str) -> Any:
        value: Any = results
        for key in keys:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    refit = get("refit", "warm_max_s")
    pages = get("pages", "pages") or {}
    in_target = get("pages", "pages_in_target") or []
    pages_p95 = max((pages[k]["p95"] for k in in_target), default=None)
    rate = get("import", "responses_per_second")
    checks = get("checks") or {}
    return {
        "responses": get("responses"),
        "import_responses_per_s": {
            "value": rate,
            "target": f">= {TARGETS['import_responses_per_s']}",
        },
        "import_seconds": get("import", "seconds"),
        **{
            f"next_item_ms_{name}": {
                **{k: sc["next_item_ms"].get(k) for k in ("p50", "p95", "p99")},
                "target_p95": TARGETS["next_item_p95_ms"],
                "met": sc["target_met"],
            }
            for name, sc in (get("next_item", "scenarios") or {}).items()
        },
        "pages_worst_p95_ms": {
            "value": pages_p95,
            "target": TARGETS["pages_p95_ms"],
            "met": None if pages_p95 is None else pages_p95 <= TARGETS["pages_p95_ms"],
        },
        "warm_refit_trigger_to_served_max_s": {
            "value": refit,
            "target": TARGETS["warm_refit_trigger_to_served_s"],
            "met": None if refit is None else refit <= TARGETS["warm_refit_trigger_to_served_s"],
        },
        "export_csv": {
            "seconds": get("export", "csv", "median_seconds"),
            "bytes": get("export", "csv", "bytes"),
        },
        "database_mib_per_million_responses": get("sizes", "database_mib_per_million_responses"),
        "peak_rss_mib": {
            "import": get("peak_rss_mib", "import_mib"),
            "web_worker": get("peak_rss_mib", "web", "max_worker"),
            "fit_worker": get("peak_rss_mib", "fit_worker", "worker"),
        },
        "grades_lost_or_twice": None
        if not checks
        else checks["acknowledged_missing"]
        + checks["client_keys_stored_twice"]
        + checks["responses_with_unexplained_second_grade"]
        + checks["double_leases"],
    }


def finish(
    head: dict[str, Any], results: dict[str, Any], errors: dict[str, str], args: argparse.Namespace
) -> None:
    results["errors"] = errors
    results["summary"] = summary(results)
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    write_results(head, results, variant=args.variant, path=args.out)
    print(json.dumps(results["summary"], indent=1))
    where = f"variant {args.variant} of " if args.variant else ""
    print(f"wrote {where}{args.out}", file=sys.stderr)
    if errors:
        sys.exit(f"failed steps: {', '.join(errors)}")


if __name__ == "__main__":
    main()
