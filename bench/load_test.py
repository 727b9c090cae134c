"""Load test: 50 annotators × 40 grades each over loopback HTTP, gunicorn + PostgreSQL.

What it does
------------
1. Uses the bench database and study of ``bench/next_item_latency.py`` (built once:
   ``--responses`` generated responses; a later run reuses them and clears the grading
   state), with ``--annotators`` annotators, each with an API token.
2. Starts ``gunicorn config.wsgi`` (the settings of ``http_common.ServerSettings``).
3. Bounded load generator: exactly ``--annotators`` client threads, one per annotator,
   each looping ``POST /api/studies/{slug}/next/`` → ``POST /api/assignments/{id}/submit/``
   until it has ``--grades`` acknowledged grades. Every submit carries a fresh client key
   and random labels (so that a mix-up would show); a submit that fails on the network is
   resent with the same key. Think time after each grade: uniform in ``--think-min`` ..
   ``--think-max`` seconds (default 1–3 s, mean 2 s: a fast annotator; real ones read for
   longer), seeded per annotator. Latencies of the first ``--warmup`` seconds (each
   worker's first requests) are left out of the percentiles, not out of the checks.
4. Checks the database against what the server acknowledged: no acknowledged grade
   missing (lost), no client key stored twice, no response graded by more annotators
   than its overlap leases explain, every stored grade with exactly the labels sent, no
   double lease, and no HTTP 5xx.
5. Writes ``bench/results/load_test.json``: throughput, p50/p95/p99 per endpoint, CPU
   seconds of the server, the database backends and the load generator, load average.

Run (after ``PGPORT=55444 PGROOT=/tmp/baton-pg .ci/postgres.sh start``)::

    .venv/bin/python bench/load_test.py --admin-url postgres://baton@127.0.0.1:55444/baton
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_common import (  # noqa: E402
    ROOT,
    CpuMeter,
    ServerSettings,
    Tally,
    annotate_loop,
    bench_url,
    build_study,
    database_checks,
    ensure_database,
    free_port,
    issue_tokens,
    machine,
    percentiles,
    pg_version,
    reset_grading,
    server_command,
    setup_django,
    start_server,
    stop_server,
)
from results_io import add_variant_argument, header, write_results  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "load_test.json"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--admin-url", default="postgres://baton@127.0.0.1:55432/baton")
    p.add_argument("--database", default="baton_bench")
    p.add_argument("--responses", type=int, default=1_000_000)
    p.add_argument("--annotators", type=int, default=50)
    p.add_argument("--grades", type=int, default=40, help="per annotator")
    p.add_argument("--think-min", type=float, default=1.0)
    p.add_argument("--think-max", type=float, default=3.0)
    p.add_argument("--time-limit", type=float, default=900.0, help="seconds, then stop")
    p.add_argument(
        "--warmup",
        type=float,
        default=5.0,
        help="seconds whose latencies are not counted (each worker's first requests)",
    )
    p.add_argument("--workers", type=int, default=ServerSettings.workers)
    p.add_argument("--threads", type=int, default=ServerSettings.threads)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--output", type=Path, default=RESULTS)
    add_variant_argument(p)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.think_max < args.think_min or args.think_min < 0:
        sys.exit(
            f"--think-min/--think-max: need 0 <= min <= max, got {args.think_min}, {args.think_max}"
        )
    url = bench_url(args.admin_url, args.database)
    ensure_database(args.admin_url, args.database)
    setup_django(url)
    from django.db import connections

    from annotate.models import Response

    study, _, users = build_study(args.responses, args.annotators, rebuild=False)
    reset_grading(study)
    n_responses = Response.objects.filter(study=study).count()
    tokens = issue_tokens(users)
    connections.close_all()

    settings = ServerSettings(workers=args.workers, threads=args.threads)
    port = free_port()
    load_before = os.getloadavg()
    head = header("load_test")  # at the start: a commit that lands during the run is not its
    server = start_server(url, port, settings)
    tally = Tally()
    try:
        meter = CpuMeter(server.pid)
        meter.start()
        connections.close_all()
        started = time.monotonic()
        threads = []
        for i, token in enumerate(tokens):
            rng = random.Random(args.seed * 1000 + i)
            lock = threading.Lock()

            def think(rng=rng, lock=lock) -> float:
                with lock:
                    return rng.uniform(args.think_min, args.think_max)

            def labels(rng=rng, lock=lock) -> dict[str, int]:
                with lock:
                    return {
                        "correctness": rng.randint(0, 1),
                        "refusal": rng.randint(0, 1),
                        "style": rng.randint(1, 5),
                    }

            threads.append(
                threading.Thread(
                    target=annotate_loop,
                    args=(f"http://127.0.0.1:{port}", token, tally),
                    kwargs={
                        "grades": args.grades,
                        "until": started + args.time_limit,
                        "measure_from": started + args.warmup,
                        "think": think,
                        "labels": labels,
                    },
                )
            )
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        cpu = meter.stop()
    finally:
        stop_server(server)
    checks = database_checks(study, tally.acknowledged)
    grades = len(tally.acknowledged)
    passed = {
        "every_annotator_finished": grades == args.annotators * args.grades,
        "no_lost_grade": checks["acknowledged_missing"] == 0,
        "no_grade_counted_twice": checks["client_keys_stored_twice"] == 0
        and checks["responses_with_unexplained_second_grade"] == 0,
        "exact_labels": checks["acknowledged_with_wrong_labels"] == 0,
        "no_double_lease": checks["double_leases"] == 0,
        "no_server_error": tally.server_errors == 0,
    }
    result = {
        "what": f"{args.annotators} annotators × {args.grades} grades over loopback HTTP",
        "database": "PostgreSQL " + pg_version(),
        "responses": n_responses,
        "server": {
            "command": server_command(settings, port),
            "env": "DEBUG=0 SECRET_KEY=… ALLOWED_HOSTS=127.0.0.1 SECURE_SSL_REDIRECT=0",
        },
        "load_generator": {
            "how": f"{args.annotators} Python threads (one per annotator, requests.Session, "
            "token auth); each: POST next, POST submit with a fresh client key and random "
            "labels (resent with the same key after a network error), then think",
            "think_seconds": f"uniform {args.think_min:g}–{args.think_max:g}",
            "latency_warmup_seconds": args.warmup,
            "seed": args.seed,
        },
        "passed": passed,
        "all_passed": all(passed.values()),
        "grades_acknowledged": grades,
        "elapsed_seconds": round(elapsed, 1),
        "throughput_per_s": {
            "grades": round(grades / elapsed, 1),
            "requests": round(sum(tally.statuses.values()) / elapsed, 1),
        },
        "latency_ms": {
            "next": percentiles(tally.ms["next"]),
            "submit": percentiles(tally.ms["submit"]),
        },
        "statuses": dict(tally.statuses),
        "server_errors": tally.server_errors,
        "network_errors": len(tally.errors),
        "submits_resent_with_same_key": tally.retried_submits,
        "errors": tally.errors[:10],
        "checks": checks,
        "cpu_seconds": cpu,
        "cpu_ms_per_grade": {k: round(v * 1000 / max(1, grades), 1) for k, v in cpu.items()},
        "machine": machine(load_before),
    }
    write_results(head, result, variant=args.variant, path=args.output)
    print(
        json.dumps(
            {k: result[k] for k in ("passed", "throughput_per_s", "latency_ms", "cpu_seconds")},
            indent=2,
        )
    )
    if not result["all_passed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
