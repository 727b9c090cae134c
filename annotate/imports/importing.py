"""Import a study's responses and judge scores from JSONL or long CSV.

One service, :func:`import_file`, behind three entry points (``manage.py importstudy``,
``POST /api/studies/{slug}/imports/`` and the admin upload page). The file formats are
documented in docs/importing.md.

How it works, and why:

* **Streaming, constant memory.** The file is read line by line (never whole). Each line is
  parsed and validated, then staged in batches into temporary tables: PostgreSQL gets them
  through ``COPY``, SQLite through ``executemany``. Python keeps one batch and a bounded
  reservoir of scores (for quantile cuts), whatever the file size. Duplicate ids are found
  by the database in the staging table, not in a Python set.
* **A fresh study goes straight in.** On PostgreSQL, an import into a study that has no
  prompts yet has nothing to compare with: its rows are ``COPY``'d into the tables
  themselves, with ids drawn from the sequences beforehand and bins computed in Python
  (:func:`_import_fresh`). A clash of ids sends it back to the staged path.
* **Two cores.** Reading and parsing run in a thread while the database writes the previous
  batch (:func:`_pipelined`).
* **Atomic.** Staging and the set-based writes that follow (``UPDATE … FROM`` then
  ``INSERT … SELECT … ON CONFLICT``) run in one transaction: a bad line 999,999 leaves the
  database as it was.
* **Idempotent.** Importing the same file again changes nothing (the report says
  "unchanged"). A new judge score for a known response updates the score, its bin and the
  response's cell. A *text* that differs from the stored one (prompt or response) is refused:
  once humans have graded a response, silently changing what they graded would corrupt the
  labels. Changed ``metadata`` is updated.
* **Binning.** ``Dimension.judge_cuts`` is fixed by the first import that brings scores for
  the dimension and reused afterwards (see :func:`judge_cuts_for`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import queue
import random
import re
import sys
import threading
import time
from array import array
from bisect import bisect_right
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import msgspec
from django.db import DatabaseError, IntegrityError, connection, transaction

from .. import hooks
from ..models import Arm, Dimension, JudgeScore, Prompt, Region, Response, Study

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_JUDGE",
    "FORMATS",
    "MAX_JSON_DEPTH",
    "MAX_LINE_BYTES",
    "Counts",
    "ImportFailed",
    "ImportProblem",
    "ImportReport",
    "import_file",
    "judge_cuts_for",
]

MAX_LINE_BYTES = 1 << 20  # 1 MiB per line (JSONL) or per physical line (CSV)
# Objects and arrays nested inside one JSONL line, the line itself included: an interaction
# needs 5, metadata gets the rest. Deeper lines are refused before decoding, since decoders
# recurse once per level (msgspec and json raise RecursionError at about 1,000).
MAX_JSON_DEPTH = 64
MAX_PROBLEMS = 20
DEFAULT_JUDGE = "judge"
DEFAULT_BATCH_SIZE = 5000
PROGRESS_EVERY = 1000  # interactions between two calls of import_file's progress callback
RESERVOIR_SIZE = 100_000  # scores kept per dimension to place quantile cuts
MAX_ID_LENGTH = Prompt._meta.get_field("external_id").max_length or 200
MAX_JUDGE_LENGTH = JudgeScore._meta.get_field("judge").max_length or 200
FORMATS = ("jsonl", "csv")
CSV_COLUMNS = ("id", "region", "prompt", "arm", "response", "dimension", "score")
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_LINE_KEYS = ("id", "region", "prompt", "responses", "metadata", "judge")
_RESPONSE_KEYS = ("text", "scores", "metadata")
_SCORE_KEYS = ("value", "judge")
_SCORE_SHAPE = 'a number, or {"value": number, "judge": string}'


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ImportProblem:
    """One thing wrong with an imported file, and where."""

    file: str
    line: int
    field: str
    message: str
    expected: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}: {self.field}: {self.message}"
        return f"{text} (expected {self.expected})" if self.expected else text

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ImportFailed(Exception):  # noqa: N818 — it reads as what happened, like Django's
    """The file was refused; nothing was written. ``problems`` says why, first line first."""

    def __init__(self, problems: Iterable[ImportProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged


@dataclass
class ImportReport:
    """What an import did: rows created, updated and left unchanged, and how long it took."""

    file: str
    format: str
    study: str
    lines: int = 0
    prompts: Counts = field(default_factory=Counts)
    responses: Counts = field(default_factory=Counts)
    scores: Counts = field(default_factory=Counts)
    cuts_fixed: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds, for benchmarks

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        def row(name: str, c: Counts) -> str:
            return (
                f"  {name:<10}{c.created:>10} created {c.updated:>10} updated "
                f"{c.unchanged:>10} unchanged"
            )

        lines = [
            f"{self.file} ({self.format}) into study {self.study}: "
            f"{self.lines} interactions in {self.seconds:.2f} s",
            row("prompts", self.prompts),
            row("responses", self.responses),
            row("scores", self.scores),
        ]
        for key, cuts in self.cuts_fixed.items():
            lines.append(f"  judge cuts of {key} fixed at {cuts}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- schema


class _LineError(Exception):
    """A problem on the current line: (field, message, expected)."""

    def __init__(self, field: str, message: str, expected: str = "") -> None:
        super().__init__(message)
        self.field, self.message, self.expected = field, message, expected


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


@dataclass(frozen=True)
class _DimRule:
    """How one dimension's judge scores are checked."""

    key: str
    id: int
    kind: str
    lo: float | None
    hi: float | None

    @classmethod
    def of(cls, d: Dimension) -> _DimRule:
        return cls(d.key, d.pk, d.judge_score_type, d.judge_min, d.judge_max)

    def expected(self) -> str:
        if self.kind == Dimension.JudgeScoreType.BINARY:
            return "0 or 1"
        what = "a whole number" if self.kind == Dimension.JudgeScoreType.LIKERT else "a number"
        if self.lo is not None and self.hi is not None:
            return f"{what} from {_num(self.lo)} to {_num(self.hi)}"
        if self.lo is not None:
            return f"{what} ≥ {_num(self.lo)}"
        if self.hi is not None:
            return f"{what} ≤ {_num(self.hi)}"
        return f"a finite {what.removeprefix('a ')}"

    def bounds(self) -> tuple[float, float, bool]:
        """(low, high, whole): the parser's inlined check is ``low <= v <= high`` and, when
        ``whole``, ``v.is_integer()``; :meth:`problem` then says what is wrong."""
        if self.kind == Dimension.JudgeScoreType.BINARY:
            return 0.0, 1.0, True
        lo = -sys.float_info.max if self.lo is None else self.lo
        hi = sys.float_info.max if self.hi is None else self.hi
        return lo, hi, self.kind == Dimension.JudgeScoreType.LIKERT

    def problem(self, v: float) -> str | None:
        """Why ``v`` is not a valid judge score for this dimension, or None."""
        if not math.isfinite(v):
            return f"{v} is not a finite number"
        if self.kind == Dimension.JudgeScoreType.BINARY:
            if v != 0 and v != 1:
                return f"{_num(v)} is not 0 or 1 (the judge of '{self.key}' is binary)"
            return None
        if self.kind == Dimension.JudgeScoreType.LIKERT and not float(v).is_integer():
            return f"{_num(v)} is not a whole number (the judge of '{self.key}' is Likert)"
        if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
            return f"{_num(v)} is outside the judge range of '{self.key}'"
        return None


class _Schema:
    """The study's arms, dimensions and regions, as the parsers need them."""

    def __init__(self, study: Study) -> None:
        self.regions = dict(Region.objects.filter(study=study).values_list("key", "id"))
        arms = list(Arm.objects.filter(study=study).order_by("position", "id"))
        dims = list(Dimension.objects.filter(study=study).order_by("position", "id"))
        self.arms = [(a.key, a.pk) for a in arms]
        self.arm_keys = {a.key for a in arms}
        self.arm_key_of = {a.pk: a.key for a in arms}
        self.dimensions = dims
        self.rules = [_DimRule.of(d) for d in dims]
        self.checks = [(r.key, *r.bounds(), r) for r in self.rules]
        self.dim_keys = {d.key for d in dims}
        self.dim_index = {d.key: i for i, d in enumerate(dims)}
        self.arm_list = ", ".join(k for k, _ in self.arms)
        self.dim_list = ", ".join(r.key for r in self.rules)
        self.region_list = ", ".join(self.regions)

    def emptiness(self) -> str | None:
        for what, items in (("arms", self.arms), ("dimensions", self.rules)):
            if not items:
                return f"the study has no {what}; add them before importing"
        if not self.regions:
            return "the study has no regions; add them before importing"
        return None

    def check_region(self, key: str) -> int:
        try:
            return self.regions[key]
        except KeyError:
            raise _LineError(
                "region", f"unknown region {key!r}", f"one of {self.region_list}"
            ) from None

    def check_arm_keys(self, keys: Iterable[str], where: str) -> None:
        keys = set(keys)
        for key in sorted(keys - self.arm_keys):
            raise _LineError(f"{where}.{key}", f"unknown arm {key!r}", f"one of {self.arm_list}")
        for key, _ in self.arms:
            if key not in keys:
                raise _LineError(
                    where,
                    f"no response from arm {key!r}",
                    f"a response from every arm of the study on each interaction: {self.arm_list}",
                )

    def check_dim_keys(self, keys: Iterable[str], where: str) -> None:
        keys = set(keys)
        for key in sorted(keys - self.dim_keys):
            raise _LineError(
                f"{where}.{key}", f"unknown dimension {key!r}", f"one of {self.dim_list}"
            )
        for rule in self.rules:
            if rule.key not in keys:
                raise _LineError(
                    where,
                    f"no score for dimension {rule.key!r}",
                    f"a judge score for every dimension of the study: {self.dim_list}",
                )


def _check_id(ext_id: str, where: str = "id") -> None:
    if not ext_id.strip():
        raise _LineError(where, "empty id", "a non-empty string")
    if len(ext_id) > MAX_ID_LENGTH:
        raise _LineError(
            where, f"id is {len(ext_id)} characters long", f"at most {MAX_ID_LENGTH} characters"
        )


def _check_judge(judge: str, where: str) -> None:
    if not judge.strip():
        raise _LineError(where, "empty judge name", "a non-empty string")
    if len(judge) > MAX_JUDGE_LENGTH:
        raise _LineError(
            where, f"judge name is {len(judge)} characters long", f"at most {MAX_JUDGE_LENGTH}"
        )


def _meta_json(meta: dict[str, Any] | None) -> str:
    # json.dumps with its default separators is what Django's JSONField stores on SQLite, so
    # re-importing rows written through the ORM compares equal.
    return json.dumps(meta) if meta else "{}"


# --------------------------------------------------------------------------- JSONL


class _Score(msgspec.Struct, forbid_unknown_fields=True):
    value: float
    judge: str | None = None


class _Response(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    scores: dict[str, float | _Score]
    metadata: dict[str, Any] | None = None


class _Line(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    region: str
    prompt: str
    responses: dict[str, _Response]
    metadata: dict[str, Any] | None = None
    judge: str | None = None


_decode_line = msgspec.json.Decoder(_Line).decode

# A staged interaction: one prompt row and one row per arm.
#   prompt row:   (line, ext_id, region_id, text, metadata_json)
#   response row: (line, ext_id, arm_id, text, metadata_json, v_0, judge_0, v_1, judge_1, …)
_Staged = tuple[tuple[Any, ...], list[tuple[Any, ...]]]


def _rows_from_line(obj: _Line, line: int, schema: _Schema) -> _Staged:
    """Check what types alone cannot (known keys, ranges) and shape the staging rows."""
    _check_id(obj.id)
    region_id = schema.check_region(obj.region)
    default_judge = DEFAULT_JUDGE
    if obj.judge is not None:
        _check_judge(obj.judge, "judge")
        default_judge = obj.judge
    responses = obj.responses
    if len(responses) != len(schema.arms) or responses.keys() != schema.arm_keys:
        schema.check_arm_keys(responses, "responses")
    rows = []
    rules, checks = schema.rules, schema.checks
    for arm_key, arm_id in schema.arms:
        resp = responses[arm_key]
        scores = resp.scores
        if len(scores) != len(rules) or scores.keys() != schema.dim_keys:
            schema.check_dim_keys(scores, f"responses.{arm_key}.scores")
        meta = resp.metadata
        row: list[Any] = [line, obj.id, arm_id, resp.text, json.dumps(meta) if meta else "{}"]
        add = row.append
        for key, lo, hi, whole, rule in checks:
            s = scores[key]
            if isinstance(s, float):
                value, judge = s, default_judge
            else:
                value = s.value
                if s.judge is None:
                    judge = default_judge
                else:
                    judge = s.judge
                    _check_judge(judge, f"responses.{arm_key}.scores.{key}.judge")
            # Inlined bounds check (NaN and ±inf fail it); the message comes from the rule.
            if not lo <= value <= hi or (whole and not value.is_integer()):
                why = rule.problem(value) or f"{value!r} is not a valid score"
                raise _LineError(f"responses.{arm_key}.scores.{key}", why, rule.expected())
            add(value)
            add(judge)
        rows.append(tuple(row))
    prompt_row = (line, obj.id, region_id, obj.prompt, _meta_json(obj.metadata))
    return prompt_row, rows


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    names: dict[type, str] = {dict: "an object", list: "an array", str: "a string"}
    return names.get(type(v), "a number" if isinstance(v, int | float) else type(v).__name__)


def _explain_types(obj: Any) -> _LineError | None:
    """Name the first missing, unknown or mistyped field of a decoded line, or None."""

    def keys(d: dict[str, Any], allowed: tuple[str, ...], required: tuple[str, ...], where: str):
        for k in required:
            if k not in d:
                return _LineError(f"{where}{k}", "missing field", f"fields {', '.join(allowed)}")
        for k in d:
            if k not in allowed:
                return _LineError(
                    f"{where}{k}", "unknown field", f"only the fields {', '.join(allowed)}"
                )
        return None

    def want(v: Any, kind: Any, where: str, what: str) -> _LineError | None:
        if isinstance(v, kind) and not isinstance(v, bool):
            return None
        return _LineError(where, f"{_type_name(v)} is not {what}", what)

    if not isinstance(obj, dict):
        return _LineError("line", f"{_type_name(obj)} is not an object", "one JSON object per line")
    if err := keys(obj, _LINE_KEYS, ("id", "region", "prompt", "responses"), ""):
        return err
    for k in ("id", "region", "prompt"):
        if err := want(obj[k], str, k, "a string"):
            return err
    if obj.get("judge") is not None and (err := want(obj["judge"], str, "judge", "a string")):
        return err
    if obj.get("metadata") is not None and (
        err := want(obj["metadata"], dict, "metadata", "an object")
    ):
        return err
    if err := want(obj["responses"], dict, "responses", "an object"):
        return err
    for arm, resp in obj["responses"].items():
        where = f"responses.{arm}"
        if err := want(resp, dict, where, 'an object {"text": ..., "scores": {...}}'):
            return err
        if err := keys(resp, _RESPONSE_KEYS, ("text", "scores"), f"{where}."):
            return err
        if err := want(resp["text"], str, f"{where}.text", "a string"):
            return err
        if resp.get("metadata") is not None and (
            err := want(resp["metadata"], dict, f"{where}.metadata", "an object")
        ):
            return err
        if err := want(resp["scores"], dict, f"{where}.scores", "an object"):
            return err
        for dim, score in resp["scores"].items():
            at = f"{where}.scores.{dim}"
            if isinstance(score, dict):
                if err := keys(score, _SCORE_KEYS, ("value",), f"{at}."):
                    return err
                if err := want(score["value"], int | float, f"{at}.value", "a number"):
                    return err
                if score.get("judge") is not None and (
                    err := want(score["judge"], str, f"{at}.judge", "a string")
                ):
                    return err
            elif err := want(score, int | float, at, _SCORE_SHAPE):
                return err
    return None


# A JSON string (escapes included) or one of the characters that open, close or key a level.
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}:]')


def _too_deep(raw: bytes) -> _LineError | None:
    """The field where a line nests deeper than ``MAX_JSON_DEPTH``, or None.

    Counting brackets bounds the depth from above at C speed, so only a line with more than
    ``MAX_JSON_DEPTH`` of them is scanned, string-aware, keeping the key of each level.
    """
    if raw.count(b"{") + raw.count(b"[") <= MAX_JSON_DEPTH:
        return None
    keys: list[str | None] = []  # per open level: the key being read (None in an array)
    pending: bytes = b""
    for match in _JSON_TOKENS.finditer(raw):
        token = match.group()
        if token[:1] == b'"':
            pending = token
        elif token == b":":
            if keys:
                keys[-1] = pending[1:-1].decode("utf-8", "replace")
        elif token in (b"{", b"["):
            keys.append(None)
            if len(keys) > MAX_JSON_DEPTH:
                path = ".".join(k for k in keys if k is not None)[:200] or "line"
                return _LineError(
                    path,
                    f"JSON nested deeper than {MAX_JSON_DEPTH} levels",
                    f"at most {MAX_JSON_DEPTH} levels of objects and arrays in a line",
                )
        elif keys:
            keys.pop()
    return None


def _bounded_int(text: str) -> int | float:
    """``json.loads``'s integers: one too long for ``int()`` (over 4,300 digits) is ±inf,
    so that it is reported as out of range instead of raising ValueError."""
    try:
        return int(text)
    except ValueError:
        return -math.inf if text.startswith("-") else math.inf


def _out_of_range(value: Any, where: str) -> _LineError | None:
    """The first number of a decoded line that msgspec cannot hold (±inf, NaN), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return _LineError(
            where or "line",
            f"{value} is out of range" if value == value else "NaN is not a number",
            "a finite number (at most about 1.8e308 and 4,300 digits)",
        )
    if isinstance(value, dict):
        items: Iterable[tuple[str, Any]] = (
            (f"{where}.{k}" if where else str(k), v) for k, v in value.items()
        )
    elif isinstance(value, list):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for at, item in items:
        if err := _out_of_range(item, at):
            return err
    return None


def _explain(raw: bytes, exc: Exception, line: int, offset: int) -> _LineError:
    """Turn a fast-path decoding failure into a message that names the field."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return _LineError(
            "encoding",
            f"byte 0x{raw[e.start]:02x} at byte offset {offset + e.start} of the file "
            f"(column {e.start + 1} of line {line}) is not valid UTF-8",
            "UTF-8 text",
        )
    try:
        obj = json.loads(text.rstrip("\r\n"), parse_int=_bounded_int, parse_constant=float)
    except json.JSONDecodeError as e:
        return _LineError("json", f"malformed JSON: {e.msg} at column {e.colno}", "one JSON object")
    except RecursionError:  # not reached after _too_deep; kept so that no line is a 500
        return _LineError("json", "JSON nested too deeply", "one JSON object")
    return (
        _explain_types(obj)
        or _out_of_range(obj, "")
        or _LineError("line", str(exc), "a valid interaction")
    )


# --------------------------------------------------------------------------- reading


def _physical_lines(stream: IO[bytes], sink: _Problems) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(line number, byte offset, bytes)``, refusing lines over ``MAX_LINE_BYTES``."""
    number, offset = 0, 0
    readline = stream.readline
    while True:
        raw = readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if isinstance(raw, str):
            raise TypeError("open the file in binary mode ('rb'): the importer decodes UTF-8")
        number += 1
        start = offset
        offset += len(raw)
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a UTF-8 byte-order mark, as some spreadsheet exports write
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest, in bounded reads
                raw = readline(MAX_LINE_BYTES)
                offset += len(raw)
            sink.add(
                number,
                "line",
                f"line is longer than {MAX_LINE_BYTES} bytes (1 MiB)",
                f"at most {MAX_LINE_BYTES} bytes per line",
            )
            if sink.fatal_lines:
                return
            continue
        yield number, start, raw


class _Problems:
    def __init__(self, name: str, limit: int, *, fatal_lines: bool = False) -> None:
        self.name, self.limit = name, limit
        self.fatal_lines = fatal_lines  # CSV cannot resynchronise after a broken line
        self.items: list[ImportProblem] = []

    def add(self, line: int, field: str, message: str, expected: str = "") -> None:
        self.items.append(ImportProblem(self.name, line, field, message, expected))

    @property
    def full(self) -> bool:
        return len(self.items) >= self.limit

    def raise_if_any(self) -> None:
        if self.items:
            raise ImportFailed(sorted(self.items, key=lambda p: p.line)[: self.limit])


def _parse_jsonl(stream: IO[bytes], schema: _Schema, sink: _Problems) -> Iterator[_Staged]:
    for number, offset, raw in _physical_lines(stream, sink):
        if raw.isspace():
            continue
        if (deep := _too_deep(raw)) is not None:
            sink.add(number, deep.field, deep.message, deep.expected)
            if sink.full:
                return
            continue
        try:
            obj = _decode_line(raw)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            err = _explain(raw, exc, number, offset)
            sink.add(number, err.field, err.message, err.expected)
        else:
            try:
                yield _rows_from_line(obj, number, schema)
                continue
            except _LineError as err:
                sink.add(number, err.field, err.message, err.expected)
        if sink.full:
            return


def _parse_csv(stream: IO[bytes], schema: _Schema, sink: _Problems) -> Iterator[_Staged]:
    """Long CSV: one row per (id, arm, dimension); the rows of one id are contiguous."""

    def text_lines() -> Iterator[str]:
        for number, offset, raw in _physical_lines(stream, sink):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                err = _explain(raw, e, number, offset)
                sink.add(number, err.field, err.message, err.expected)
                return

    csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))
    reader = csv.reader(text_lines(), strict=True)
    header_spec = ",".join(CSV_COLUMNS) + "[,judge]"
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        sink.add(1, "header", f"unreadable CSV: {e}", header_spec)
        return
    header = [h.strip() for h in header]
    if header not in (list(CSV_COLUMNS), [*CSV_COLUMNS, "judge"]):
        sink.add(1, "header", f"the header is {','.join(header)!r}", header_spec)
        return
    width = len(header)
    group: _CsvGroup | None = None
    bad_id: str | None = None  # after a problem, skip the rest of that id's rows
    last_line = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            sink.add(last_line + 1, "csv", f"unreadable CSV: {e}", "RFC 4180 quoting")
            return
        line, last_line = last_line + 1, reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()) or row[0] == bad_id:
            continue
        bad_id = None
        if group is not None and row[0] != group.ext_id:
            staged = _finish(group, schema, sink)
            group = None
            if staged is not None:
                yield staged
            if sink.full:
                return
        try:
            if len(row) != width:
                raise _LineError("row", f"{len(row)} fields", f"{width} fields: {','.join(header)}")
            if group is None:
                group = _CsvGroup(row[0], line)
            group.add(row, line, schema)
        except _LineError as err:
            sink.add(line, err.field, err.message, err.expected)
            bad_id, group = row[0], None
            if sink.full:
                return
    if group is not None:
        staged = _finish(group, schema, sink)
        if staged is not None:
            yield staged


def _finish(group: _CsvGroup, schema: _Schema, sink: _Problems) -> _Staged | None:
    try:
        return group.finish(schema)
    except _GroupError as err:
        sink.add(err.line, err.field, err.message, err.expected)
        return None


class _GroupError(_LineError):
    def __init__(self, line: int, field: str, message: str, expected: str = "") -> None:
        super().__init__(field, message, expected)
        self.line = line


class _CsvGroup:
    """The rows of one id, checked against each other as they arrive."""

    def __init__(self, ext_id: str, line: int) -> None:
        self.ext_id, self.line = ext_id, line
        self.region: tuple[str, int] | None = None
        self.prompt: tuple[str, int] | None = None
        self.arms: dict[str, tuple[str, int, dict[str, tuple[float, str]]]] = {}

    def add(self, row: list[str], line: int, schema: _Schema) -> None:
        ext_id, region, prompt, arm, response, dim, score = row[:7]
        judge = row[7] if len(row) > 7 and row[7] != "" else DEFAULT_JUDGE
        _check_id(ext_id)
        if self.region is None:
            schema.check_region(region)
            self.region, self.prompt = (region, line), (prompt, line)
        else:
            assert self.prompt is not None
            if region != self.region[0]:
                raise _LineError(
                    "region",
                    f"id {ext_id!r} has region {region!r} here but {self.region[0]!r} on "
                    f"line {self.region[1]}",
                    "the same region on every row of an id",
                )
            if prompt != self.prompt[0]:
                raise _LineError(
                    "prompt",
                    f"the prompt text of id {ext_id!r} differs from the one on line "
                    f"{self.prompt[1]}",
                    "the same prompt text on every row of an id",
                )
        if arm not in schema.arm_keys:
            raise _LineError("arm", f"unknown arm {arm!r}", f"one of {schema.arm_list}")
        if dim not in schema.dim_keys:
            raise _LineError("dimension", f"unknown dimension {dim!r}", f"one of {schema.dim_list}")
        entry = self.arms.get(arm)
        if entry is None:
            entry = self.arms[arm] = (response, line, {})
        elif response != entry[0]:
            raise _LineError(
                "response",
                f"the response text of id {ext_id!r}, arm {arm!r} differs from the one on "
                f"line {entry[1]}",
                "the same response text on every row of an id and arm",
            )
        if dim in entry[2]:
            raise _LineError(
                "dimension",
                f"a second score for id {ext_id!r}, arm {arm!r}, dimension {dim!r}",
                "one row per id, arm and dimension",
            )
        rule = schema.rules[schema.dim_index[dim]]
        cell = score.strip()
        try:
            value = float(cell)
        except ValueError:
            raise _LineError(
                "score", f"{cell!r} is not a number" if cell else "empty score", rule.expected()
            ) from None
        if why := rule.problem(value):
            raise _LineError("score", why, rule.expected())
        if judge is not DEFAULT_JUDGE:
            _check_judge(judge, "judge")
        entry[2][dim] = (value, judge)

    def finish(self, schema: _Schema) -> _Staged:
        assert self.region is not None and self.prompt is not None
        try:
            schema.check_arm_keys(self.arms, "arm")
        except _LineError as err:
            raise _GroupError(
                self.line,
                err.field,
                f"id {self.ext_id!r}: {err.message}",
                f"{err.expected}; the rows of one id must be contiguous",
            ) from None
        rows = []
        for arm_key, arm_id in schema.arms:
            text, _, scores = self.arms[arm_key]
            try:
                schema.check_dim_keys(scores, "dimension")
            except _LineError as err:
                raise _GroupError(
                    self.line,
                    err.field,
                    f"id {self.ext_id!r}, arm {arm_key!r}: {err.message}",
                    f"{err.expected}; the rows of one id must be contiguous",
                ) from None
            row: list[Any] = [self.line, self.ext_id, arm_id, text, "{}"]
            for rule in schema.rules:
                row.extend(scores[rule.key])
            rows.append(tuple(row))
        region_id = schema.regions[self.region[0]]
        return (self.line, self.ext_id, region_id, self.prompt[0], "{}"), rows


# --------------------------------------------------------------------------- binning


class _CutsCollector:
    """Bounded statistics of this import's scores, for dimensions whose cuts are not fixed.

    A reservoir sample (Vitter's algorithm R, seeded so an import is reproducible) of at most
    ``RESERVOIR_SIZE`` scores per dimension keeps memory constant; quantiles of 100k draws are
    within a fraction of a percentile of the file's.
    """

    def __init__(self, dims: list[Dimension]) -> None:
        self.pending = [
            (i, d)
            for i, d in enumerate(dims)
            if d.judge_cuts is None and judge_cuts_for(d, None) is None
        ]
        self.samples = {i: array("d") for i, _ in self.pending}
        self.seen = dict.fromkeys(self.samples, 0)
        self.rng = random.Random(20_240_611)

    def feed(self, response_rows: list[tuple[Any, ...]]) -> None:
        for i, _ in self.pending:
            col = 5 + 2 * i
            sample, n = self.samples[i], self.seen[i]
            room = RESERVOIR_SIZE - len(sample)
            if room > 0:
                sample.extend(row[col] for row in response_rows[:room])
                rest = response_rows[room:]
                n += min(room, len(response_rows))
            else:
                rest = response_rows
            randrange = self.rng.randrange
            for row in rest:
                n += 1
                k = randrange(n)
                if k < RESERVOIR_SIZE:
                    sample[k] = row[col]
            self.seen[i] = n

    def cuts(self) -> dict[int, list[float]]:
        return {i: judge_cuts_for(d, self.samples[i]) or [] for i, d in self.pending}


def judge_cuts_for(dimension: Dimension, scores: Iterable[float] | None) -> list[float] | None:
    """Interior cut points for a dimension's judge scores (bin = number of cuts ≤ score).

    * binary judge: ``[0.5]``;
    * Likert judge with a declared range ``judge_min..judge_max`` of at most ``judge_bins``
      points: one cut half-way between consecutive points (one bin per point);
    * otherwise (continuous, or Likert with more points than bins or no declared range):
      quantile cuts of ``scores`` into at most ``judge_bins`` bins, placed half-way between
      distinct values (:func:`calibration.bayes.data.quantile_cuts`).

    Returns None when the cuts depend on scores and none were given.
    """
    kind = dimension.judge_score_type
    if kind == Dimension.JudgeScoreType.BINARY:
        return [0.5]
    lo, hi = dimension.judge_min, dimension.judge_max
    if kind == Dimension.JudgeScoreType.LIKERT and lo is not None and hi is not None:
        first, last = math.ceil(lo), math.floor(hi)
        if 0 < last - first + 1 <= dimension.judge_bins:
            return [k + 0.5 for k in range(first, last)]
    if scores is None:
        return None
    return hooks.quantile_cuts(scores, dimension.judge_bins)


def _bin_sql(column: str, cuts: list[float]) -> str:
    """SQL for ``#{k : cuts[k] ≤ column}`` (what calibration.bayes.data.bin_scores computes)."""
    if not cuts:
        return "0"
    whens = " ".join(
        f"WHEN {column} >= {float(c)!r} THEN {k + 1}" for k, c in reversed(list(enumerate(cuts)))
    )
    return f"(CASE {whens} ELSE 0 END)"


# --------------------------------------------------------------------------- the service


def import_file(
    path_or_fileobj: str | os.PathLike[str] | IO[bytes],
    *,
    study: Study,
    filename: str | None = None,
    fmt: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_problems: int = MAX_PROBLEMS,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import a JSONL or long-CSV file of interactions into ``study``, all or nothing.

    Parameters
    ----------
    path_or_fileobj
        A path, or a file object opened in binary mode (an uploaded file works).
    study
        The study the file belongs to; its arms, dimensions and regions must exist.
    filename
        Name used in messages and to guess the format (default: the path's or file's name).
    fmt
        ``"jsonl"`` or ``"csv"``; by default from the extension (``.jsonl``, ``.ndjson``,
        ``.csv``).
    batch_size
        Interactions staged per round trip to the database.
    max_problems
        Stop after this many problems (the first is always reported).
    progress
        Called as ``progress(bytes_read, total_bytes)`` every ``PROGRESS_EVERY``
        interactions and once when the whole file is read, before the database writes
        (``total_bytes`` is 0 when the size cannot be told).

    Raises
    ------
    ImportFailed
        With one :class:`ImportProblem` per problem found; the database is unchanged.
    """
    if isinstance(path_or_fileobj, str | os.PathLike):
        path = Path(path_or_fileobj)
        with path.open("rb") as opened:
            return import_file(
                opened,
                study=study,
                filename=filename or path.name,
                fmt=fmt,
                batch_size=batch_size,
                max_problems=max_problems,
                progress=progress,
            )
    stream = path_or_fileobj
    name = filename or os.path.basename(str(getattr(stream, "name", "") or "upload"))
    fmt = _format_of(name, fmt)
    started = time.perf_counter()
    report = ImportReport(file=name, format=fmt, study=study.slug)
    tell = _progress_reporter(stream, progress)
    with transaction.atomic():
        # Imports of one study run one after another (a no-op on SQLite, whose write
        # transactions are serial anyway), so the existence checks below cannot race.
        Study.objects.select_for_update().filter(pk=study.pk).first()
        schema = _Schema(study)
        if why := schema.emptiness():
            raise ImportFailed([ImportProblem(name, 1, "study", why)])
        with connection.cursor() as cursor:
            if _fresh_path_fits(stream, study):
                start = stream.tell()
                try:
                    with transaction.atomic():
                        _import_fresh(
                            cursor, stream, study, schema, report, batch_size, max_problems, tell
                        )
                except IntegrityError:
                    # An id twice in the file (a unique key clashed in the COPY): the staged
                    # import finds it again and names both lines.
                    stream.seek(start)
                    report = ImportReport(file=name, format=fmt, study=study.slug)
                else:
                    return _finished(report, started)
            sink = _Problems(name, max_problems, fatal_lines=fmt == "csv")
            parse = _parse_jsonl if fmt == "jsonl" else _parse_csv
            stager = _Stager.for_connection(cursor, len(schema.rules))
            collector = _CutsCollector(schema.dimensions)
            chunks = _pipelined(
                parse(stream, schema, sink), stream, PROGRESS_EVERY, positions=tell is not None
            )
            _stage(chunks, stager.write, collector, sink, report, batch_size, tell)
            sink.raise_if_any()
            _refuse_empty(report)
            report.phases["read_and_stage"] = _lap(started)
            stager.cuts = collector.cuts()
            stager.analyze()
            _apply(cursor, stager, study, schema, report, sink)
            # On failure the rollback removes the staging tables with everything else.
            stager.drop()
            # A re-import may move responses between cells in place; selection's stored
            # per-cell totals must follow in the same transaction. (New responses alone,
            # as in the fresh path, are caught by the totals' own watermark.)
            hooks.refresh_cell_totals(study=study)
            report.phases["write"] = round(_lap(started) - report.phases["read_and_stage"], 3)
    return _finished(report, started)


def _finished(report: ImportReport, started: float) -> ImportReport:
    report.seconds = _lap(started)
    # PostgreSQL checks the (deferred) foreign keys of every new row at commit.
    report.phases["commit"] = round(report.seconds - sum(report.phases.values()), 3)
    return report


def _refuse_empty(report: ImportReport) -> None:
    if report.lines == 0:
        raise ImportFailed(
            [ImportProblem(report.file, 1, "file", "the file is empty", "at least one interaction")]
        )


def _progress_reporter(
    stream: IO[bytes], progress: Callable[[int, int], None] | None
) -> Callable[[int], None] | None:
    """``progress`` with the stream's size filled in (0 when it cannot be told)."""
    if progress is None:
        return None
    total = getattr(stream, "size", None)
    if not isinstance(total, int):
        try:
            total = os.fstat(stream.fileno()).st_size
        except (AttributeError, OSError, ValueError):
            total = 0
    size = total
    return lambda position: progress(position, size)


def _lap(started: float) -> float:
    return round(time.perf_counter() - started, 3)


def _format_of(name: str, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise ImportFailed(
                [ImportProblem(name, 1, "format", f"unknown format {fmt!r}", "jsonl or csv")]
            )
        return fmt
    suffix = Path(name).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise ImportFailed(
            [
                ImportProblem(
                    name,
                    1,
                    "format",
                    f"cannot tell the format from the name {name!r}",
                    "a .jsonl, .ndjson or .csv file, or an explicit format",
                )
            ]
        )
    return _EXTENSIONS[suffix]


def _stage(
    chunks: Generator[tuple[list[_Staged], int]],
    write: Callable[[list[tuple[Any, ...]], list[tuple[Any, ...]]], None],
    collector: _CutsCollector | None,
    sink: _Problems,
    report: ImportReport,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> None:
    """Write the parsed interactions in batches of ``batch_size``; stop writing at a problem."""
    prompts: list[tuple[Any, ...]] = []
    responses: list[tuple[Any, ...]] = []
    # closing: on an error the reading thread stops before the caller touches the stream.
    with closing(chunks):
        for records, position in chunks:
            report.lines += len(records)
            if not sink.items:  # else keep validating to report more problems; stop writing
                for prompt_row, response_rows in records:
                    prompts.append(prompt_row)
                    responses.extend(response_rows)
                    if len(prompts) >= batch_size:
                        if collector is not None:
                            collector.feed(responses)
                        write(prompts, responses)
                        prompts, responses = [], []
            if progress is not None:
                progress(position)
    if prompts and not sink.items:
        if collector is not None:
            collector.feed(responses)
        write(prompts, responses)


_END = object()


def _pipelined(
    records: Iterator[_Staged], stream: IO[bytes], chunk: int, *, positions: bool
) -> Generator[tuple[list[_Staged], int]]:
    """Yield ``(interactions, stream position)`` ``chunk`` at a time, parsed in a thread.

    Reading, parsing and validating run in a second thread while this one writes the
    previous chunks: the database works (in its own process) while Python parses, and the
    wait for each ``COPY`` to finish releases the GIL to the parser. The queue is bounded,
    so memory stays constant. The last chunk may be empty; it comes at the end of the file.
    Positions are 0 unless asked for (a stream that cannot seek cannot tell them either).
    """
    tell = stream.tell if positions else lambda: 0
    chunks: queue.Queue[Any] = queue.Queue(maxsize=4)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            batch: list[_Staged] = []
            for record in records:
                batch.append(record)
                if len(batch) >= chunk:
                    if not put((batch, tell())):
                        return
                    batch = []
            if put((batch, tell())):
                put(_END)
        except BaseException as exc:  # noqa: BLE001 — handed to the caller's thread
            put(exc)

    worker = threading.Thread(target=work, name="baton-import-parse", daemon=True)
    worker.start()
    try:
        while True:
            item = chunks.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()  # when the caller stopped early: the worker ends at its next chunk
        worker.join()


class _Stager:
    """Temporary staging tables, filled in batches."""

    prompt_table = "baton_import_prompt"
    response_table = "baton_import_response"

    def __init__(self, cursor: Any, n_dims: int) -> None:
        self.cursor, self.n_dims = cursor, n_dims
        self.cuts: dict[int, list[float]] = {}
        self.score_cols = [c for i in range(n_dims) for c in (f"v{i}", f"j{i}")]
        self.drop()
        cursor.execute(
            f"CREATE TEMPORARY TABLE {self.prompt_table} (line integer NOT NULL, "
            "ext_id text NOT NULL, region_id bigint NOT NULL, text text NOT NULL, "
            "metadata text NOT NULL)"
        )
        scores = ", ".join(
            f"v{i} double precision NOT NULL, j{i} text NOT NULL" for i in range(n_dims)
        )
        cursor.execute(
            f"CREATE TEMPORARY TABLE {self.response_table} (line integer NOT NULL, "
            "ext_id text NOT NULL, arm_id bigint NOT NULL, text text NOT NULL, "
            f"metadata text NOT NULL, {scores})"
        )

    @staticmethod
    def for_connection(cursor: Any, n_dims: int) -> _Stager:
        if connection.vendor == "postgresql":
            return _PostgresStager(cursor, n_dims)
        return _Stager(cursor, n_dims)

    def write(self, prompts: list[tuple[Any, ...]], responses: list[tuple[Any, ...]]) -> None:
        marks = ", ".join(["%s"] * 5)
        self.cursor.executemany(f"INSERT INTO {self.prompt_table} VALUES ({marks})", prompts)
        marks = ", ".join(["%s"] * (5 + 2 * self.n_dims))
        self.cursor.executemany(f"INSERT INTO {self.response_table} VALUES ({marks})", responses)

    def analyze(self) -> None:
        # SQLite drives UPDATE … FROM from the target table; without these indexes every
        # target row would scan the staging table (quadratic: 100 s for 10k responses).
        self.cursor.execute(f"CREATE INDEX {self.prompt_table}_ext ON {self.prompt_table} (ext_id)")
        self.cursor.execute(
            f"CREATE INDEX {self.response_table}_ext ON {self.response_table} (ext_id, arm_id)"
        )

    def drop(self) -> None:
        for table in (self.prompt_table, self.response_table):
            self.cursor.execute(f"DROP TABLE IF EXISTS {table}")


class _PostgresStager(_Stager):
    def write(self, prompts: list[tuple[Any, ...]], responses: list[tuple[Any, ...]]) -> None:
        with self.cursor.copy(f"COPY {self.prompt_table} FROM STDIN") as copy:
            for row in prompts:
                copy.write_row(row)
        with self.cursor.copy(f"COPY {self.response_table} FROM STDIN") as copy:
            for row in responses:
                copy.write_row(row)

    def analyze(self) -> None:
        # Temporary tables are never analysed automatically; without statistics the planner
        # guesses a few rows and picks nested loops over a million.
        self.cursor.execute(f"ANALYZE {self.prompt_table}")
        self.cursor.execute(f"ANALYZE {self.response_table}")


def _fix_cuts(
    schema: _Schema, sampled: dict[int, list[float]], report: ImportReport
) -> list[list[float]]:
    """Every dimension's cuts: the stored ones, else fixed now (from ``sampled`` if needed)."""
    cuts: list[list[float]] = []
    for i, d in enumerate(schema.dimensions):
        if d.judge_cuts is not None:
            cuts.append([float(c) for c in d.judge_cuts])
            continue
        fixed = judge_cuts_for(d, None)
        new = fixed if fixed is not None else sampled[i]
        Dimension.objects.filter(pk=d.pk).update(judge_cuts=new)
        report.cuts_fixed[d.key] = new
        cuts.append(new)
    return cuts


# --------------------------------------------------------------------------- fresh study


def _fresh_path_fits(stream: IO[bytes], study: Study) -> bool:
    """Whether the import may ``COPY`` straight into the tables (PostgreSQL, empty study).

    The stream must be seekable: the judge cuts may need a first pass over the scores, and a
    clash of ids sends the import back to the staged path, which reads the file again.
    """
    if connection.vendor != "postgresql":
        return False
    try:
        seekable = stream.seekable()
    except (AttributeError, ValueError):
        return False
    return seekable and not Prompt.objects.filter(study=study).exists()


def _import_fresh(
    cursor: Any,
    stream: IO[bytes],
    study: Study,
    schema: _Schema,
    report: ImportReport,
    batch_size: int,
    max_problems: int,
    progress: Callable[[int], None] | None,
) -> None:
    """Import into a study with no prompts yet: ``COPY`` into the tables themselves.

    Nothing is stored to compare with, so there is nothing to stage: every row is created.
    Prompt and response ids are drawn from their sequences in Python, so that responses and
    scores can name their parents without a join, and bins and cells are computed here,
    which needs the cuts first: a dimension whose cuts come from this import's quantiles
    costs one light pass over the scores before any write. The unique constraints still
    guard everything; an id that appears twice in the file raises ``IntegrityError`` in the
    ``COPY``, and the caller then goes the staged way, which names the lines.
    """
    started = time.perf_counter()
    fmt = report.format
    collector = _CutsCollector(schema.dimensions)
    if collector.pending:
        start = stream.tell()
        _sample_scores(stream, fmt, schema, collector, batch_size)
        stream.seek(start)
        report.phases["sample_scores"] = _lap(started)
    cuts = _fix_cuts(schema, collector.cuts(), report)
    trusted = _trust_foreign_keys(cursor, study, schema, report)
    writer = _FreshWriter(cursor, study, schema, cuts)
    sink = _Problems(report.file, max_problems, fatal_lines=fmt == "csv")
    parse = _parse_jsonl if fmt == "jsonl" else _parse_csv
    chunks = _pipelined(
        parse(stream, schema, sink), stream, PROGRESS_EVERY, positions=progress is not None
    )
    _stage(chunks, writer.write, None, sink, report, batch_size, progress)
    sink.raise_if_any()
    _refuse_empty(report)
    if trusted:
        cursor.execute("SET LOCAL session_replication_role = origin")
    report.phases["read_and_write"] = round(_lap(started) - sum(report.phases.values()), 3)
    report.prompts.created = report.lines
    report.responses.created = report.lines * len(schema.arms)
    report.scores.created = report.responses.created * len(schema.rules)


class _LightScore(msgspec.Struct):
    value: float


class _LightResponse(msgspec.Struct):
    scores: dict[str, float | _LightScore]


class _LightLine(msgspec.Struct):
    responses: dict[str, _LightResponse]


_decode_scores = msgspec.json.Decoder(_LightLine).decode


def _sample_scores(
    stream: IO[bytes], fmt: str, schema: _Schema, collector: _CutsCollector, batch_size: int
) -> None:
    """Feed ``collector`` the file's scores, in the order and batches of a full import.

    A line that does not decode is passed over: the full pass that follows reports it, and
    the import then fails whatever the cuts. In a file without problems the collector sees
    what the staged import feeds it, so both paths fix the same cuts.
    """
    rows: list[tuple[Any, ...]] = []
    lines = 0
    if fmt == "jsonl":
        arms = [key for key, _ in schema.arms]
        keys = [rule.key for rule in schema.rules]
        for _, _, raw in _physical_lines(stream, _Problems("", MAX_PROBLEMS)):
            if raw.isspace() or _too_deep(raw) is not None:
                continue
            try:
                responses = _decode_scores(raw).responses
                line_rows = []
                for arm in arms:
                    scores = responses[arm].scores
                    values = [scores[k] for k in keys]
                    row: list[Any] = [None] * 5
                    for v in values:
                        row.append(v if isinstance(v, float) else v.value)
                        row.append(None)
                    line_rows.append(tuple(row))
            except (msgspec.DecodeError, UnicodeDecodeError, KeyError):
                continue
            rows.extend(line_rows)
            lines += 1
            if lines >= batch_size:
                collector.feed(rows)
                rows, lines = [], 0
    else:
        for _, response_rows in _parse_csv(stream, schema, _Problems("", MAX_PROBLEMS)):
            rows.extend(response_rows)
            lines += 1
            if lines >= batch_size:
                collector.feed(rows)
                rows, lines = [], 0
    if rows:
        collector.feed(rows)


class _FreshWriter:
    """Batches ``COPY``'d into the prompt, response and judge score tables of a fresh study."""

    # Text COPY: binary measured no faster on either side (index upkeep dominates).

    def __init__(self, cursor: Any, study: Study, schema: _Schema, cuts: list[list[float]]):
        self.cursor, self.sid, self.cuts = cursor, study.pk, cuts
        self.n_arms = len(schema.arms)
        self.dims = [rule.id for rule in schema.rules]
        self.prompt_seq = self._sequence(Prompt._meta.db_table)
        self.response_seq = self._sequence(Response._meta.db_table)
        P, R, J = Prompt._meta.db_table, Response._meta.db_table, JudgeScore._meta.db_table  # noqa: N806
        self.copy_prompts = (
            f"COPY {P} (id, study_id, region_id, external_id, text, metadata) FROM STDIN"
        )
        self.copy_responses = (
            f"COPY {R} (id, prompt_id, arm_id, study_id, region_id, text, metadata, cell) "
            "FROM STDIN"
        )
        self.copy_scores = f"COPY {J} (response_id, dimension_id, judge, value, bin) FROM STDIN"

    def _sequence(self, table: str) -> str:
        self.cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        return str(self.cursor.fetchone()[0])

    def _ids(self, sequence: str, n: int) -> range | list[int]:
        """``n`` fresh ids; one range when no other session drew from the sequence meanwhile."""
        self.cursor.execute(
            "SELECT min(v), max(v) FROM (SELECT nextval(%s) AS v FROM generate_series(1, %s)) s",
            [sequence, n],
        )
        low, high = self.cursor.fetchone()
        if high - low + 1 == n:  # n distinct values in [low, high]: all of them
            return range(low, high + 1)
        self.cursor.execute(  # interleaved with another session: draw a list instead
            "SELECT nextval(%s) FROM generate_series(1, %s)", [sequence, n]
        )
        return [row[0] for row in self.cursor.fetchall()]

    def write(self, prompts: list[tuple[Any, ...]], responses: list[tuple[Any, ...]]) -> None:
        # psycopg's COPY raises psycopg's errors: make a clash of ids Django's IntegrityError.
        with connection.wrap_database_errors:
            self._write(prompts, responses)

    def _write(self, prompts: list[tuple[Any, ...]], responses: list[tuple[Any, ...]]) -> None:
        # The COPY text is formatted here, a line per row: a third of the CPU time of
        # psycopg's write_row per row (measured), and the parser thread needs the GIL too.
        cursor, sid, n_arms = self.cursor, self.sid, self.n_arms
        prompt_ids = self._ids(self.prompt_seq, len(prompts))
        response_ids = self._ids(self.response_seq, len(responses))
        head = f"{sid}\t"
        lines = [
            f"{pk}\t{head}{region_id}\t{_copy_text(ext_id)}\t{_copy_text(text)}\t"
            f"{_copy_text(meta)}\n"
            for (_, ext_id, region_id, text, meta), pk in zip(prompts, prompt_ids, strict=True)
        ]
        with cursor.copy(self.copy_prompts) as copy:
            copy.write("".join(lines))
        cuts = self.cuts
        cols = range(5, 5 + 2 * len(cuts), 2)
        region_of = [p[2] for p in prompts]
        lines, scores = [], []
        judges: dict[str, str] = {}
        dims = list(zip(self.dims, cols, strict=True))
        for k, (row, pk) in enumerate(zip(responses, response_ids, strict=True)):
            bins = [bisect_right(c, row[col]) for c, col in zip(cuts, cols, strict=True)]
            lines.append(
                f"{pk}\t{prompt_ids[k // n_arms]}\t{row[2]}\t{head}{region_of[k // n_arms]}\t"
                f"{_copy_text(row[3])}\t{_copy_text(row[4])}\t{'.'.join(map(str, bins))}\n"
            )
            for (dim, col), b in zip(dims, bins, strict=True):
                judge = row[col + 1]
                escaped = judges.get(judge)
                if escaped is None:
                    escaped = judges[judge] = _copy_text(judge)
                scores.append(f"{pk}\t{dim}\t{escaped}\t{row[col]!r}\t{b}\n")
        with cursor.copy(self.copy_responses) as copy:
            copy.write("".join(lines))
        with cursor.copy(self.copy_scores) as copy:
            copy.write("".join(scores))


def _copy_text(value: str) -> str:
    """``value`` as a field of PostgreSQL's COPY text format (backslash escapes)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value


def _apply(
    cursor: Any,
    stager: _Stager,
    study: Study,
    schema: _Schema,
    report: ImportReport,
    sink: _Problems,
) -> None:
    """Check the staged rows against the file and the database, then write them."""
    pg = connection.vendor == "postgresql"
    jsonb = "::jsonb" if pg else ""
    P, R, J = Prompt._meta.db_table, Response._meta.db_table, JudgeScore._meta.db_table  # noqa: N806
    sp, sr = stager.prompt_table, stager.response_table
    sid = study.pk

    cuts = _fix_cuts(schema, stager.cuts, report)
    bins = [_bin_sql(f"x.v{i}", c) for i, c in enumerate(cuts)]
    cell = " || '.' || ".join(f"CAST({b} AS TEXT)" for b in bins) if bins else "''"

    # 1. Ids repeated within the file (for CSV: the rows of an id were not contiguous).
    cursor.execute(
        f"SELECT s.line, s.ext_id, f.first FROM {sp} s JOIN (SELECT ext_id, MIN(line) AS first "
        f"FROM {sp} GROUP BY ext_id HAVING COUNT(*) > 1) f ON f.ext_id = s.ext_id "
        f"WHERE s.line > f.first ORDER BY s.line LIMIT %s",
        [sink.limit],
    )
    for line, ext_id, first in cursor.fetchall():
        if report.format == "csv":
            sink.add(
                line,
                "id",
                f"id {ext_id!r} appears again after other ids (first on line {first})",
                "the rows of one id to be contiguous",
            )
        else:
            sink.add(
                line,
                "id",
                f"duplicate id {ext_id!r} (first on line {first})",
                "each id once per file",
            )
    sink.raise_if_any()

    existed = Prompt.objects.filter(study=study).exists()
    n_prompts = report.lines
    n_responses = n_prompts * len(schema.arms)
    n_scores = n_responses * len(schema.rules)
    if not existed:
        # A fresh study: nothing to compare with, everything is created.
        trusted = pg and _trust_foreign_keys(cursor, study, schema, report)
        cursor.execute(
            f"INSERT INTO {P} (study_id, region_id, external_id, text, metadata) "
            f"SELECT %s, s.region_id, s.ext_id, s.text, s.metadata{jsonb} FROM {sp} s",
            [sid],
        )
        _insert_responses(cursor, sp, sr, P, R, sid, cell, jsonb, existed=False)
        _insert_scores(cursor, sr, P, R, J, sid, schema, bins, pg=pg, existed=False)
        if trusted:
            cursor.execute("SET LOCAL session_replication_role = origin")
        report.prompts.created = n_prompts
        report.responses.created = n_responses
        report.scores.created = n_scores
        return

    # 2. Known ids whose prompt text or region differ from the file: refused.
    cursor.execute(
        f"SELECT s.line, s.ext_id, p.text = s.text, p.region_id, s.region_id FROM {sp} s "
        f"JOIN {P} p ON p.study_id = %s AND p.external_id = s.ext_id "
        f"WHERE p.text <> s.text OR p.region_id <> s.region_id ORDER BY s.line LIMIT %s",
        [sid, sink.limit],
    )
    region_key = {v: k for k, v in schema.regions.items()}
    for line, ext_id, same_text, old_region, new_region in cursor.fetchall():
        if not same_text:
            sink.add(
                line,
                "prompt",
                f"the text of prompt {ext_id!r} differs from the one already imported",
                "the same text: known prompts are never changed; "
                "import a changed prompt under a new id",
            )
        else:
            sink.add(
                line,
                "region",
                f"prompt {ext_id!r} was imported in region "
                f"{region_key.get(old_region, old_region)!r}, not "
                f"{region_key.get(new_region, new_region)!r}",
                "the same region: known prompts never move",
            )
    cursor.execute(
        f"SELECT s.line, s.ext_id, s.arm_id FROM {sr} s "
        f"JOIN {P} p ON p.study_id = %s AND p.external_id = s.ext_id "
        f"JOIN {R} r ON r.prompt_id = p.id AND r.arm_id = s.arm_id "
        f"WHERE r.text <> s.text ORDER BY s.line LIMIT %s",
        [sid, sink.limit],
    )
    for line, ext_id, arm_id in cursor.fetchall():
        arm = schema.arm_key_of[arm_id]
        sink.add(
            line,
            f"responses.{arm}.text" if report.format == "jsonl" else "response",
            f"the text of arm {arm!r}'s response to {ext_id!r} differs from the one "
            "already imported",
            "the same text: graded responses are never changed; "
            "import a changed response under a new id",
        )
    sink.raise_if_any()

    # 3. Prompts: update changed metadata, create the new ones.
    cursor.execute(
        f"UPDATE {P} SET metadata = x.metadata{jsonb} FROM {sp} x "
        f"WHERE {P}.study_id = %s AND {P}.external_id = x.ext_id "
        f"AND {P}.metadata <> x.metadata{jsonb}",
        [sid],
    )
    report.prompts.updated = cursor.rowcount
    cursor.execute(
        f"INSERT INTO {P} (study_id, region_id, external_id, text, metadata) "
        f"SELECT %s, s.region_id, s.ext_id, s.text, s.metadata{jsonb} FROM {sp} s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {P} p WHERE p.study_id = %s "
        f"AND p.external_id = s.ext_id) ON CONFLICT (study_id, external_id) DO NOTHING",
        [sid, sid],
    )
    report.prompts.created = cursor.rowcount
    report.prompts.unchanged = n_prompts - report.prompts.created - report.prompts.updated

    # 4. Responses: update metadata and cells that changed, create the new ones.
    cursor.execute(
        # A plain join in FROM (not a subquery): SQLite then walks the staging rows and finds
        # each target through the unique indexes; a subquery made it scan, quadratically.
        f"UPDATE {R} SET metadata = x.metadata{jsonb}, cell = {cell} FROM {sr} x "
        f"JOIN {P} p ON p.study_id = %s AND p.external_id = x.ext_id "
        f"WHERE {R}.prompt_id = p.id AND {R}.arm_id = x.arm_id "
        f"AND ({R}.metadata <> x.metadata{jsonb} OR {R}.cell <> {cell})",
        [sid],
    )
    report.responses.updated = cursor.rowcount
    report.responses.created = _insert_responses(
        cursor, sp, sr, P, R, sid, cell, jsonb, existed=True
    )
    report.responses.unchanged = n_responses - report.responses.created - report.responses.updated

    # 5. Scores: update the ones whose value or judge changed, create the new ones.
    for i, rule in enumerate(schema.rules):
        cursor.execute(
            f"UPDATE {J} SET value = x.v{i}, judge = x.j{i}, bin = {bins[i]} FROM {sr} x "
            f"JOIN {P} p ON p.study_id = %s AND p.external_id = x.ext_id "
            f"JOIN {R} r ON r.prompt_id = p.id AND r.arm_id = x.arm_id "
            f"WHERE {J}.response_id = r.id AND {J}.dimension_id = %s "
            f"AND ({J}.value <> x.v{i} OR {J}.judge <> x.j{i} OR {J}.bin IS NULL)",
            [sid, rule.id],
        )
        report.scores.updated += cursor.rowcount
    report.scores.created = _insert_scores(
        cursor, sr, P, R, J, sid, schema, bins, pg=pg, existed=True
    )
    report.scores.unchanged = n_scores - report.scores.created - report.scores.updated


def _trust_foreign_keys(cursor: Any, study: Study, schema: _Schema, report: ImportReport) -> bool:
    """Skip PostgreSQL's per-row foreign-key checks for the inserts of a fresh import.

    Django's foreign keys are ``DEFERRABLE INITIALLY DEFERRED``: every inserted row queues
    one check per key, run at commit (about 10 million for a million responses, measured as
    60% of the import's time). In a fresh import every key is right by construction: study,
    arm, region and dimension ids come from the study's own rows, prompt and response ids
    from joins with rows this transaction has just inserted (invisible to anyone else). What
    the checks would add is a ``FOR KEY SHARE`` lock on each parent row, so that nobody
    deletes it before commit; the study's rows are locked here instead (the study itself is
    already locked ``FOR UPDATE``).

    Turning the triggers off needs a role allowed to set ``session_replication_role``
    (a superuser, or ``GRANT SET ON PARAMETER session_replication_role`` on PostgreSQL 15+);
    without it the import runs with the checks, only slower. The caller sets the role back
    to ``origin`` right after its inserts.
    """
    try:
        with transaction.atomic():
            cursor.execute("SET LOCAL session_replication_role = replica")
    except DatabaseError:
        return False
    for model, ids in (
        (Arm, {pk for _, pk in schema.arms}),
        (Region, set(schema.regions.values())),
        (Dimension, {r.id for r in schema.rules}),
    ):
        cursor.execute(
            f"SELECT id FROM {model._meta.db_table} WHERE study_id = %s FOR KEY SHARE",
            [study.pk],
        )
        if {row[0] for row in cursor.fetchall()} != ids:
            # Read at the start, changed since: the ids staged may point at deleted rows.
            raise ImportFailed(
                [
                    ImportProblem(
                        report.file,
                        1,
                        "study",
                        f"the study's {model._meta.verbose_name_plural} changed during the "
                        "import; nothing was written",
                        "no changes to the study while it imports; try again",
                    )
                ]
            )
    return True


def _insert_responses(
    cursor: Any,
    sp: str,
    sr: str,
    P: str,
    R: str,
    sid: int,
    cell: str,
    jsonb: str,  # noqa: N803
    *,
    existed: bool,
) -> int:
    guard = (
        f"WHERE NOT EXISTS (SELECT 1 FROM {R} r WHERE r.prompt_id = x.prompt_id "
        f"AND r.arm_id = x.arm_id) ON CONFLICT (prompt_id, arm_id) DO NOTHING"
        if existed
        else ""
    )
    cursor.execute(
        f"INSERT INTO {R} (prompt_id, arm_id, study_id, region_id, text, metadata, cell) "
        f"SELECT x.prompt_id, x.arm_id, %s, x.region_id, x.text, x.metadata{jsonb}, {cell} "
        f"FROM (SELECT s.*, p.id AS prompt_id, p.region_id FROM {sr} s JOIN {P} p "
        f"ON p.study_id = %s AND p.external_id = s.ext_id) x {guard}",
        [sid, sid],
    )
    return cursor.rowcount


def _insert_scores(
    cursor: Any,
    sr: str,
    P: str,
    R: str,
    J: str,
    sid: int,  # noqa: N803
    schema: _Schema,
    bins: list[str],
    *,
    pg: bool,
    existed: bool,
) -> int:
    source = (
        f"{sr} x JOIN {P} p ON p.study_id = %s AND p.external_id = x.ext_id "
        f"JOIN {R} r ON r.prompt_id = p.id AND r.arm_id = x.arm_id"
    )
    guard = (
        f"WHERE NOT EXISTS (SELECT 1 FROM {J} j WHERE j.response_id = r.id "
        "AND j.dimension_id = d.dim) ON CONFLICT (response_id, dimension_id) DO NOTHING"
        if existed
        else ""
    )
    if pg:
        # One pass over the join for every dimension.
        values = ", ".join(
            f"({rule.id}, x.j{i}, x.v{i}, {bins[i]})" for i, rule in enumerate(schema.rules)
        )
        cursor.execute(
            f"INSERT INTO {J} (response_id, dimension_id, judge, value, bin) "
            f"SELECT r.id, d.dim, d.judge, d.value, d.bin FROM {source} "
            f"CROSS JOIN LATERAL (VALUES {values}) AS d(dim, judge, value, bin) {guard}",
            [sid],
        )
        return cursor.rowcount
    created = 0
    for i, rule in enumerate(schema.rules):
        cursor.execute(
            f"INSERT INTO {J} (response_id, dimension_id, judge, value, bin) "
            f"SELECT r.id, d.dim, x.j{i}, x.v{i}, {bins[i]} FROM {source} "
            f"JOIN (SELECT %s AS dim) d {guard}",
            [sid, rule.id],
        )
        created += cursor.rowcount
    return created
