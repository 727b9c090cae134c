"""An upload imported by a real ``db_worker``: does its progress reach the job row, how often,
and what does the progress callback cost the importer?

1. Overhead: the same JSONL file is imported into two fresh studies, once without and once
   with a progress callback (a no-op counter), in this process; the importer's CPU seconds
   are compared.
2. Worker: the file is uploaded as an ImportJob (``start_import``), then
   ``manage.py db_worker --batch`` runs it in a subprocess while this process reads the job
   row every 0.1 s and records each change of ``bytes_processed``.

PostgreSQL only (on SQLite the import holds the only write lock, so progress shows at the
end). Writes ``bench/results/import_job_progress.json``.

    DATABASE_URL=postgres://…/db .venv/bin/python bench/import_job_progress.py [--lines 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from import_speed import ARMS, REGIONS, generate  # noqa: E402
from results_io import add_variant_argument, header, write_results  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def drop_studies(prefix: str) -> None:
    from annotate.models import Prompt, Study

    # Responses protect their arm and region: prompts (and their responses) go first.
    Prompt.objects.filter(study__slug__startswith=prefix).delete()
    Study.objects.filter(slug__startswith=prefix).delete()


def make_study(slug: str):  # noqa: ANN201 — a Study, imported after django.setup()
    from annotate.models import Arm, Dimension, Region, Study

    drop_studies(slug)
    study = Study.objects.create(name=slug, slug=slug)
    for i, key in enumerate(ARMS):
        role = "incumbent" if i == 0 else "candidate"
        Arm.objects.create(study=study, key=key, model_name=key, position=i, role=role)
    Dimension.objects.create(study=study, key="correctness", title="Correctness", position=0,
                             judge_score_type="continuous", judge_min=0, judge_max=1,
                             judge_bins=4)  # fmt: skip
    Dimension.objects.create(study=study, key="refusal", title="Refusal", position=1)
    Dimension.objects.create(study=study, key="style", title="Style", position=2,
                             scale="ordinal", scale_max=5, pass_threshold=4,
                             judge_score_type="likert", judge_min=1, judge_max=5,
                             judge_bins=5)  # fmt: skip
    for i, (key, share) in enumerate(REGIONS.items()):
        Region.objects.create(study=study, key=key, name=key, traffic_share=Decimal(share),
                              position=i)  # fmt: skip
    return study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000, help="interactions (× 3 responses)")
    parser.add_argument("--out", default=str(ROOT / "bench/results/import_job_progress.json"))
    add_variant_argument(parser)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("DATABASE_URL=postgres://… is required (PostgreSQL only)")

    work = Path(tempfile.mkdtemp(prefix="baton-bench-progress-"))
    os.environ["MEDIA_ROOT"] = str(work / "media")
    os.environ["TASKS_BACKEND"] = "django_tasks_db.DatabaseBackend"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("BATON_INSECURE_DEV_KEY", "1")
    import django

    django.setup()
    from django.core.files import File
    from django.core.management import call_command

    from annotate.imports.importing import import_file
    from annotate.imports.services import start_import
    from annotate.models import ImportJob

    call_command("migrate", verbosity=0)
    path = work / "bench.jsonl"
    generate(path, args.lines, seed=3)
    size = path.stat().st_size
    head = header("import_job_progress", env=("DATABASE_URL",))
    load_before = os.getloadavg()

    # 1. What the callback costs the importer (client-side CPU; the database's is the same).
    overhead = {}
    for label, progress in (("without", None), ("with", lambda done, total: None)):
        study = make_study(f"bench-progress-{label}")
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        report = import_file(path, study=study, progress=progress)
        overhead[label] = {
            "cpu_seconds": round(cpu_seconds() - cpu0, 3),
            "wall_seconds": round(time.perf_counter() - t0, 3),
            "responses": report.responses.created,
        }
        print(label, overhead[label], flush=True)

    # 2. A real worker, watched from here.
    study = make_study("bench-progress-worker")
    with path.open("rb") as f:
        job = start_import(user=None, study=study, upload=File(f, name="bench.jsonl"), via="bench")
    env = {**os.environ}
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "db_worker", "--batch", "--no-startup-delay",
         "--no-reload", "--queue-name", "*"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    t0 = time.perf_counter()
    timeline: list[tuple[float, str, int]] = []
    try:
        while True:
            row = ImportJob.objects.values_list("status", "bytes_processed").get(pk=job.pk)
            if not timeline or timeline[-1][1:] != row:
                timeline.append((round(time.perf_counter() - t0, 2), *row))
            if row[0] in ("succeeded", "failed"):
                break
            if time.perf_counter() - t0 > 900:
                raise SystemExit("the job did not end within 15 minutes")
            time.sleep(0.1)
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    job.refresh_from_db()
    running = [(t, b) for t, s, b in timeline if s == "running"]
    moves = [t for (t, b), (_, prev) in zip(running[1:], running, strict=False) if b != prev]
    gaps = [round(b - a, 2) for a, b in zip(moves, moves[1:], strict=False)]
    result = {
        "what": "ImportJob progress through a real db_worker (PostgreSQL), and the callback's cost",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },  # fmt: skip
        "file": {"interactions": args.lines, "responses": 3 * args.lines, "bytes": size},
        "overhead": overhead,
        "worker": {
            "status": job.status,
            "responses_created": job.responses_created,
            "seconds_to_end": timeline[-1][0],
            "progress_values_seen": len({b for _, b in running}),
            "seconds_between_progress_moves": {
                "median": statistics.median(gaps) if gaps else None,
                "max": max(gaps) if gaps else None,
            },
            "timeline": timeline,
        },
    }
    write_results(head, result, variant=args.variant, path=Path(args.out))
    print(json.dumps({k: v for k, v in result["worker"].items() if k != "timeline"}, indent=2))
    drop_studies("bench-progress-")
    shutil.rmtree(work, ignore_errors=True)
    if worker.returncode:
        print(worker.stderr.read() if worker.stderr else "", file=sys.stderr)


if __name__ == "__main__":
    main()
