"""What side-by-side grading costs the queue: a pair pick and a pair submit against a single.

On the demo study (3 arms × ``--prompts`` prompts, judge scores, no fit yet so the first
pick is the queue's uniform draw, the same in both modes), ``--annotators`` annotators take
turns; each round one of them asks for an item in single mode (``queue.next_item``, then
``queue.submit_annotation``) and another in side-by-side mode (``queue_pairs.next_pair``,
then ``queue_pairs.submit_pair``). Times are in-process service calls (no HTTP), p50/p95.

Run (on your own database; the bench study is created under its own slug and deleted)::

    DATABASE_URL=postgres://baton@127.0.0.1:55432/baton_h1 \
        .venv/bin/python bench/pair_pick_latency.py

Writes ``bench/results/pair_pick_latency.json`` with the load average and CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

from results_io import add_variant_argument, header, write_results

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "pair_pick_latency.json"
SLUG = "bench-pair-pick"


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench-pair-pick")
    os.environ.setdefault("TASKS_BACKEND", "django.tasks.backends.dummy.DummyBackend")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _stats(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(p95, 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def _drop_bench_study() -> None:
    """Delete the bench study (its protected rows first: annotations, responses, prompts)."""
    from annotate.models import Annotation, Prompt, Response, Study

    study = Study.objects.filter(slug=SLUG).first()
    if study is None:
        return
    Annotation.objects.filter(study=study).delete()
    Response.objects.filter(study=study).delete()
    Prompt.objects.filter(study=study).delete()
    study.delete()


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    from django.core.management import call_command
    from django.db import connection

    from annotate.demo import make_demo
    from annotate.grading import queue, queue_pairs
    from annotate.models import Membership, Study
    from tests.factories import UserFactory

    call_command("migrate", verbosity=0)
    _drop_bench_study()
    t0 = time.perf_counter()
    study = make_demo(prompts=args.prompts, slug=SLUG).study
    setup_s = time.perf_counter() - t0
    Study.objects.filter(pk=study.pk).update(status="active", label_budget=100_000)
    study.refresh_from_db()
    users = []
    for i in range(args.annotators):
        user = UserFactory(username=f"bench-pair-{i}")
        Membership.objects.get_or_create(study=study, user=user, defaults={"role": "annotator"})
        users.append(user)
    labels = {d.key: d.scale_values()[-1] for d in study.dimensions.all()}
    rng = np.random.default_rng(args.seed)
    # The labels-changed hook would queue fits; the bench measures the queue alone.
    queue.notify_new_labels = lambda *, study: None  # type: ignore[assignment]

    single_pick, single_submit, pair_pick, pair_submit = [], [], [], []
    kinds = {"pair": 0, "single_fallback": 0}
    cpu0, wall0, load0 = time.process_time(), time.perf_counter(), os.getloadavg()
    for r in range(args.rounds + args.warmup):
        one, two = users[(2 * r) % len(users)], users[(2 * r + 1) % len(users)]
        t = time.perf_counter()
        item = queue.next_item(study=study, annotator=one, rng=rng)
        picked = time.perf_counter() - t
        t = time.perf_counter()
        queue.submit_annotation(
            assignment_id=item.pk, annotator=one, client_key=uuid.uuid4(), labels=labels
        )
        submitted = time.perf_counter() - t
        if r >= args.warmup:
            single_pick.append(picked)
            single_submit.append(submitted)

        t = time.perf_counter()
        served = queue_pairs.next_pair(study=study, annotator=two, rng=rng)
        picked = time.perf_counter() - t
        t = time.perf_counter()
        if isinstance(served, queue_pairs.Pair):
            queue_pairs.submit_pair(
                pair_key=served.key, annotator=two, client_key=uuid.uuid4(),
                labels={queue_pairs.LEFT: labels, queue_pairs.RIGHT: labels},
            )  # fmt: skip
        else:
            queue.submit_annotation(
                assignment_id=served.pk, annotator=two, client_key=uuid.uuid4(), labels=labels
            )
        submitted = time.perf_counter() - t
        if r >= args.warmup:
            kinds["pair" if isinstance(served, queue_pairs.Pair) else "single_fallback"] += 1
            pair_pick.append(picked)
            pair_submit.append(submitted)
    cpu_s, wall_s, load1 = time.process_time() - cpu0, time.perf_counter() - wall0, os.getloadavg()
    vendor = connection.vendor
    _drop_bench_study()
    return {
        "what": "in-process queue service calls on the demo study: single item vs side-by-side "
        "pair (pick = next_item / next_pair; submit = submit_annotation / submit_pair)",
        "database": vendor,
        "parameters": {
            "prompts": args.prompts,
            "responses": args.prompts * 3,
            "annotators": args.annotators,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "seed": args.seed,
        },
        "setup_s": round(setup_s, 1),
        "single": {"pick": _stats(single_pick), "submit": _stats(single_submit)},
        "side_by_side": {
            "pick": _stats(pair_pick),
            "submit": _stats(pair_submit),
            "served": kinds,
        },
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_at_start": [round(x, 2) for x in load0],
            "loadavg_at_end": [round(x, 2) for x in load1],
            "process_cpu_s": round(cpu_s, 2),
            "wall_s": round(wall_s, 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=3000)
    parser.add_argument("--annotators", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    add_variant_argument(parser)
    args = parser.parse_args()
    head = header("pair_pick_latency")
    _setup_django()
    result = run(args)
    write_results(head, result, variant=args.variant, path=args.out)
    print(json.dumps({k: result[k] for k in ("single", "side_by_side", "machine")}, indent=2))


if __name__ == "__main__":
    main()
