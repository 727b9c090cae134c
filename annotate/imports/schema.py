"""Validation: the study's arms, dimensions and regions, as the parsers check each line
against them (:class:`Schema`), and the checks of ids and judge names (:func:`check_id`,
:func:`check_judge`). A problem on a line is raised as a :class:`LineError`."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from ..models import MAX_JUDGE_LENGTH, Arm, Dimension, Prompt, Region, Study

MAX_ID_LENGTH = Prompt._meta.get_field("external_id").max_length or 200


class LineError(Exception):
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


class Schema:
    """The study's arms, dimensions and regions, as the parsers need them."""

    def __init__(
        self, regions: dict[str, int], arms: list[tuple[str, int]], dims: list[Dimension]
    ) -> None:
        """``regions``: key → id; ``arms``: (key, id) in the study's order; ``dims``: the
        dimensions in the study's order. No query: unsaved dimensions with a ``pk`` will do,
        so the parsers can be run without a database (:meth:`of` reads a study's)."""
        self.regions = regions
        self.arms = arms
        self.arm_keys = {key for key, _ in arms}
        self.arm_key_of = {pk: key for key, pk in arms}
        self.dimensions = dims
        self.rules = [_DimRule.of(d) for d in dims]
        self.checks = [(r.key, *r.bounds(), r) for r in self.rules]
        self.dim_keys = {d.key for d in dims}
        self.dim_index = {d.key: i for i, d in enumerate(dims)}
        self.arm_list = ", ".join(k for k, _ in self.arms)
        self.dim_list = ", ".join(r.key for r in self.rules)
        self.region_list = ", ".join(self.regions)

    @classmethod
    def of(cls, study: Study) -> Schema:
        """The schema of ``study``, as stored."""
        regions = dict(Region.objects.filter(study=study).values_list("key", "id"))
        arms = Arm.objects.filter(study=study).order_by("position", "id")
        dims = Dimension.objects.filter(study=study).order_by("position", "id")
        return cls(regions, list(arms.values_list("key", "id")), list(dims))

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
            raise LineError(
                "region", f"unknown region {key!r}", f"one of {self.region_list}"
            ) from None

    def check_arm_keys(self, keys: Iterable[str], where: str) -> None:
        keys = set(keys)
        for key in sorted(keys - self.arm_keys):
            raise LineError(f"{where}.{key}", f"unknown arm {key!r}", f"one of {self.arm_list}")
        for key, _ in self.arms:
            if key not in keys:
                raise LineError(
                    where,
                    f"no response from arm {key!r}",
                    f"a response from every arm of the study on each interaction: {self.arm_list}",
                )

    def check_dim_keys(self, keys: Iterable[str], where: str) -> None:
        keys = set(keys)
        for key in sorted(keys - self.dim_keys):
            raise LineError(
                f"{where}.{key}", f"unknown dimension {key!r}", f"one of {self.dim_list}"
            )
        for rule in self.rules:
            if rule.key not in keys:
                raise LineError(
                    where,
                    f"no score for dimension {rule.key!r}",
                    f"a judge score for every dimension of the study: {self.dim_list}",
                )


def check_id(ext_id: str, where: str = "id") -> None:
    if not ext_id.strip():
        raise LineError(where, "empty id", "a non-empty string")
    if len(ext_id) > MAX_ID_LENGTH:
        raise LineError(
            where, f"id is {len(ext_id)} characters long", f"at most {MAX_ID_LENGTH} characters"
        )


def check_judge(judge: str, where: str) -> None:
    if not judge.strip():
        raise LineError(where, "empty judge name", "a non-empty string")
    if len(judge) > MAX_JUDGE_LENGTH:
        raise LineError(
            where, f"judge name is {len(judge)} characters long", f"at most {MAX_JUDGE_LENGTH}"
        )
