"""Fit service latency: from "labels changed" to "new posterior served", warm, cold, via a worker.

On the demo study (``annotate.demo``: 3 arms × 3 dimensions × 6 regions, 3000 prompts, so
9000 responses with judge scores) plus human grades taken from the demo's hidden truth:

* **cold** — a fresh Python process: Django setup, PyMC import, model compilation, sampling.
  ``request_to_served_s`` runs from ``note_new_labels``/``request_fit`` to ``latest_fit``
  returning the new fit; ``process_to_served_s`` also counts interpreter start and imports.
  Run twice: with the PyTensor compile cache as it is on this machine, and with an empty one
  (a fresh CI machine).
* **warm** — the same process, next fits: 20 new grades (``study.refit_every``) are added,
  ``note_new_labels`` triggers the fit, the compiled models are reused (data swapped).
* **worker** — a real ``manage.py db_worker`` (django-tasks-db DatabaseBackend) on the same
  database: the bench requests a fit, polls ``latest_fit`` until the new fit is served.
  The first fit pays the worker's compilation, the next ones are warm.

Targets (DESIGN.md): ≤ 10 s warm, ≤ 40 s cold, on 2 cores. Results go to
``bench/results/fit_service.json``. Run::

    .venv/bin/python bench/fit_service.py                 # SQLite file database in /tmp
    .venv/bin/python bench/fit_service.py --database-url postgres://baton@127.0.0.1:55432/baton

With PostgreSQL a scratch database ``baton_bench_fit_service`` is created (and dropped) on
that server; the database of the URL itself is never written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from results_io import add_variant_argument, header, write_results

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SCRATCH_DB = "baton_bench_fit_service"
SLUG = "support-assistant"


# ----------------------------------------------------------------------------- children


def _django(tasks_backend: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["TASKS_BACKEND"] = tasks_backend
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _add_grades(*, study, per_arm: int, seed: int) -> int:
    """Grade ``per_arm`` more ungraded responses of each arm with their demo truth."""
    import numpy as np
    from django.contrib.auth import get_user_model

    from annotate.models import Annotation, Label, Response

    user, _ = get_user_model().objects.get_or_create(username="bench-grader")
    dims = list(study.dimensions.all())
    rng = np.random.default_rng(seed)
    made = 0
    for arm in study.arms.all():
        ids = list(
            Response.objects.filter(study=study, arm=arm)
            .exclude(annotations__annotator=user)
            .values_list("pk", flat=True)
        )
        chosen = rng.choice(ids, size=min(per_arm, len(ids)), replace=False)
        responses = Response.objects.filter(pk__in=[int(i) for i in chosen])
        annotations = Annotation.objects.bulk_create(
            Annotation(response=r, annotator=user, study=study) for r in responses
        )
        truth = {r.pk: r.metadata["truth"] for r in responses}
        Label.objects.bulk_create(
            Label(annotation=a, dimension=d, value=int(truth[a.response_id][d.key]))
            for a in annotations
            for d in dims
        )
        made += len(annotations)
    return made


def child_setup(args: argparse.Namespace) -> dict:
    _django("django.tasks.backends.immediate.ImmediateBackend")
    from django.core.management import call_command

    from annotate.demo import make_demo

    t0 = time.perf_counter()
    call_command("migrate", verbosity=0)
    outcome = make_demo(prompts=args.prompts, if_absent=True)
    study = outcome.study
    graded = _add_grades(study=study, per_arm=args.labels_per_arm, seed=1)
    return {
        "setup_seconds": time.perf_counter() - t0,
        "responses": study.responses.count(),
        "graded": graded,
    }


def _fit_record(fit) -> dict:
    diag = fit.diagnostics.values()
    return {
        "fit_id": fit.pk,
        "compile_s": sum(d.get("compile_seconds", 0.0) for d in diag),
        "sample_s": sum(d.get("sample_seconds", 0.0) for d in diag),
        "sample_s_by_dimension": {k: d.get("sample_seconds") for k, d in fit.diagnostics.items()},
        "status": fit.status,
        "trustworthy": fit.trustworthy,
        "n_labels": fit.n_labels,
        "n_responses": fit.n_responses,
        "run_seconds": fit.seconds,
        "diagnostics": fit.diagnostics,
        "verdicts": {
            c["arm"]: {
                "overall": c["verdict"],
                **{
                    d["dimension"]: {
                        "verdict": d["verdict"],
                        "mean": round(d["mean"], 4),
                        "ci": [round(d["lower"], 4), round(d["upper"], 4)],
                    }
                    for d in c["dimensions"]
                },
            }
            for c in fit.summary.get("candidates", [])
        },
        "draws_bytes": len(fit.draws or b""),
        "cpu_s_in_this_process": getattr(fit, "cpu_s", None),
    }


def _served_after(study, trigger) -> tuple[float, object]:
    """Time from the trigger to ``latest_fit`` serving the fit it returned."""
    from calibration import services

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    fit = trigger()
    assert fit is not None, "the trigger requested no fit"
    while True:
        latest = services.latest_fit(study)
        if latest is not None and latest.pk == fit.pk:
            latest.cpu_s = time.process_time() - cpu0  # this process's CPU, all threads
            return time.perf_counter() - t0, latest
        fit.refresh_from_db()
        if fit.status == "failed":
            raise RuntimeError(f"fit {fit.pk} failed: {fit.error}")
        time.sleep(0.05)


def child_inprocess(args: argparse.Namespace) -> dict:
    """Cold fit then warm fits in one process (immediate task backend: runs on commit)."""
    started = float(os.environ["BENCH_T0"])
    _django("django.tasks.backends.immediate.ImmediateBackend")
    from annotate.models import Study
    from calibration import services

    study = Study.objects.get(slug=SLUG)
    cold_s, fit = _served_after(study, lambda: services.request_fit(study=study, trigger="labels"))
    cold = {
        "request_to_served_s": cold_s,
        "process_to_served_s": time.time() - started,
        "fit": _fit_record(fit),
    }
    warm = []
    for k in range(args.warm_runs):
        _add_grades(study=study, per_arm=-(-study.refit_every // 3), seed=100 + k)
        seconds, fit = _served_after(study, lambda: services.note_new_labels(study=study))
        warm.append({"request_to_served_s": seconds, "fit": _fit_record(fit)})
    return {"cold": cold, "warm": warm}


def child_request(args: argparse.Namespace) -> dict:
    """Request fits that a separate db_worker runs; poll until each is served."""
    _django("django_tasks_db.DatabaseBackend")
    from annotate.models import Study
    from calibration import services

    study = Study.objects.get(slug=SLUG)
    runs = []
    for k in range(args.worker_runs):
        if k:
            _add_grades(study=study, per_arm=-(-study.refit_every // 3), seed=200 + k)
            trigger = lambda: services.note_new_labels(study=study)  # noqa: E731
        else:
            trigger = lambda: services.request_fit(study=study, trigger="manual")  # noqa: E731
        seconds, fit = _served_after(study, trigger)
        runs.append({"request_to_served_s": seconds, "fit": _fit_record(fit)})
    return {"runs": runs}


CHILDREN = {"setup": child_setup, "inprocess": child_inprocess, "request": child_request}


# ----------------------------------------------------------------------------- parent


def _run_child(name: str, args: argparse.Namespace, env: dict[str, str]) -> dict:
    cmd = [PY, __file__, "--child", name, *args.passthrough]
    env = {**env, "BENCH_T0": repr(time.time())}
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"child {name} failed ({out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pg_admin(url: str, sql: str) -> None:
    import psycopg

    parsed = urlparse(url)
    with psycopg.connect(
        host=parsed.hostname,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        dbname=parsed.path.lstrip("/"),
        autocommit=True,
    ) as conn:
        conn.execute(sql)


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process from /proc (Linux), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", choices=sorted(CHILDREN))
    parser.add_argument("--database-url", default="", help="PostgreSQL server to use (scratch DB)")
    parser.add_argument("--prompts", type=int, default=3000)
    parser.add_argument("--labels-per-arm", type=int, default=100)
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--worker-runs", type=int, default=2)
    parser.add_argument("--skip-worker", action="store_true")
    parser.add_argument("--skip-empty-cache", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench/results/fit_service.json"))
    add_variant_argument(parser)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args), default=str))
        return
    head = header("fit_service")
    args.passthrough = [
        f"--prompts={args.prompts}",
        f"--labels-per-arm={args.labels_per_arm}",
        f"--warm-runs={args.warm_runs}",
        f"--worker-runs={args.worker_runs}",
    ]

    tmp = Path(tempfile.mkdtemp(prefix="baton-bench-fit-"))
    env = {**os.environ, "DEBUG": "1", "LOG_LEVEL": "WARNING"}
    if args.database_url:
        _pg_admin(args.database_url, f"DROP DATABASE IF EXISTS {SCRATCH_DB}")
        _pg_admin(args.database_url, f"CREATE DATABASE {SCRATCH_DB}")
        env["DATABASE_URL"] = urlunparse(
            urlparse(args.database_url)._replace(path=f"/{SCRATCH_DB}")
        )
        database = "postgresql"
    else:
        # SQLITE_PATH (not a sqlite:// URL) keeps the settings' WAL mode and busy timeout,
        # which the worker and the requesting process need to share the file.
        env.pop("DATABASE_URL", None)
        env["SQLITE_PATH"] = str(tmp / "bench.sqlite3")
        database = "sqlite"
    results: dict = {
        "what": "seconds from labels changed (request_fit / note_new_labels) to latest_fit "
        "serving the new fit, demo study 3 arms x 3 dimensions x 6 regions",
        "targets": {"warm_s": 10, "cold_s": 40},
        "database": database,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
    }
    try:
        print("setting up the demo study ...", file=sys.stderr)
        results["setup"] = _run_child("setup", args, env)
        print("cold + warm in one process ...", file=sys.stderr)
        results["in_process"] = _run_child("inprocess", args, env)
        if not args.skip_empty_cache:
            print("cold with an empty PyTensor compile cache ...", file=sys.stderr)
            cache = tmp / "pytensor"
            empty = {**env, "PYTENSOR_FLAGS": f"compiledir={cache}"}
            one = argparse.Namespace(
                **{
                    **vars(args),
                    "passthrough": [*args.passthrough[:2], "--warm-runs=0", "--worker-runs=0"],
                }
            )
            results["cold_empty_compile_cache"] = _run_child("inprocess", one, empty)["cold"]
        if not args.skip_worker:
            print("through a db_worker ...", file=sys.stderr)
            worker_env = {**env, "TASKS_BACKEND": "django_tasks_db.DatabaseBackend"}
            log = (tmp / "worker.log").open("w")
            worker = subprocess.Popen(
                [
                    PY,
                    "manage.py",
                    "db_worker",
                    "--no-startup-delay",
                    "--interval",
                    "0.2",
                    "--no-reload",
                ],
                env=worker_env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                time.sleep(1.0)
                cpu0 = _cpu_seconds(worker.pid)
                results["worker"] = _run_child("request", args, worker_env)
                cpu1 = _cpu_seconds(worker.pid)
                if cpu0 is not None and cpu1 is not None:
                    results["worker"]["worker_cpu_s_all_runs"] = cpu1 - cpu0
                results["worker"]["note"] = (
                    "first run includes the worker's model compilation (cold worker); "
                    "later runs reuse its compiled models (warm worker)"
                )
            finally:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(timeout=60)
                log.close()
    finally:
        if args.database_url:
            _pg_admin(args.database_url, f"DROP DATABASE IF EXISTS {SCRATCH_DB}")
        shutil.rmtree(tmp, ignore_errors=True)

    warm = [w["request_to_served_s"] for w in results["in_process"]["warm"]]
    results["headline"] = {
        "cold_request_to_served_s": results["in_process"]["cold"]["request_to_served_s"],
        "cold_process_to_served_s": results["in_process"]["cold"]["process_to_served_s"],
        "cold_empty_cache_process_to_served_s": results.get("cold_empty_compile_cache", {}).get(
            "process_to_served_s"
        ),
        "warm_request_to_served_s": warm,
        "warm_max_s": max(warm) if warm else None,
        "warm_split": [
            {
                k: w["fit"][k]
                for k in ("compile_s", "sample_s", "sample_s_by_dimension", "cpu_s_in_this_process")
            }
            for w in results["in_process"]["warm"]
        ],
        "cold_split": {
            k: results["in_process"]["cold"]["fit"][k]
            for k in ("compile_s", "sample_s", "cpu_s_in_this_process")
        },
        "trustworthy": [w["fit"]["trustworthy"] for w in results["in_process"]["warm"]],
        "worker_request_to_served_s": [
            r["request_to_served_s"] for r in results.get("worker", {}).get("runs", [])
        ],
        "load_average_at_end": os.getloadavg(),
    }
    write_results(head, results, variant=args.variant, path=Path(args.out))
    print(json.dumps(results["headline"], indent=2))


if __name__ == "__main__":
    main()
