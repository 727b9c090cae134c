"""Dashboard render times: the lead's pages on the demo study with real fits.

Target (DESIGN.md): dashboard pages p95 ≤ 300 ms.

What it does, in a scratch database (PostgreSQL when ``--database-url`` names a server,
else a temporary SQLite file):

1. ``make_demo`` (the demo study, 3 arms × 6 regions × 3 dimensions), then grades with the
   demo's stored truth: two bench annotators, with an overlap (the second annotator
   re-grades a share of the first one's items, flipping ~8% of pass/fail decisions), with
   realistic ``time_spent_ms`` and timestamps in the last hour.
2. Two real fits through ``calibration.services.fit_now`` (the second after more labels,
   so the pair page has a history to draw).
3. Renders each page ``--renders`` times through Django's test client (full middleware
   stack, DEBUG off), after two warm-up renders, and records p50/p95/max in ms:

   * ``overview`` — the study page, full; ``overview_poll_unchanged`` — the 5 s decision poll
     when no new fit landed (204); ``overview_poll_new_fit`` — the poll that swaps the
     matrix; ``overview_progress`` — the progress poll;
   * ``pair_<arm>`` — a pair page, its per-fit view model cached (what every view after the
     first sees until the next fit); ``pair_<arm>_uncached`` — the same with the cache
     cleared before each render (the first view after a fit lands);
   * ``annotators``; ``report`` and ``draws`` (exports, fewer renders).

Run::

    .venv/bin/python bench/dashboard_render.py --database-url postgres://baton@127.0.0.1:55432/baton

Writes ``bench/results/dashboard_render.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from results_io import add_variant_argument, header, write_results

ROOT = Path(__file__).resolve().parent.parent
SCRATCH_DB = "baton_bench_dashboard"
RESULTS = ROOT / "bench" / "results" / "dashboard_render.json"


def _pg_admin(url: str, sql: str) -> None:
    import psycopg

    p = urlparse(url)
    with psycopg.connect(
        host=p.hostname, port=p.port, user=p.username, password=p.password,
        dbname=p.path.lstrip("/") or "postgres", autocommit=True,
    ) as conn:  # fmt: skip
        conn.execute(sql)


def _scratch_url(url: str) -> str:
    _pg_admin(url, f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)')
    _pg_admin(url, f'CREATE DATABASE "{SCRATCH_DB}"')
    return urlunparse(urlparse(url)._replace(path=f"/{SCRATCH_DB}"))


def _setup_django(database_url: str) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DEBUG": "0",
            "SECRET_KEY": "bench-dashboard-render",
            "ALLOWED_HOSTS": "testserver",
            "SECURE_SSL_REDIRECT": "0",
            "TASKS_BACKEND": "django.tasks.backends.immediate.ImmediateBackend",
            "DATABASE_URL": database_url,
        }
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _grade(study, *, per_arm: int, seed: int, overlap: float) -> int:
    """Grade ``per_arm`` ungraded responses per arm with the demo truth (bench-grader-1),
    and a share ``overlap`` of them again by bench-grader-2 with some disagreement."""
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from annotate.models import Annotation, Label, Membership, Response

    users = []
    for name in ("bench-grader-1", "bench-grader-2"):
        user, _ = get_user_model().objects.get_or_create(username=name)
        Membership.objects.get_or_create(study=study, user=user, defaults={"role": "annotator"})
        users.append(user)
    dims = list(study.dimensions.all())
    rng = np.random.default_rng(seed)
    now = timezone.now()
    made = 0
    for arm in study.arms.all():
        ids = list(
            Response.objects.filter(study=study, arm=arm)
            .exclude(annotations__isnull=False)
            .values_list("pk", flat=True)
        )
        chosen = [int(i) for i in rng.choice(ids, size=min(per_arm, len(ids)), replace=False)]
        responses = list(Response.objects.filter(pk__in=chosen))
        second = {r.pk for r in responses if rng.random() < overlap}
        rows = [(r, users[0]) for r in responses] + [(r, users[1]) for r in responses
                                                     if r.pk in second]  # fmt: skip
        annotations = Annotation.objects.bulk_create(
            Annotation(
                response=r, annotator=u, study=study,
                time_spent_ms=int(rng.gamma(4.0, 3000.0)),
                created_at=now - timedelta(seconds=float(rng.uniform(0, 3600))),
            )
            for r, u in rows
        )  # fmt: skip
        labels = []
        for a, (r, u) in zip(annotations, rows, strict=True):
            for d in dims:
                value = int(r.metadata["truth"][d.key])
                if u == users[1] and rng.random() < 0.08:
                    value = (1 - value) if d.is_binary else int(rng.integers(1, d.scale_max + 1))
                labels.append(Label(annotation=a, dimension=d, value=value))
        Label.objects.bulk_create(labels)
        made += len(responses)
    return made


def _stats(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(ms[-1], 1),
        "mean_ms": round(statistics.fmean(ms), 1),
    }


def _time(fn, *, renders: int, before=None, expect: int = 200) -> dict[str, float]:
    for _ in range(2):
        if before:
            before()
        assert fn().status_code == expect
    samples = []
    for _ in range(renders):
        if before:
            before()
        t0 = time.perf_counter()
        r = fn()
        samples.append(time.perf_counter() - t0)
        assert r.status_code == expect, r.status_code
    return _stats(samples)


def run(args: argparse.Namespace) -> dict:
    from django.core.cache import cache
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    from annotate.demo import make_demo
    from calibration import services
    from calibration.models import Fit

    t0 = time.perf_counter()
    call_command("migrate", verbosity=0)
    study = make_demo(prompts=args.prompts).study
    graded = _grade(study, per_arm=args.labels_per_arm, seed=1, overlap=0.15)
    setup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    first = services.fit_now(study=study, wait=True)
    first_fit_s = time.perf_counter() - t0
    graded += _grade(study, per_arm=args.labels_per_arm // 2, seed=2, overlap=0.15)
    t0 = time.perf_counter()
    fit = services.fit_now(study=study, wait=True)
    second_fit_s = time.perf_counter() - t0
    assert fit.status == Fit.Status.SUCCEEDED, fit.error

    client = Client()
    client.force_login(study.memberships.get(user__username="lead").user)
    s = {"slug": study.slug}
    overview = reverse("calibration-study", kwargs=s)
    hx = {"HX-Request": "true"}
    n = args.renders
    pages: dict[str, dict[str, float]] = {
        "overview": _time(lambda: client.get(overview), renders=n),
        "overview_poll_unchanged": _time(
            lambda: client.get(overview, {"part": "decision", "shown": fit.pk}, headers=hx),
            renders=n,
            expect=204,
        ),  # fmt: skip
        "overview_poll_new_fit": _time(
            lambda: client.get(overview, {"part": "decision", "shown": first.pk}, headers=hx),
            renders=n,
        ),  # fmt: skip
        "overview_progress": _time(
            lambda: client.get(overview, {"part": "progress"}, headers=hx), renders=n
        ),
    }
    for arm in study.candidates().order_by("position"):
        url = reverse("calibration-pair", kwargs={**s, "arm": arm.key})
        pages[f"pair_{arm.key}"] = _time(lambda url=url: client.get(url), renders=n)
        pages[f"pair_{arm.key}_uncached"] = _time(
            lambda url=url: client.get(url), renders=max(n // 3, 5), before=cache.clear
        )
    pages["annotators"] = _time(
        lambda: client.get(reverse("calibration-annotators", kwargs=s)), renders=n
    )
    pages["report"] = _time(
        lambda: client.get(reverse("calibration-report", kwargs=s)), renders=max(n // 6, 3)
    )
    pages["draws"] = _time(
        lambda: client.get(reverse("calibration-draws", kwargs=s)), renders=max(n // 6, 3)
    )
    targets = [k for k in pages if k not in ("report", "draws") and not k.endswith("_uncached")]
    return {
        "what": "server time per request through Django's test client (middleware, views, "
        "templates, DB), ms; pair pages cache their per-fit view model (charts, forecast) "
        "keyed by fit id, '_uncached' clears that cache before each render",
        "target": "dashboard pages p95 <= 300 ms",
        "meets_target": all(pages[k]["p95_ms"] <= 300 for k in targets),
        "pages_in_target": targets,
        "pages": pages,
        "study": {
            "responses": study.responses.count(),
            "graded_responses": graded,
            "fit_id": fit.pk,
            "fit_n_labels": fit.n_labels,
            "fit_trustworthy": fit.trustworthy,
            "fits": Fit.objects.filter(study=study, status="succeeded").count(),
        },
        "setup_seconds": round(setup_s, 1),
        "fit_seconds": [round(first_fit_s, 1), round(second_fit_s, 1)],
        "database": "postgresql" if args.database_url else "sqlite",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default="", help="PostgreSQL server (scratch DB)")
    parser.add_argument("--prompts", type=int, default=3000)
    parser.add_argument("--labels-per-arm", type=int, default=150)
    parser.add_argument("--renders", type=int, default=30)
    parser.add_argument("--out", default=str(RESULTS))
    add_variant_argument(parser)
    args = parser.parse_args()
    head = header("dashboard_render")
    tmp = None
    if args.database_url:
        url = _scratch_url(args.database_url)
    else:
        tmp = tempfile.TemporaryDirectory()
        url = f"sqlite:///{tmp.name}/bench.sqlite3"
    _setup_django(url)
    try:
        result = run(args)
    finally:
        from django.db import connections

        connections.close_all()
        if args.database_url:
            _pg_admin(args.database_url, f'DROP DATABASE IF EXISTS "{SCRATCH_DB}" WITH (FORCE)')
    write_results(head, result, variant=args.variant, path=Path(args.out))
    print(json.dumps({k: v["p95_ms"] for k, v in result["pages"].items()}, indent=1))


if __name__ == "__main__":
    main()
