"""The file formats: JSONL and long CSV read line by line into staged rows.

:func:`parse_jsonl` and :func:`parse_csv` yield each interaction's rows (:data:`Staged`),
decoded and checked against a :class:`~.schema.Schema`; problems are collected with their
file, line and field (:class:`Problems`). :func:`format_of` tells the format from a file's
name. The fresh path's first pass over the scores reads the lines as these parsers do
(:func:`physical_lines`). Nothing here writes to the database.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import msgspec

from .report import ImportFailed, ImportProblem
from .schema import LineError, Schema, check_id, check_judge

MAX_LINE_BYTES = 1 << 20  # 1 MiB per line (JSONL) or per physical line (CSV)
# Objects and arrays nested inside one JSONL line, the line itself included: an interaction
# needs 5, metadata gets the rest. Deeper lines are refused before decoding, since decoders
# recurse once per level (msgspec and json raise RecursionError at about 1,000).
MAX_JSON_DEPTH = 64
MAX_PROBLEMS = 20
DEFAULT_JUDGE = "judge"
FORMATS = ("jsonl", "csv")
CSV_COLUMNS = ("id", "region", "prompt", "arm", "response", "dimension", "score")
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_LINE_KEYS = ("id", "region", "prompt", "responses", "metadata", "judge")
_RESPONSE_KEYS = ("text", "scores", "metadata")
_SCORE_KEYS = ("value", "judge")
_SCORE_SHAPE = 'a number, or {"value": number, "judge": string}'


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


def _meta_json(meta: dict[str, Any] | None) -> str:
    # json.dumps with its default separators is what Django's JSONField stores on SQLite, so
    # re-importing rows written through the ORM compares equal.
    return json.dumps(meta) if meta else "{}"


class ScoresJson:
    """A response row's judge scores as the ``scores`` column's JSON text.

    ``{"<dimension id>": [value, judge], …}`` exactly as ``json.dumps`` writes it (which is
    what Django's JSONField stores on SQLite), so that a re-import compares equal with rows
    written through the ORM. Built from a template per combination of judge names (a file
    has few), the values put in with ``%r``: ``json.dumps`` of a dict per response cost more
    than the rest of the row's formatting. Values are finite floats (the parser checks
    them), whose ``repr`` is ``json.dumps``'s. ``escape``, if given, is applied to the
    template (the values never need it): the fresh path's COPY escaping.
    """

    def __init__(
        self, dimension_ids: list[int], escape: Callable[[str], str] | None = None
    ) -> None:
        self.ids = [str(pk) for pk in dimension_ids]
        self.end = 5 + 2 * len(dimension_ids)
        self.escape = escape
        self.templates: dict[tuple[str, ...], str] = {}

    def _template(self, judges: tuple[str, ...]) -> str:
        body = ", ".join(
            f'"{pk}": [%r, {json.dumps(judge).replace("%", "%%")}]'
            for pk, judge in zip(self.ids, judges, strict=True)
        )
        template = "{" + body + "}"
        if self.escape is not None:
            template = self.escape(template)
        self.templates[judges] = template
        return template

    def __call__(self, row: tuple[Any, ...]) -> str:
        end = self.end
        judges = row[6:end:2]
        template = self.templates.get(judges) or self._template(judges)
        return template % row[5:end:2]


# A staged interaction: one prompt row and one row per arm.
#   prompt row:   (line, ext_id, region_id, text, metadata_json)
#   response row: (line, ext_id, arm_id, text, metadata_json, v_0, judge_0, v_1, judge_1, …)
Staged = tuple[tuple[Any, ...], list[tuple[Any, ...]]]


def _rows_from_line(obj: _Line, line: int, schema: Schema) -> Staged:
    """Check what types alone cannot (known keys, ranges) and shape the staging rows."""
    check_id(obj.id)
    region_id = schema.check_region(obj.region)
    default_judge = DEFAULT_JUDGE
    if obj.judge is not None:
        check_judge(obj.judge, "judge")
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
                    check_judge(judge, f"responses.{arm_key}.scores.{key}.judge")
            # Inlined bounds check (NaN and ±inf fail it); the message comes from the rule.
            if not lo <= value <= hi or (whole and not value.is_integer()):
                why = rule.problem(value) or f"{value!r} is not a valid score"
                raise LineError(f"responses.{arm_key}.scores.{key}", why, rule.expected())
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


def _explain_types(obj: Any) -> LineError | None:
    """Name the first missing, unknown or mistyped field of a decoded line, or None."""

    def keys(d: dict[str, Any], allowed: tuple[str, ...], required: tuple[str, ...], where: str):
        for k in required:
            if k not in d:
                return LineError(f"{where}{k}", "missing field", f"fields {', '.join(allowed)}")
        for k in d:
            if k not in allowed:
                return LineError(
                    f"{where}{k}", "unknown field", f"only the fields {', '.join(allowed)}"
                )
        return None

    def want(v: Any, kind: Any, where: str, what: str) -> LineError | None:
        if isinstance(v, kind) and not isinstance(v, bool):
            return None
        return LineError(where, f"{_type_name(v)} is not {what}", what)

    if not isinstance(obj, dict):
        return LineError("line", f"{_type_name(obj)} is not an object", "one JSON object per line")
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


def too_deep(raw: bytes) -> LineError | None:
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
                return LineError(
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


def _out_of_range(value: Any, where: str) -> LineError | None:
    """The first number of a decoded line that msgspec cannot hold (±inf, NaN), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return LineError(
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


def _explain(raw: bytes, exc: Exception, line: int, offset: int) -> LineError:
    """Turn a fast-path decoding failure into a message that names the field."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return LineError(
            "encoding",
            f"byte 0x{raw[e.start]:02x} at byte offset {offset + e.start} of the file "
            f"(column {e.start + 1} of line {line}) is not valid UTF-8",
            "UTF-8 text",
        )
    try:
        obj = json.loads(text.rstrip("\r\n"), parse_int=_bounded_int, parse_constant=float)
    except json.JSONDecodeError as e:
        return LineError("json", f"malformed JSON: {e.msg} at column {e.colno}", "one JSON object")
    except RecursionError:  # not reached after too_deep; kept so that no line is a 500
        return LineError("json", "JSON nested too deeply", "one JSON object")
    return (
        _explain_types(obj)
        or _out_of_range(obj, "")
        or LineError("line", str(exc), "a valid interaction")
    )


READ_BYTES = 1 << 20  # what physical_lines reads at a time


class ReadPosition:
    """How far into the stream the lines handed on so far reach: an import's progress.

    The stream itself is read ahead (a mebibyte at a time), so its ``tell()`` would run
    ahead of what was parsed.
    """

    def __init__(self) -> None:
        self.bytes = 0

    def __call__(self) -> int:
        return self.bytes


def _too_long(sink: Problems, line: int) -> None:
    sink.add(
        line,
        "line",
        f"line is longer than {MAX_LINE_BYTES} bytes (1 MiB)",
        f"at most {MAX_LINE_BYTES} bytes per line",
    )


def physical_lines(
    stream: IO[bytes], sink: Problems, read: ReadPosition | None = None
) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(line number, byte offset, bytes)``, refusing lines over ``MAX_LINE_BYTES``.

    The stream is read a mebibyte at a time and split here: with a ``readline`` per line,
    a profile (py-spy) of the fresh import found the reading thread in ``readline`` more
    often than in the parse, each refill of its small buffer giving the GIL away to the
    thread formatting the rows; a 100k-response import then took 2.0 s instead of 2.8.
    A line keeps its ``\n``; the stream ends up read further than the last line yielded,
    ``read`` (if given) says how far the lines reach.
    """
    number, offset = 0, 0
    pending = b""  # the start of a line whose end is not read yet
    skipping = False  # inside a line already refused as too long
    while True:
        block = stream.read(READ_BYTES)
        if isinstance(block, str):
            raise TypeError("open the file in binary mode ('rb'): the importer decodes UTF-8")
        data = pending + block if pending else block
        pos, end = 0, len(data)
        while pos < end:
            nl = data.find(b"\n", pos)
            stop = end if nl < 0 else nl + 1
            if nl < 0 and block:  # a line not ended in this block: wait for the next
                if skipping:
                    offset += end - pos
                    pos = end
                elif end - pos > MAX_LINE_BYTES:
                    number += 1
                    skipping = True
                    offset += end - pos
                    pos = end
                    _too_long(sink, number)
                    if sink.fatal_lines:
                        return
                break
            raw = data[pos:stop]
            start = offset
            offset += stop - pos
            pos = stop
            if read is not None:
                read.bytes = offset
            if skipping:  # the rest of a refused line
                skipping = False
                continue
            number += 1
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte-order mark, as some spreadsheet exports write
            if len(raw) - raw.endswith(b"\n") > MAX_LINE_BYTES:
                _too_long(sink, number)
                if sink.fatal_lines:
                    return
                continue
            yield number, start, raw
        pending = data[pos:]
        if not block:
            return


class Problems:
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


# The interaction's own structure puts a response's metadata three levels deep, and each
# further level takes two characters: every metadata text shorter than this keeps the line
# within MAX_JSON_DEPTH, so only a line with a longer one is scanned (:func:`too_deep`).
# Scanning every line cost as much as decoding it (measured).
_SHALLOW_METADATA = 2 * (MAX_JSON_DEPTH - 2)


def parse_jsonl(
    stream: IO[bytes], schema: Schema, sink: Problems, read: ReadPosition | None = None
) -> Iterator[Staged]:
    for number, offset, raw in physical_lines(stream, sink, read):
        if raw.isspace():
            continue
        try:
            staged = _rows_from_line(_decode_line(raw), number, schema)
        except LineError as exc:
            err = too_deep(raw) or exc
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            err = too_deep(raw) or _explain(raw, exc, number, offset)
        else:
            prompt, rows = staged
            if len(prompt[4]) < _SHALLOW_METADATA and all(
                len(row[4]) < _SHALLOW_METADATA for row in rows
            ):
                yield staged
                continue
            if (deep := too_deep(raw)) is None:
                yield staged
                continue
            err = deep
        sink.add(number, err.field, err.message, err.expected)
        if sink.full:
            return


def parse_csv(
    stream: IO[bytes], schema: Schema, sink: Problems, read: ReadPosition | None = None
) -> Iterator[Staged]:
    """Long CSV: one row per (id, arm, dimension); the rows of one id are contiguous."""

    def text_lines() -> Iterator[str]:
        for number, offset, raw in physical_lines(stream, sink, read):
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
                raise LineError("row", f"{len(row)} fields", f"{width} fields: {','.join(header)}")
            if group is None:
                group = _CsvGroup(row[0], line)
            group.add(row, line, schema)
        except LineError as err:
            sink.add(line, err.field, err.message, err.expected)
            bad_id, group = row[0], None
            if sink.full:
                return
    if group is not None:
        staged = _finish(group, schema, sink)
        if staged is not None:
            yield staged


def _finish(group: _CsvGroup, schema: Schema, sink: Problems) -> Staged | None:
    try:
        return group.finish(schema)
    except _GroupError as err:
        sink.add(err.line, err.field, err.message, err.expected)
        return None


class _GroupError(LineError):
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

    def add(self, row: list[str], line: int, schema: Schema) -> None:
        ext_id, region, prompt, arm, response, dim, score = row[:7]
        judge = row[7] if len(row) > 7 and row[7] != "" else DEFAULT_JUDGE
        check_id(ext_id)
        if self.region is None:
            schema.check_region(region)
            self.region, self.prompt = (region, line), (prompt, line)
        else:
            assert self.prompt is not None
            if region != self.region[0]:
                raise LineError(
                    "region",
                    f"id {ext_id!r} has region {region!r} here but {self.region[0]!r} on "
                    f"line {self.region[1]}",
                    "the same region on every row of an id",
                )
            if prompt != self.prompt[0]:
                raise LineError(
                    "prompt",
                    f"the prompt text of id {ext_id!r} differs from the one on line "
                    f"{self.prompt[1]}",
                    "the same prompt text on every row of an id",
                )
        if arm not in schema.arm_keys:
            raise LineError("arm", f"unknown arm {arm!r}", f"one of {schema.arm_list}")
        if dim not in schema.dim_keys:
            raise LineError("dimension", f"unknown dimension {dim!r}", f"one of {schema.dim_list}")
        entry = self.arms.get(arm)
        if entry is None:
            entry = self.arms[arm] = (response, line, {})
        elif response != entry[0]:
            raise LineError(
                "response",
                f"the response text of id {ext_id!r}, arm {arm!r} differs from the one on "
                f"line {entry[1]}",
                "the same response text on every row of an id and arm",
            )
        if dim in entry[2]:
            raise LineError(
                "dimension",
                f"a second score for id {ext_id!r}, arm {arm!r}, dimension {dim!r}",
                "one row per id, arm and dimension",
            )
        rule = schema.rules[schema.dim_index[dim]]
        cell = score.strip()
        try:
            value = float(cell)
        except ValueError:
            raise LineError(
                "score", f"{cell!r} is not a number" if cell else "empty score", rule.expected()
            ) from None
        if why := rule.problem(value):
            raise LineError("score", why, rule.expected())
        if judge is not DEFAULT_JUDGE:
            check_judge(judge, "judge")
        entry[2][dim] = (value, judge)

    def finish(self, schema: Schema) -> Staged:
        assert self.region is not None and self.prompt is not None
        try:
            schema.check_arm_keys(self.arms, "arm")
        except LineError as err:
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
            except LineError as err:
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


def format_of(name: str, fmt: str | None) -> str:
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
