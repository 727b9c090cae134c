"""The one results file of each benchmark: ``bench/results/<benchmark>.json``.

Every script ``bench/<benchmark>.py`` writes its figures through :func:`write_results`, under
a common :func:`header` that says which code ran where, and how busy the machine was::

    {
     "header": {
      "benchmark": "next_item_latency",   # the script: bench/<benchmark>.py
      "commit": "<sha of git HEAD>",      # the checkout whose code ran (null: unknown)
      "dirty": false,                     # tracked files changed against that commit
      "machine": {"cpus": 2, "python": "3.12.1", "platform": "Linux-…"},
      "load": 0.42,                       # 1-minute load average when the run started
      "command": "python bench/next_item_latency.py",
      "created": "2026-12-07T18:01:46Z"   # UTC, when the run started
     },
     "results": {…},                      # what the script measured, in its own shape
     "variants": {                        # only if a variant was run
      "lockstep": {"header": {…}, "results": {…}}
     }
    }

``header`` and ``results`` are the script's plain run. A **variant** is a run of the same
script that answers a different question (other flags, another code tree): it is kept as a
named section under ``variants`` with its own header, so a plain run and each variant are
current side by side in one file. Writing a section replaces that section only: re-running a
variant leaves the plain run and the other variants as they are, and the other way round.
Scripts with options take ``--variant NAME`` (:func:`add_variant_argument`); some name the
variant themselves from the flag that makes it one (``next_item_latency.py --think-spread 0``
is ``lockstep``, ``cold_start.py`` under ``BATON_WARMUP=0`` is ``no_warmup``). A variant
written before any plain run leaves ``header`` and ``results`` null until one is. Two
files keep a record rather than one run: ``next_item_latency``'s section ``build`` is how
long the last build of its data took (a later run that reuses the data reports it), and
``next_item_cpu``'s results are the ``runs`` of a before/after comparison, each run appending
one (the header is the latest run's).

Header fields a run cannot know are null (so are those of records converted from files
that did not say). ``dirty`` ignores ``bench/results/`` itself, so a results file waiting
to be committed does not mark the next run. Raw per-run dumps (per-study rows, checkpoints)
belong in ``bench/raw/``, which git ignores, not here: a results file keeps the summaries
and tables, and says where its raw lines are and which command makes them
(:func:`raw_record`). Raw lines are JSON, one a line (:func:`read_raw`, :func:`write_lines`);
a script that needs them and finds none stops and names that command (:func:`require_raw`).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RAW = ROOT / "bench" / "raw"
HEADER_KEYS = ("benchmark", "commit", "dirty", "machine", "load", "command", "created")
MACHINE_KEYS = ("cpus", "python", "platform")
VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
EXCEPT = ":(exclude)bench/results"  # results waiting to be committed do not make a run dirty
PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


def _git(args: list[str], repo: Path) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def _command(argv: Sequence[str] | None, env: Sequence[str]) -> str:
    """``python bench/<script>.py ARGS`` as typed, after the named environment variables set."""
    script = sys.argv[0] if sys.argv and sys.argv[0] else "-"
    if Path(script).is_absolute() and Path(script).is_relative_to(ROOT):
        script = str(Path(script).relative_to(ROOT))
    args = list(sys.argv[1:] if argv is None else argv)
    prefix = [f"{k}={os.environ[k]}" for k in env if k in os.environ]
    # A database URL's password stays out of the record.
    return PASSWORD.sub(r"\1…@", shlex.join([*prefix, "python", script, *args]))


def header(
    benchmark: str,
    *,
    argv: Sequence[str] | None = None,
    env: Sequence[str] = (),
    repo: Path | None = None,
) -> dict[str, Any]:
    """The common header of a run of ``bench/<benchmark>.py``; call it when the run starts.

    ``argv``: the arguments when ``main(argv)`` was called with them (default
    ``sys.argv[1:]``); ``env``: environment variables that change the run, shown before the
    command when set; ``repo``: the checkout whose code runs (default this one).
    """
    repo = repo or ROOT
    head = _git(["rev-parse", "HEAD"], repo)
    status = _git(["status", "--porcelain", "--untracked-files=no", "--", ".", EXCEPT], repo)
    try:
        load: float | None = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {
        "benchmark": benchmark,
        "commit": head.strip() if head else None,
        "dirty": bool(status.strip()) if status is not None else None,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "load": load,
        "command": _command(argv, env),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def add_variant_argument(parser: argparse.ArgumentParser, help_extra: str = "") -> None:
    """``--variant NAME``: write the run as that named section of the results file."""
    parser.add_argument(
        "--variant",
        type=variant_name,
        default=None,
        help="write this run as the named variant section of the results file "
        "(default: the plain run)" + (f"; {help_extra}" if help_extra else ""),
    )


def variant_name(name: str) -> str:
    if not VARIANT_NAME.match(name):
        raise argparse.ArgumentTypeError(f"{name!r}: lower-case letters, digits and _ only")
    return name


def path_of(benchmark: str) -> Path:
    return RESULTS / f"{benchmark}.json"


def read(path: Path) -> dict[str, Any]:
    """The whole file (``{}`` if there is none); an older layout is refused, not overwritten."""
    if not path.exists():
        return {}
    doc = json.loads(path.read_text())
    if not (isinstance(doc, dict) and "header" in doc and "results" in doc):
        raise ValueError(
            f"{path} is not in the layout of bench/results_io.py (header, results, variants); "
            "move it away or write elsewhere"
        )
    return doc


def section(path: Path, variant: str | None = None) -> dict[str, Any] | None:
    """``{"header": …, "results": …}`` of the plain run or of a variant (None if absent)."""
    doc = read(path)
    got = doc if variant is None else doc.get("variants", {}).get(variant)
    if not got or got.get("header") is None:
        return None
    return {"header": got["header"], "results": got["results"]}


def write_results(
    head: dict[str, Any],
    results: Any,
    *,
    variant: str | None = None,
    path: Path | None = None,
) -> Path:
    """Write one run's ``results`` under ``head`` into its benchmark's file.

    ``path`` defaults to ``bench/results/<benchmark>.json`` (a script's ``--out``). Only the
    plain run's section, or only ``variant``'s, is replaced; the rest of the file stays. The
    file is replaced atomically (a reader never sees half of it) under a lock on its folder
    (two runs writing different variants at once both land).
    """
    if set(head) != set(HEADER_KEYS):
        raise ValueError(f"a header has exactly the keys {HEADER_KEYS}, not {sorted(head)}")
    if variant is not None:
        variant_name(variant)
    path = Path(path) if path is not None else path_of(head["benchmark"])
    path.parent.mkdir(parents=True, exist_ok=True)
    text_of = lambda doc: json.dumps(doc, indent=1, default=_plain) + "\n"  # noqa: E731
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        doc = read(path)
        variants = dict(doc.get("variants", {}))
        if variant is None:
            new = {"header": head, "results": results}
        else:
            variants[variant] = {"header": head, "results": results}
            new = {"header": doc.get("header"), "results": doc.get("results")}
        if variants:
            new["variants"] = dict(sorted(variants.items()))
        text = text_of(new)  # serialise before touching the file: a bad value changes nothing
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        fcntl.flock(folder, fcntl.LOCK_UN)
        os.close(folder)
    return path


# ------------------------------------------------------------------ raw lines (bench/raw/)


def raw_path(raw: Path, kind: str, name: str) -> Path:
    """``<raw>/<kind>/<name>.jsonl`` (``kind``: the benchmark, or one of its kinds of line)."""
    return Path(raw) / kind / f"{name}.jsonl"


def read_raw(path: Path) -> list[dict[str, Any]]:
    """Every line of a raw file, in file order (``[]`` if there is none)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_lines(path: Path, lines: Sequence[Any]) -> Path:
    """Replace ``path`` atomically with ``lines``, one JSON value a line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(json.dumps(line, default=_plain) + "\n" for line in lines))
    os.replace(tmp, path)
    return path


def shown(path: Path) -> str:
    """``path`` as a results file names it: relative to the checkout when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def raw_record(files: Any, command: str | None, **more: Any) -> dict[str, Any]:
    """What a results file says of its raw lines: ``files`` (a path, or paths by name, as
    :func:`shown`), the ``command`` that wrote them, and anything ``more``."""
    return {"files": files, "command": command, **more}


def require_raw(
    path: Path, command: str | None, expected: int | None = None
) -> list[dict[str, Any]]:
    """The lines of ``path``; stop with the command that makes them when there are none (or
    not ``expected`` many: lines of another run)."""
    lines = read_raw(path)
    how = f"regenerate them with: {command}" if command else "re-run the benchmark"
    if not lines:
        raise SystemExit(f"no raw lines in {shown(path)} (git does not keep bench/raw/); {how}")
    if expected is not None and len(lines) != expected:
        raise SystemExit(
            f"{shown(path)} holds {len(lines)} lines, the results file {expected}: "
            f"lines of another run; {how}"
        )
    return lines


def _plain(obj: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists; tuples are lists already."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
