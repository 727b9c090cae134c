"""Judge-score bins: each dimension's cut points (:func:`judge_cuts_for`), from its declared
scale or from a bounded sample of this import's scores (:class:`CutsCollector`), stored by
the first import that needs them (:func:`fix_cuts`); and the SQL that bins a score
(:func:`bin_sql`)."""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Iterable
from typing import Any

from .. import hooks
from ..models import Dimension
from .report import ImportReport
from .schema import Schema

RESERVOIR_SIZE = 100_000  # scores kept per dimension to place quantile cuts


class CutsCollector:
    """Bounded statistics of this import's scores, for dimensions whose cuts are not fixed.

    A reservoir sample of at most ``RESERVOIR_SIZE`` responses (Li's algorithm L, seeded so
    an import is reproducible) keeps memory constant; quantiles of 100k draws are within a
    fraction of a percentile of the file's. Algorithm L draws how many responses to pass
    over before the next one it keeps, so past the first ``RESERVOIR_SIZE`` it costs a few
    draws per kept response, not one per response; and a reader that knows it will pass
    over a whole line need not decode it (:meth:`wanted`, :meth:`skip`). The sample depends
    only on the order of the responses fed, not on how they are batched.
    """

    def __init__(self, dims: list[Dimension]) -> None:
        self.pending = [
            (i, d)
            for i, d in enumerate(dims)
            if d.judge_cuts is None and judge_cuts_for(d, None) is None
        ]
        self.samples = {i: array("d") for i, _ in self.pending}
        self.cols = [(self.samples[i], 5 + 2 * i) for i, _ in self.pending]
        self.rng = random.Random(20_240_611)
        self.index = 0  # responses seen so far
        self.next = RESERVOIR_SIZE  # the index of the next response kept once the sample is full
        self.w = 1.0

    def wanted(self) -> int:
        """The index of the next response this sample keeps (none before it is read)."""
        return self.index if self.index < RESERVOIR_SIZE else self.next

    def skip(self, n: int) -> None:
        """Pass over ``n`` responses; none of them may be :meth:`wanted`."""
        if self.index + n > self.wanted():
            raise ValueError("a response the sample keeps would be passed over")
        self.index += n

    def _advance(self) -> None:
        # Algorithm L: W shrinks as 1/k-th powers of uniforms; the gap is geometric in W.
        rng = self.rng
        self.w *= math.exp(math.log(1.0 - rng.random()) / RESERVOIR_SIZE)
        gap = math.floor(math.log(1.0 - rng.random()) / math.log1p(-self.w)) if self.w < 1 else 0
        self.next += gap + 1

    def feed(self, response_rows: list[tuple[Any, ...]]) -> None:
        if not self.pending:
            self.index += len(response_rows)
            return
        start, n = self.index, len(response_rows)
        room = RESERVOIR_SIZE - start
        if room > 0:
            for sample, col in self.cols:
                sample.extend(row[col] for row in response_rows[:room])
            if start + n >= RESERVOIR_SIZE:
                self._advance_first()
        while self.next < start + n and start + n > RESERVOIR_SIZE:
            row = response_rows[self.next - start]
            k = self.rng.randrange(RESERVOIR_SIZE)
            for sample, col in self.cols:
                sample[k] = row[col]
            self._advance()
        self.index = start + n

    def _advance_first(self) -> None:
        """The sample has just filled: draw W and the first gap."""
        self.w = 1.0
        self.next = RESERVOIR_SIZE - 1
        self._advance()

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


def fix_cuts(
    schema: Schema, sampled: dict[int, list[float]], report: ImportReport
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


def bin_sql(column: str, cuts: list[float]) -> str:
    """SQL for ``#{k : cuts[k] ≤ column}`` (what calibration.bayes.data.bin_scores computes)."""
    if not cuts:
        return "0"
    whens = " ".join(
        f"WHEN {column} >= {float(c)!r} THEN {k + 1}" for k, c in reversed(list(enumerate(cuts)))
    )
    return f"(CASE {whens} ELSE 0 END)"
