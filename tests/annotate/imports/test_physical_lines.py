"""``parsing.physical_lines`` reads a mebibyte at a time and splits the lines itself: it must
yield exactly what reading a line at a time yields (numbers, offsets, bytes), refuse the same
too-long lines, and say how far the lines handed on reach."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator

import pytest

from annotate.imports import parsing
from annotate.imports.parsing import Problems, ReadPosition, physical_lines

LIMIT = 40  # MAX_LINE_BYTES for these tests, so that lines around it stay short


def by_readline(stream: io.BytesIO, sink: Problems) -> Iterator[tuple[int, int, bytes]]:
    """The reader physical_lines replaced: ``readline`` with a bound, one line at a time."""
    number, offset = 0, 0
    while raw := stream.readline(LIMIT + 1):
        number += 1
        start = offset
        offset += len(raw)
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if len(raw) > LIMIT and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(LIMIT)
                offset += len(raw)
            sink.add(number, "line", "too long", "")
            if sink.fatal_lines:
                return
            continue
        yield number, start, raw


@pytest.fixture(autouse=True)
def short_lines(monkeypatch):
    monkeypatch.setattr(parsing, "MAX_LINE_BYTES", LIMIT)


@pytest.mark.parametrize("read_bytes", [1, 2, 3, 7, 39, 40, 41, 64, 1 << 20])
def test_the_same_lines_as_reading_one_line_at_a_time(monkeypatch, read_bytes):
    monkeypatch.setattr(parsing, "READ_BYTES", read_bytes)
    rng = random.Random(read_bytes)
    for _ in range(200):
        lines = [
            b"x" * rng.choice([0, 1, 5, LIMIT - 1, LIMIT, LIMIT + 1, LIMIT + 2, 3 * LIMIT])
            + rng.choice([b"\n", b"\r\n"])
            for _ in range(rng.randint(0, 8))
        ]
        if lines and rng.random() < 0.5:
            lines[-1] = lines[-1].rstrip(b"\n")  # no newline at the end of the file
        if rng.random() < 0.2:
            lines.insert(0, b"\xef\xbb\xbf{}\n")
        data = b"".join(lines)
        fatal = rng.random() < 0.3
        want_sink = Problems("f", 100, fatal_lines=fatal)
        got_sink = Problems("f", 100, fatal_lines=fatal)
        want = list(by_readline(io.BytesIO(data), want_sink))
        read = ReadPosition()
        got = []
        for number, offset, raw in physical_lines(io.BytesIO(data), got_sink, read):
            got.append((number, offset, raw))
            assert read() == offset + len(raw) + (
                3 if number == 1 and offset == 0 and data.startswith(b"\xef\xbb\xbf") else 0
            )
        assert got == want, data
        assert [p.line for p in got_sink.items] == [p.line for p in want_sink.items]
