"""The judge-score reservoir (``binning.CutsCollector``): uniform, and the same however it is
fed: in any batches, or passing over the responses it will not keep without reading them."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from annotate.imports import binning
from annotate.models import Dimension

SIZE = 200


@pytest.fixture(autouse=True)
def small_reservoir(monkeypatch):
    monkeypatch.setattr(binning, "RESERVOIR_SIZE", SIZE)


def collector() -> binning.CutsCollector:
    continuous = Dimension(pk=1, key="c", judge_score_type=Dimension.JudgeScoreType.CONTINUOUS)
    return binning.CutsCollector([continuous])


def rows(values) -> list[tuple]:
    return [(None, None, None, None, None, float(v), "j") for v in values]


def test_the_sample_does_not_depend_on_the_batches():
    n = 5_000
    whole = collector()
    whole.feed(rows(range(n)))
    rng = random.Random(3)
    for _ in range(5):
        batched, at = collector(), 0
        while at < n:
            step = rng.choice([1, 2, 7, 150, 999])
            batched.feed(rows(range(at, min(at + step, n))))
            at += step
        assert list(batched.samples[0]) == list(whole.samples[0])


def test_passing_over_what_is_not_wanted_keeps_the_same_sample():
    n, per_line = 6_000, 3
    fed = collector()
    fed.feed(rows(range(n)))
    skipping, decoded = collector(), 0
    for start in range(0, n, per_line):
        if skipping.index + per_line <= skipping.wanted():
            skipping.skip(per_line)
            continue
        decoded += 1
        skipping.feed(rows(range(start, start + per_line)))
    assert list(skipping.samples[0]) == list(fed.samples[0])
    # Past the fill, only the lines holding a kept response were read: about
    # SIZE * ln(n / SIZE) of them (the expected number kept), a third of the lines here.
    assert decoded < SIZE / per_line + 1.2 * SIZE * math.log(n / SIZE) < 0.5 * n / per_line


def test_skipping_a_wanted_response_is_refused():
    c = collector()
    c.feed(rows(range(SIZE - 1)))
    with pytest.raises(ValueError, match="passed over"):
        c.skip(2)


def test_every_response_is_equally_likely_to_be_kept():
    # Over many seeds, each position of a stream of 10 reservoirs' length is kept with
    # probability SIZE / n: compare kept counts per tenth of the stream with a chi-square.
    n, runs = 10 * SIZE, 300
    kept = np.zeros(10)
    for seed in range(runs):
        c = collector()
        c.rng = random.Random(seed)
        c.feed(rows(range(n)))
        assert len(c.samples[0]) == SIZE
        kept += np.bincount((np.array(c.samples[0]) // (n / 10)).astype(int), minlength=10)
    expected = runs * SIZE / 10
    chi2 = float(((kept - expected) ** 2 / expected).sum())
    assert chi2 < 27.9, (chi2, kept)  # chi-square, 9 df, p = 0.001
