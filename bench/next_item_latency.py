"""Next-item latency over loopback HTTP: PostgreSQL, 1M responses, 20 concurrent annotators.

What it does
------------
1. Creates (once) a separate database ``baton_bench`` on the PostgreSQL server of
   ``--admin-url``, migrates it, and builds a study of ``--responses`` responses with
   server-side ``INSERT … SELECT generate_series`` (3 arms × 3 regions × 20 judge cells,
   ~200-character texts), then ``VACUUM ANALYZE`` so index-only scans are possible.
   A later run reuses the data and only clears the grading state.
2. Starts a real server: ``gunicorn config.wsgi`` (gthread workers; ``--workers``,
   ``--threads``, ``--keep-alive``) on 127.0.0.1 with ``DEBUG=0``, a ``SECRET_KEY``,
   ``ALLOWED_HOSTS`` and ``SECURE_SSL_REDIRECT=0``.
3. Runs a bounded load generator: ``--annotators`` threads, each an annotator with an API
   token, doing ``POST /api/studies/{slug}/next/`` → ``POST /api/assignments/{id}/submit/``
   cycles for ``--duration`` seconds (after ``--warmup`` seconds not measured), at most
   ``--max-cycles`` per annotator, loopback only; one scenario per ``--think`` pause (the
   mean: each pause is uniform in ``think·(1 ± --think-spread)``, default ±50%, as real
   annotators read for different times; ``--think-spread 0`` keeps them in lockstep).
4. Stops the server and checks the database: leases of one response held by two annotators
   at once (overlap picks excepted), responses with more live grades than overlap picks
   explain, acknowledged grades missing or stored twice.
5. Writes ``bench/results/next_item_latency.json`` (``bench/results_io.py``): a run with
   ``--think-spread 0`` as its variant ``lockstep``; how long building the data took as the
   section ``build``, which a later run that reuses the data reports.

The loop, the server, the data and the checks are shared with ``bench/load_test.py``
(``bench/http_common.py``).

Run::

    .venv/bin/python bench/next_item_latency.py                       # 1M responses
    .venv/bin/python bench/next_item_latency.py --responses 100000    # quicker
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_common import (  # noqa: E402
    LABELS,
    ROOT,
    CpuMeter,
    ServerSettings,
    Tally,
    all_visible_share,
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
from results_io import add_variant_argument, header, section, write_results  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "next_item_latency.json"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--admin-url", default="postgres://baton@127.0.0.1:55432/baton")
    p.add_argument("--database", default="baton_bench")
    p.add_argument("--responses", type=int, default=1_000_000)
    p.add_argument("--annotators", type=int, default=20)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=8.0)
    p.add_argument("--max-cycles", type=int, default=5000, help="per annotator")
    p.add_argument("--workers", type=int, default=ServerSettings.workers)
    p.add_argument("--threads", type=int, default=ServerSettings.threads)
    p.add_argument("--keep-alive", type=float, default=ServerSettings.keep_alive)
    p.add_argument("--port", type=int, default=0, help="0: a free port")
    p.add_argument("--rebuild", action="store_true", help="drop and rebuild the study")
    p.add_argument("--breakdown-rounds", type=int, default=100)
    p.add_argument(
        "--think",
        type=float,
        nargs="+",
        default=[0.0, 2.0],
        help="mean pause after each submit, seconds; one scenario per value",
    )
    p.add_argument(
        "--think-spread",
        type=float,
        default=0.5,
        help="each pause is uniform in think·(1 ± spread); 0: every annotator in lockstep",
    )
    p.add_argument(
        "--fit",
        choices=("synthetic", "none"),
        default="synthetic",
        help="pick with a posterior (hand-made draws, all verdicts open) or with none",
    )
    p.add_argument(
        "--refit-seconds",
        type=float,
        default=10.0,
        help="a new synthetic fit this often during a scenario (0: one fit only)",
    )
    p.add_argument("--output", type=Path, default=RESULTS)
    add_variant_argument(p, "default with --think-spread 0: lockstep")
    args = p.parse_args()
    if args.variant is None and args.think_spread == 0:
        args.variant = "lockstep"
    return args


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


def run_load(
    base: str,
    tokens: list[str],
    *,
    server_pid: int,
    warmup: float,
    duration: float,
    max_cycles: int,
    think: float,
    spread: float,
    seed: int = 0,
) -> dict[str, Any]:
    """``len(tokens)`` annotator threads for ``warmup + duration`` seconds; the last
    ``duration`` are measured (latencies and CPU).

    Each pause is uniform in ``think·(1 ± spread)``, drawn per annotator from its own
    seeded generator. With ``spread`` 0 every annotator pauses exactly ``think``: all of
    them then stay in step, and every ~``think`` seconds the whole crowd asks at the same
    instant (measured: 19 of 20 next requests inside one second), which real annotators,
    who read for different times, do not do.
    """
    import random

    t_measure = time.monotonic() + warmup
    t_end = t_measure + duration
    tally = Tally()

    def pauses(i: int) -> Any:
        rng = random.Random(seed * 1000 + i)
        return lambda: rng.uniform(think * (1 - spread), think * (1 + spread))

    threads = [
        threading.Thread(
            target=annotate_loop,
            args=(base, token, tally),
            kwargs={
                "grades": max_cycles,
                "until": t_end,
                "measure_from": t_measure,
                "think": pauses(i),
            },
        )
        for i, token in enumerate(tokens)
    ]
    for t in threads:
        t.start()
    # CPU seconds spent by the server's workers, the database backends and this process
    # over the measured window: what a cycle costs, whatever the machine's other load.
    time.sleep(max(0.0, t_measure - time.monotonic()))
    meter = CpuMeter(server_pid)
    meter.start()
    time.sleep(max(0.0, t_end - time.monotonic()))
    cpu = meter.stop()
    for t in threads:
        t.join(timeout=warmup + duration + 120)
    return {"cpu_seconds": cpu, "tally": tally, "measured_seconds": duration}


def service_breakdown(study, user, rounds: int) -> dict[str, dict[str, float]]:
    """In-process, one annotator, sequential: where the time of ``next_item`` goes.

    ``next_item`` end to end; the selection rule's part (``selection_status`` and
    ``pick_cell``) timed by wrapping the queue's two call sites; the queue's own part is the
    difference. Also the queue alone with its uniform fallback (no selection rule).
    """
    from annotate.grading import queue

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
    # No selection rule: it offers no cell and keeps the study open (the uniform fallback).
    queue._selection_pick = lambda **kwargs: None
    queue._selection_status = lambda **kwargs: (True, "")
    try:
        for _ in range(rounds):
            t0 = time.perf_counter()
            assignment = queue.next_item(study=study, annotator=user)
            timings["queue_only"].append((time.perf_counter() - t0) * 1000)
            queue.submit_annotation(
                assignment_id=assignment.pk, annotator=user, client_key=uuid.uuid4(), labels=LABELS
            )
    finally:
        queue._selection_pick, queue._selection_status = real_pick, real_status
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

    from annotate.grading import queue

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
    fit = args.fit == "synthetic"
    n = Response.objects.filter(study=study).count()
    plans = query_plans(study)
    tokens = issue_tokens(users)
    connections.close_all()

    port = args.port or free_port()
    load_before = os.getloadavg()
    head = header("next_item_latency")  # at the start: a later commit is not this run's
    settings = ServerSettings(
        workers=args.workers, threads=args.threads, keep_alive=args.keep_alive
    )
    server = start_server(url, port, settings)
    scenarios = {}
    try:
        for think in args.think:
            reset_grading(study)
            visible_before = all_visible_share()
            refits = Refits(study, args.refit_seconds) if args.fit == "synthetic" else None
            connections.close_all()
            with refits or contextlib.nullcontext():
                load = run_load(
                    f"http://127.0.0.1:{port}",
                    tokens,
                    server_pid=server.pid,
                    warmup=args.warmup,
                    duration=args.duration,
                    max_cycles=args.max_cycles,
                    think=think,
                    spread=args.think_spread,
                )
            scenarios[f"think_{think:g}s"] = scenario_result(study, load, args, think)
            scenarios[f"think_{think:g}s"]["synthetic_refits"] = refits.count if refits else None
            scenarios[f"think_{think:g}s"]["response_pages_all_visible"] = {
                "before": visible_before,
                "after": all_visible_share(),
            }
            connections.close_all()
    finally:
        stop_server(server)
    breakdown = service_breakdown(study, users[0], args.breakdown_rounds)
    sql_time = database_time(study, users[1])
    result = {
        "what": "POST /api/studies/{slug}/next/ latency over loopback HTTP, next→submit cycles",
        "database": "PostgreSQL " + pg_version(),
        "responses": n,
        "cells": "3 arms × 3 regions × 20 judge cells (180), uniform random cells",
        "selection": (
            "calibration.selection.pick_cell on a synthetic trustworthy fit (1,000 draws, every "
            "verdict undecided; a new one every --refit-seconds, standing in for the worker): "
            "active picks + 15% exploration"
            if fit
            else "calibration.selection.pick_cell with no fit yet (uniform over cells)"
        ),
        "build": build_record(build_seconds, n, head),
        "annotators": args.annotators,
        "server": {
            "command": server_command(settings, port),
            "env": "DEBUG=0 SECRET_KEY=… ALLOWED_HOSTS=127.0.0.1 SECURE_SSL_REDIRECT=0",
        },
        "load_generator": {
            "how": "Python threads with requests.Session, one per annotator, same host; "
            "each cycle POST next then POST submit (resent with the same client key after a "
            "network error), then a pause uniform in think·(1 ± spread) seconds",
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
        "machine": machine(load_before),
    }
    summary = {
        name: {k: sc[k] for k in ("next_item_ms", "throughput_per_s", "cpu_ms_per_cycle")}
        | {"double_leases": sc["checks"]["double_leases"]}
        for name, sc in scenarios.items()
    }
    write_results(head, result, variant=args.variant, path=args.output)
    print(json.dumps({"scenarios": summary, "breakdown": breakdown}, indent=2))


def synthetic_fit(study, draws: int = 1000, blob: bytes | None = None):
    """A succeeded, trustworthy fit of hand-made draws matching the bench study.

    Arms inc/c1/c2, regions eu/us/apac, judges of 2, 2 and 5 bins (the cells' shape);
    every verdict undecided, so every pick runs the active rule over all 180 cells.
    """
    import numpy as np
    from django.utils import timezone

    from calibration.bayes.fit import DimensionFit
    from calibration.bayes.posterior import dump_draws
    from calibration.models import Fit

    rng = np.random.default_rng(0)
    fits = {}
    for key, bins in (("correctness", 2), ("refusal", 2), ("style", 5)):
        theta = np.clip(0.7 + 0.04 * rng.standard_normal((draws, 3, 3)), 0.01, 0.99)
        confusion = rng.dirichlet(np.linspace(1, 3, bins), size=(draws, 3, 2))
        confusion[:, :, 1] = confusion[:, :, 1, ::-1]  # passes lean to the high bins
        fits[key] = DimensionFit(
            arms=("inc", "c1", "c2"),
            regions=("eu", "us", "apac"),
            n_bins=bins,
            theta=theta,
            confusion=confusion,
            diagnostics={"max_rhat": 1.0, "min_ess_bulk": 1000.0, "divergences": 0.0},
            ok=True,
            seed=0,
            counts_digest="bench",
        )
    summary = {
        "candidates": {
            c: {"dimensions": {d: {"overall": {"verdict": "undecided"}} for d in fits}}
            for c in ("c1", "c2")
        }
    }
    now = timezone.now()
    return Fit.objects.create(
        study=study,
        status=Fit.Status.SUCCEEDED,
        started_at=now,
        finished_at=now,
        trustworthy=True,
        summary=summary,
        draws=blob if blob is not None else dump_draws(fits),
    )


class Refits:
    """Stands in for the worker: a new synthetic fit every ``seconds`` while running.

    In production a fit follows every ``refit_every`` grades (≤ 10 s from labels changed
    to posterior served, DESIGN), so a pick only reweights the labels since the last
    fit, and every server process loads each new fit's draws once. Without this the
    labels since one fit would grow for the whole run.
    """

    def __init__(self, study, seconds: float) -> None:
        self.study, self.seconds = study, seconds
        self.stop = threading.Event()
        self.count = 0
        self.blob = bytes(synthetic_fit(study).draws)
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        from django.db import connection

        try:
            while not self.stop.wait(self.seconds):
                synthetic_fit(self.study, blob=self.blob)
                self.count += 1
        finally:
            connection.close()

    def __enter__(self) -> Refits:
        if self.seconds > 0:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


BUILD = "build"  # the section of RESULTS that records the last build of the data


def build_record(seconds: float, n: int, head: dict[str, Any]) -> dict[str, Any]:
    """How long building the data took: now, or as recorded when it was built."""
    if seconds:
        record = {
            "seconds": round(seconds, 1),
            "responses": n,
            "how": "INSERT … SELECT generate_series (prompts, then responses) + VACUUM ANALYZE",
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
        write_results(head, record, variant=BUILD, path=RESULTS)
        return record
    built = section(RESULTS, BUILD)
    return {**(built["results"] if built else {}), "reused_by_this_run": True}


def scenario_result(study, load: dict[str, Any], args: argparse.Namespace, think: float):
    tally: Tally = load["tally"]
    nexts, submits = tally.ms["next"], tally.ms["submit"]
    cycles = max(1, len(submits))
    return {
        "think_seconds": think,
        "think_spread": args.think_spread,
        "pause_seconds": f"uniform {think * (1 - args.think_spread):g}–"
        f"{think * (1 + args.think_spread):g}",
        "statuses": dict(tally.statuses),
        "server_errors": tally.server_errors,
        "network_errors": len(tally.errors),
        "submits_resent_with_same_key": tally.retried_submits,
        "errors": tally.errors[:10],
        "next_item_ms": percentiles(nexts),
        "submit_ms": percentiles(submits),
        "throughput_per_s": {
            "next": round(len(nexts) / args.duration, 1),
            "submit": round(len(submits) / args.duration, 1),
        },
        "cpu_seconds_in_measured_window": load["cpu_seconds"],
        "cpu_ms_per_cycle": {
            k: round(v * 1000 / cycles, 1) for k, v in load["cpu_seconds"].items()
        },
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "p95_target_met": bool(nexts) and percentiles(nexts)["p95"] <= 50,
        "checks": database_checks(study, tally.acknowledged),
    }


if __name__ == "__main__":
    main()
