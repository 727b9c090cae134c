"""Each file under bench/results/ is one benchmark's, with the common header, written by its
script through ``bench/results_io.py``; that module keeps a file's other sections; and no
file holds a raw per-study dump (those go to ``bench/raw/``).

Fast and without a database: it reads the committed files and the scripts' source, and
writes only under ``tmp_path``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import results_io

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"

HELPERS = {"bayes_common.py", "http_common.py", "results_io.py"}  # no benchmark of their own

IMPORTS_RESULTS_IO = re.compile(r"^\s*from (bench\.)?results_io import ", re.MULTILINE)

RESULT_FILES = sorted(RESULTS.glob("*.json"))
SCRIPTS = [p for p in sorted(BENCH.glob("*.py")) if p.name not in HELPERS]


def _sections(doc: dict) -> list[tuple[str, dict]]:
    return [("plain run", doc), *doc.get("variants", {}).items()]


def header_problems(head: object, benchmark: str) -> list[str]:
    """What is wrong with one section's header (nothing: ``[]``)."""
    if not isinstance(head, dict):
        return ["no header"]
    if list(head) != list(results_io.HEADER_KEYS):
        return [f"header keys {list(head)}, not {list(results_io.HEADER_KEYS)}"]
    problems = []
    if head["benchmark"] != benchmark:
        problems.append(f"benchmark {head['benchmark']!r}, not {benchmark!r}")
    machine = head["machine"]
    if not isinstance(machine, dict) or list(machine) != list(results_io.MACHINE_KEYS):
        problems.append(f"machine {machine!r}: the keys {results_io.MACHINE_KEYS}")
    else:
        if not isinstance(machine["cpus"], int | None):
            problems.append("machine.cpus is not a number")
        for key in ("python", "platform"):
            if not isinstance(machine[key], str | None):
                problems.append(f"machine.{key} is not text")
    for key, kind in (("commit", str), ("dirty", bool), ("command", str), ("created", str)):
        if not isinstance(head[key], kind | None):
            problems.append(f"{key} {head[key]!r} is not {kind.__name__} or null")
    if head["commit"] is not None and not re.fullmatch(r"[0-9a-f]{40}", head["commit"]):
        problems.append(f"commit {head['commit']!r} is not a full sha")
    if head["load"] is not None and not isinstance(head["load"], int | float):
        problems.append(f"load {head['load']!r} is not a number")
    if head["created"] is not None and not re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", head["created"]
    ):
        problems.append(f"created {head['created']!r} is not an ISO UTC time")
    return problems


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda p: p.name)
def test_every_results_file_has_the_common_header_in_each_section(path):
    doc = json.loads(path.read_text())
    assert isinstance(doc, dict) and {"header", "results"} <= set(doc), (
        f"{path.name}: not in the layout of bench/results_io.py"
    )
    assert set(doc) <= {"header", "results", "variants"}, sorted(doc)
    problems = [
        f"{name}: {problem}"
        for name, section in _sections(doc)
        for problem in header_problems(section.get("header"), path.stem)
    ]
    assert problems == []
    for name, section in doc.get("variants", {}).items():
        assert results_io.VARIANT_NAME.match(name) and set(section) == {"header", "results"}


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda p: p.name)
def test_every_results_file_has_a_script_that_writes_it(path):
    script = BENCH / f"{path.stem}.py"
    assert script.exists(), f"{path.name}: no bench/{script.name} writes it"
    source = script.read_text()
    assert IMPORTS_RESULTS_IO.search(source), f"bench/{script.name} does not use results_io"
    assert re.search(rf"""header\(\s*["']{path.stem}["']""", source), (
        f"bench/{script.name} does not write the header of {path.stem!r}"
    )


#: A results file holds summaries and tables; per-study or per-run dumps go to bench/raw/
#: (git ignores it). The largest file kept is ~130 KB (forecast_calibration.json), the
#: longest list of records 84 (fit_diagnostics.json's fits); the dumps moved out were
#: 0.4-2.2 MB and lists of 120-400 records.
MAX_RESULTS_BYTES = 250_000
MAX_RECORDS_IN_A_LIST = 100


def long_lists(value: object, where: str = "") -> list[str]:
    """Where ``value`` holds a list of more than ``MAX_RECORDS_IN_A_LIST`` dicts."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in long_lists(item, f"{where}/{key}")]
    if not isinstance(value, list):
        return []
    records = sum(isinstance(item, dict) for item in value)
    found = [f"{where}: {records} records"] if records > MAX_RECORDS_IN_A_LIST else []
    return found + [p for i, item in enumerate(value) for p in long_lists(item, f"{where}[{i}]")]


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda p: p.name)
def test_no_results_file_holds_a_raw_dump(path):
    size = path.stat().st_size
    assert size <= MAX_RESULTS_BYTES, (
        f"{path.name} is {size:,} bytes: keep per-study rows in bench/raw/ (results_io.py)"
    )
    assert long_lists(json.loads(path.read_text())) == [], (
        f"{path.name}: per-study rows belong in bench/raw/ (results_io.py)"
    )


def test_the_raw_dump_check_finds_a_long_list_anywhere():
    rows = [{"seed": i} for i in range(MAX_RECORDS_IN_A_LIST + 1)]
    assert long_lists({"results": {"a": [1] * 500, "b": rows[:-1]}}) == []
    assert long_lists({"results": {"part": {"per_study": rows}}}) == [
        "/results/part/per_study: 101 records"
    ]
    assert long_lists({"variants": {"v": {"results": [{"runs": rows}]}}}) == [
        "/variants/v/results[0]/runs: 101 records"
    ]


def test_raw_lines_round_trip_and_a_missing_file_names_the_command(tmp_path):
    path = results_io.raw_path(tmp_path / "raw", "demo_bench", "case")
    assert results_io.read_raw(path) == []
    with pytest.raises(SystemExit, match="regenerate them with: python bench/demo_bench.py"):
        results_io.require_raw(path, "python bench/demo_bench.py")
    results_io.write_lines(path, [{"seed": 1}, {"seed": 2}])
    assert results_io.require_raw(path, "python bench/demo_bench.py", expected=2) == [
        {"seed": 1},
        {"seed": 2},
    ]
    with pytest.raises(SystemExit, match="holds 2 lines, the results file 3"):
        results_io.require_raw(path, "python bench/demo_bench.py", expected=3)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_benchmark_script_writes_through_results_io(script):
    assert IMPORTS_RESULTS_IO.search(script.read_text()), script.name


# --------------------------------------------------------------------------- results_io


def _head(benchmark: str = "demo_bench", **changes) -> dict:
    return {**results_io.header(benchmark, argv=["--quick"]), **changes}


def test_a_header_says_which_code_ran_where_and_how_busy_the_machine_was():
    head = results_io.header("demo_bench", argv=["--url", "postgres://u:secret@h/db"])
    assert header_problems(head, "demo_bench") == []
    assert head["commit"] is None or len(head["commit"]) == 40
    assert head["command"].startswith("python ") and "secret" not in head["command"]
    assert head["command"].endswith("--url postgres://u:…@h/db")


def test_a_variant_replaces_only_its_own_section(tmp_path):
    path = tmp_path / "demo_bench.json"
    results_io.write_results(_head(), {"p95_ms": 37.6}, path=path)
    results_io.write_results(_head(), {"p95_ms": 93.8}, variant="lockstep", path=path)
    results_io.write_results(_head(), {"p95_ms": 40.1}, path=path)
    results_io.write_results(_head(), {"p95_ms": 90.0}, variant="other", path=path)
    results_io.write_results(_head(), {"p95_ms": 95.2}, variant="lockstep", path=path)
    doc = json.loads(path.read_text())
    assert doc["results"] == {"p95_ms": 40.1}
    assert {k: v["results"] for k, v in doc["variants"].items()} == {
        "lockstep": {"p95_ms": 95.2},
        "other": {"p95_ms": 90.0},
    }
    assert results_io.section(path, "lockstep")["results"] == {"p95_ms": 95.2}  # type: ignore[index]
    assert results_io.section(path, "absent") is None


def test_a_variant_before_any_plain_run_leaves_the_plain_section_null(tmp_path):
    path = tmp_path / "demo_bench.json"
    results_io.write_results(_head(), [1, 2], variant="first", path=path)
    doc = json.loads(path.read_text())
    assert doc["header"] is None and doc["results"] is None
    assert results_io.section(path) is None
    assert header_problems(doc["variants"]["first"]["header"], "demo_bench") == []


def test_the_default_path_is_the_benchmarks_file(tmp_path, monkeypatch):
    monkeypatch.setattr(results_io, "RESULTS", tmp_path)
    path = results_io.write_results(_head("demo_bench"), {"x": 1})
    assert path == tmp_path / "demo_bench.json"


def test_numpy_values_are_written_as_plain_numbers(tmp_path):
    np = pytest.importorskip("numpy")
    path = tmp_path / "demo_bench.json"
    results_io.write_results(_head(), {"a": np.float64(0.5), "b": np.arange(3)}, path=path)
    assert json.loads(path.read_text())["results"] == {"a": 0.5, "b": [0, 1, 2]}


def test_a_file_in_another_layout_or_a_bad_header_or_name_is_refused(tmp_path):
    old = tmp_path / "demo_bench.json"
    old.write_text(json.dumps({"command": "python bench/demo_bench.py", "p95_ms": 1}))
    with pytest.raises(ValueError, match="not in the layout"):
        results_io.write_results(_head(), {}, path=old)
    assert json.loads(old.read_text())["p95_ms"] == 1
    new = tmp_path / "new.json"
    with pytest.raises(ValueError, match="exactly the keys"):
        results_io.write_results({"benchmark": "demo_bench"}, {}, path=new)
    with pytest.raises(Exception, match="lower-case"):
        results_io.write_results(_head(), {}, variant="Lock-Step", path=new)
    with pytest.raises(TypeError):
        results_io.write_results(_head(), {"x": object()}, path=new)
    assert not new.exists() and list(tmp_path.iterdir()) == [old]  # nothing half-written
