"""CPU per next → submit cycle, in-process: the Django side and its database backend.

Latency on a shared 2-core machine mostly measures the other work on it; CPU seconds per
cycle do not (much). This drives the real API (``django.test.Client``, token auth, DEBUG
off) against the bench study of ``bench/next_item_latency.py`` for ``--cycles`` cycles,
one annotator, sequentially, and reads this process's CPU time and its PostgreSQL
backend's (``/proc/<pid>/stat``). ``--code-root`` runs another checkout of the project
against the same database, for a before/after comparison::

    git worktree add /tmp/baton-before <commit>
    .venv/bin/python bench/next_item_cpu.py --code-root /tmp/baton-before --label before
    .venv/bin/python bench/next_item_cpu.py --label after

Each run appends one record to the ``runs`` of ``bench/results/next_item_cpu.json`` (or of
its ``--variant``; ``bench/results_io.py``), whose header is the latest run's: start a new
comparison with a new ``--variant``. ``--fit synthetic`` picks with a posterior
(``next_item_latency.synthetic_fit``), ``none`` without one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "next_item_cpu.json"
LABELS = {"correctness": 1, "refusal": 0, "style": 4}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="postgres://baton@127.0.0.1:55432/baton_bench")
    p.add_argument("--code-root", type=Path, default=HERE.parent)
    p.add_argument("--label", default="current")
    p.add_argument("--cycles", type=int, default=60)
    p.add_argument("--fit", choices=("synthetic", "none"), default="none")
    p.add_argument("--annotator", default="bench-annotator-7")
    p.add_argument("--output", type=Path, default=RESULTS)
    p.add_argument(
        "--profile",
        type=Path,
        help="also write a cProfile of the measured cycles here (pstats format; no record)",
    )
    sys.path.insert(0, str(HERE))
    from results_io import add_variant_argument, header, section, write_results

    add_variant_argument(p)
    args = p.parse_args()

    root = args.code_root.resolve()
    sys.path.insert(0, str(root))
    sys.path.insert(1, str(HERE))
    os.chdir(root)
    os.environ.update(
        DATABASE_URL=args.url,
        DEBUG="0",
        SECRET_KEY=uuid.uuid4().hex * 2,
        ALLOWED_HOSTS="testserver",
        SECURE_SSL_REDIRECT="0",
        DATABASE_CONN_MAX_AGE="600",
        DJANGO_SETTINGS_MODULE="config.settings",
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    import calibration.selection  # noqa: F401  (imported before timing, as gunicorn does)
    import calibration.services  # noqa: F401
    from accounts.services import issue_token
    from annotate.models import Study
    from calibration.models import Fit

    study = Study.objects.get(slug="bench-latency")
    Fit.objects.filter(study=study).delete()
    if args.fit == "synthetic":
        from next_item_latency import synthetic_fit

        synthetic_fit(study)
    user = get_user_model().objects.get(username=args.annotator)
    client = Client(HTTP_AUTHORIZATION=f"Token {issue_token(user=user, name='cpu bench').key}")

    def cycle() -> None:
        res = client.post(f"/api/studies/{study.slug}/next/")
        if res.status_code != 200:
            raise SystemExit(f"next: HTTP {res.status_code}: {res.content[:200]!r}")
        res = client.post(
            f"/api/assignments/{res.json()['assignment_id']}/submit/",
            {"client_key": str(uuid.uuid4()), "labels": LABELS},
            content_type="application/json",
        )
        if res.status_code != 201:
            raise SystemExit(f"submit: HTTP {res.status_code}: {res.content[:200]!r}")

    for _ in range(5):  # caches, prepared connection
        cycle()
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]

    def backend_seconds() -> float:
        fields = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.runcall(lambda: [cycle() for _ in range(args.cycles)])
        profiler.dump_stats(args.profile)
        print(f"profile of {args.cycles} cycles: {args.profile}")
        return

    head = header("next_item_cpu", repo=root)
    load_before = os.getloadavg()
    cpu0, db0, wall0 = time.process_time(), backend_seconds(), time.perf_counter()
    for _ in range(args.cycles):
        cycle()
    n = args.cycles
    record = {
        "label": args.label,
        "code_root": str(root),
        "fit": args.fit,
        "cycles": n,
        "django_cpu_ms_per_cycle": round((time.process_time() - cpu0) * 1000 / n, 1),
        "database_cpu_ms_per_cycle": round((backend_seconds() - db0) * 1000 / n, 1),
        "wall_ms_per_cycle": round((time.perf_counter() - wall0) * 1000 / n, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    before = section(args.output, args.variant)
    runs = [*(before["results"]["runs"] if before else []), record]
    write_results(head, {"runs": runs}, variant=args.variant, path=args.output)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
