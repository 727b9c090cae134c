"""Import speed and memory: a generated JSONL file imported end to end into PostgreSQL and SQLite.

    .venv/bin/python bench/import_speed.py                      # 1M and 100k, both, 3 runs each
    .venv/bin/python bench/import_speed.py --responses 100000 --backends sqlite

"End to end" is what ``import_file`` does: read, parse, validate, stage, check, write, bin
(correctness is a continuous judge, so its quantile cuts come from this very import). Each
(backend, size) runs in a fresh Python process on a freshly migrated database, so the peak
RSS (``resource.getrusage``) is that of one import; running two sizes shows whether memory
grows with the file. PostgreSQL comes from ``DATABASE_URL`` (a scratch database
``<name>_bench_import`` is created and dropped); SQLite is a file under /tmp.

Writes ``bench/results/import_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

from results_io import add_variant_argument, header, write_results

ROOT = Path(__file__).resolve().parent.parent
ARMS = ("inc", "cand1", "cand2")
REGIONS = {"eu": "0.5", "us": "0.3", "apac": "0.2"}
WORDS = [
    "account",
    "password",
    "reset",
    "settings",
    "security",
    "email",
    "verify",
    "link",
    "open",
    "click",
    "support",
    "team",
    "please",
    "thanks",
    "error",
    "browser",
    "cache",
    "cookie",
    "device",
    "phone",
    "update",
    "version",
    "model",
    "answer",
    "policy",
    "refund",
    "order",
    "shipping",
    "delivery",
    "invoice",
    "billing",
    "plan",
    "upgrade",
    "cancel",
]


def text(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        out.append(word)
        size += len(word) + 1
    return " ".join(out).capitalize() + "."


def generate(path: Path, lines: int, seed: int) -> None:
    """Write ``lines`` interactions × 3 arms × 3 dimensions (continuous, binary, Likert)."""
    rng = random.Random(seed)
    regions = list(REGIONS)
    # Texts are drawn from a pool so generating a million lines takes seconds, not minutes.
    prompts = [text(rng, 120) for _ in range(997)]
    answers = [text(rng, 400) for _ in range(1999)]
    tmp = path.with_suffix(".part")
    with tmp.open("w", encoding="utf-8") as out:
        for n in range(lines):
            responses = {}
            for arm in ARMS:
                responses[arm] = {
                    "text": answers[rng.randrange(len(answers))] + f" [{n}/{arm}]",
                    "scores": {
                        "correctness": round(rng.random(), 4),
                        "refusal": int(rng.random() < 0.1),
                        "style": rng.randint(1, 5),
                    },
                }
            line = {
                "id": f"q-{n:07d}",
                "region": regions[n % len(regions)],
                "prompt": prompts[n % len(prompts)] + f" (#{n})",
                "responses": responses,
                "judge": "gpt-judge-1",
            }
            out.write(json.dumps(line, separators=(",", ":")))
            out.write("\n")
    tmp.rename(path)


def add_bench_schema(study: Any, regions: Iterable[tuple[str, str]]) -> None:
    """The generated file's arms, dimensions and regions on ``study`` (Django set up):
    a continuous correctness judge in 4 quantile bins, a binary refusal judge, a Likert
    style judge; ``regions`` are ``(key, traffic share)``. Shared with scale_month.py."""
    from decimal import Decimal

    from annotate.models import Arm, Dimension, Region

    for i, key in enumerate(ARMS):
        Arm.objects.create(
            study=study,
            key=key,
            model_name=f"model-{key}",
            position=i,
            role="incumbent" if i == 0 else "candidate",
        )
    Dimension.objects.create(
        study=study,
        key="correctness",
        title="Correctness",
        position=0,
        judge_score_type="continuous",
        judge_min=0,
        judge_max=1,
        judge_bins=4,
    )
    Dimension.objects.create(study=study, key="refusal", title="Refusal", position=1)
    Dimension.objects.create(
        study=study,
        key="style",
        title="Style",
        position=2,
        scale="ordinal",
        scale_max=5,
        pass_threshold=4,
        judge_score_type="likert",
        judge_min=1,
        judge_max=5,
        judge_bins=5,
    )
    for i, (key, share) in enumerate(regions):
        Region.objects.create(
            study=study, key=key, name=key.upper(), traffic_share=Decimal(share), position=i
        )


def child(path: Path) -> dict[str, object]:
    """Runs in a fresh process whose environment selects the database."""
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
    study = Study.objects.create(name="Bench", slug="bench")
    add_bench_schema(study, REGIONS.items())
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    load_before = os.getloadavg()
    client0, server0 = _cpu_seconds(connection)
    started = time.perf_counter()
    report = import_file(path, study=study)
    seconds = time.perf_counter() - started
    client1, server1 = _cpu_seconds(connection)
    load_after = os.getloadavg()
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # A second import of the same file: the idempotent path (everything compared, unchanged).
    client2, server2 = _cpu_seconds(connection)
    started = time.perf_counter()
    again = import_file(path, study=study)
    seconds_again = time.perf_counter() - started
    client3, server3 = _cpu_seconds(connection)
    rss_peak_again = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert again.responses.unchanged == report.responses.created, again
    per_100k = 100_000 / report.responses.created
    client_cpu = client1 - client0
    server_cpu = None if server0 is None or server1 is None else server1 - server0
    return {
        "vendor": connection.vendor,
        "server_version": getattr(connection, "pg_version", None)
        or __import__("sqlite3").sqlite_version,
        "lines": report.lines,
        "responses": report.responses.created,
        "scores": report.scores.created,
        "seconds": round(seconds, 2),
        "responses_per_second": round(report.responses.created / seconds),
        "phases_seconds": report.phases,
        "reimport_phases_seconds": again.phases,
        "cuts_fixed": report.cuts_fixed,
        # On a shared machine wall time depends on the neighbours; CPU time much less.
        "load_average_1_5_15_before": [round(x, 2) for x in load_before],
        "load_average_1_5_15_after": [round(x, 2) for x in load_after],
        # Client: this process, both threads (parse and write). Server: its backend.
        "client_cpu_seconds": round(client_cpu, 2),
        "server_cpu_seconds": None if server_cpu is None else round(server_cpu, 2),
        "client_cpu_seconds_per_100k_responses": round(client_cpu * per_100k, 2),
        "server_cpu_seconds_per_100k_responses": None
        if server_cpu is None
        else round(server_cpu * per_100k, 2),
        "responses_per_cpu_second": round(
            report.responses.created / (client_cpu + (server_cpu or 0))
        ),
        # What each side alone would allow with a core to itself (the two run in parallel).
        "responses_per_client_cpu_second": round(report.responses.created / client_cpu),
        "responses_per_server_cpu_second": None
        if not server_cpu
        else round(report.responses.created / server_cpu),
        "peak_rss_mib_before_import": round(rss_before / 1024, 1),
        "peak_rss_mib_after_import": round(rss_peak / 1024, 1),
        "reimport_seconds": round(seconds_again, 2),
        "reimport_client_cpu_seconds": round(client3 - client2, 2),
        "reimport_server_cpu_seconds": None
        if server2 is None or server3 is None
        else round(server3 - server2, 2),
        "reimport_responses_per_second": round(report.responses.created / seconds_again),
        "peak_rss_mib_after_reimport": round(rss_peak_again / 1024, 1),
    }


def _cpu_seconds(connection: object) -> tuple[float, float | None]:
    """CPU seconds of this process and, for a PostgreSQL server on this host, of its backend."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    client = usage.ru_utime + usage.ru_stime
    if getattr(connection, "vendor", "") != "postgresql":
        return client, None
    connection.ensure_connection()  # type: ignore[attr-defined]
    pid = connection.connection.info.backend_pid  # type: ignore[attr-defined]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return client, None
    return client, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_child(backend: str, path: Path, database_url: str) -> dict[str, object]:
    env = {**os.environ, "BATON_INSECURE_DEV_KEY": "1", "DEBUG": "0"}
    if backend == "postgresql":
        parsed = urlparse(database_url)
        scratch = parsed.path.lstrip("/") + "_bench_import"
        admin = urlunparse(parsed._replace(path="/postgres"))
        import psycopg

        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
            conn.execute(f'CREATE DATABASE "{scratch}"')
        env["DATABASE_URL"] = urlunparse(parsed._replace(path="/" + scratch))
    else:
        db = Path("/tmp/baton_bench_import.sqlite3")
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        env["DATABASE_URL"] = ""
        env["SQLITE_PATH"] = str(db)
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(path)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        if backend == "postgresql":
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--responses", type=int, default=1_000_000, help="largest size")
    parser.add_argument(
        "--small", type=int, default=100_000, help="a smaller size, to compare peak memory"
    )
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each (size, backend): this 2-core VM's speed varies by a third between runs",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/import_speed.json")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    add_variant_argument(parser)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    head = header("import_speed", env=("DATABASE_URL",))
    database_url = os.environ.get("DATABASE_URL", "")
    backends = [b for b in args.backends.split(",") if b]
    if "postgresql" in backends and not database_url.startswith("postgres"):
        sys.exit("DATABASE_URL must point at PostgreSQL for the postgresql backend")
    runs = []
    for responses in sorted({args.small, args.responses}):
        lines = -(-responses // len(ARMS))
        path = Path(f"/tmp/baton_bench_import_{lines}_{args.seed}.jsonl")
        if not path.exists():
            started = time.perf_counter()
            generate(path, lines, args.seed)
            print(f"generated {path} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        for repeat in range(args.repeat):
            for backend in backends:
                result = run_child(backend, path, database_url)
                result["file_mib"] = round(path.stat().st_size / 2**20, 1)
                result["repeat"] = repeat
                print(json.dumps(result), file=sys.stderr)
                runs.append(result)
    summary = {}
    for backend in backends:
        for responses in sorted({r["responses"] for r in runs if r["vendor"] == backend}):
            mine = [r for r in runs if r["vendor"] == backend and r["responses"] == responses]
            rates = sorted(r["responses_per_second"] for r in mine)
            again = sorted(round(r["responses"] / r["reimport_seconds"]) for r in mine)
            summary[f"{backend} {responses}"] = {
                "runs": len(mine),
                "responses_per_second": {
                    "min": rates[0],
                    "median": rates[len(rates) // 2],
                    "max": rates[-1],
                },
                "reimport_responses_per_second_median": again[len(again) // 2],
            }
    results = {
        "parameters": {
            "arms": list(ARMS),
            "dimensions": {
                "correctness": "continuous 0..1, 4 quantile bins fixed by this import",
                "refusal": "binary",
                "style": "likert 1..5",
            },
            "regions": REGIONS,
            "prompt_chars": 120,
            "response_chars": 400,
            "seed": args.seed,
        },
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "target": ">= 100000 responses/s into PostgreSQL",
        "summary": summary,
        "runs": runs,
    }
    write_results(head, results, variant=args.variant, path=args.out)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
