"""API fuzzing's committed record: runs ``tests/test_api_fuzz.py`` and keeps its summary.

The fuzzing is a test (schemathesis against ``/api/schema/``, in process), and a test run
writes its summary only to ``test-output/`` (it never rewrites a tracked file). This runs
that test with ``BATON_FUZZ_OUT`` (``BATON_FUZZ_STATEFUL_OUT`` with ``--stateful``) pointed
at a temporary file and writes the summary to ``bench/results/api_fuzz.json``
(``bench/results_io.py``): the generated requests per operation as the plain run, the state
machine over the queue's links as the variant ``stateful``. The database is the test's:
SQLite, or PostgreSQL with ``DATABASE_URL``. The exit status is pytest's; the summary is
written either way (it lists the failures).

    python bench/api_fuzz.py
    DATABASE_URL=postgres://… python bench/api_fuzz.py --stateful
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from results_io import ROOT, add_variant_argument, header, write_results

TEST = "tests/test_api_fuzz.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--stateful", action="store_true", help="the state machine (test ..._sequences_...)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "api_fuzz.json")
    add_variant_argument(parser, "default with --stateful: stateful")
    args = parser.parse_args()
    variant = args.variant or ("stateful" if args.stateful else None)
    select = "sequences" if args.stateful else "not sequences"
    pytest = [sys.executable, "-m", "pytest", TEST, "-k", select, "-p", "no:cacheprovider", "-q"]
    head = header("api_fuzz", env=("DATABASE_URL", "BATON_FUZZ_EXAMPLES", "BATON_FUZZ_SEQUENCES"))
    with tempfile.TemporaryDirectory(prefix="baton-fuzz-") as tmp:
        summary_file = Path(tmp) / "summary.json"
        env_var = "BATON_FUZZ_STATEFUL_OUT" if args.stateful else "BATON_FUZZ_OUT"
        done = subprocess.run(pytest, cwd=ROOT, env={**os.environ, env_var: str(summary_file)})
        if not summary_file.exists():
            print(f"pytest wrote no summary (exit {done.returncode})", file=sys.stderr)
            return done.returncode or 1
        summary = json.loads(summary_file.read_text())
    summary.pop("benchmark", None)  # the header's, as the command that ran the test is
    summary.pop("command", None)
    summary["pytest"] = shlex.join(["python", "-m", "pytest", TEST, "-k", select])
    path = write_results(head, summary, variant=variant, path=args.out)
    print(f"wrote {path} ({variant or 'plain run'}): exit {done.returncode}")
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
