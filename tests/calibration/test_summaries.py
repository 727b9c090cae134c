"""calibration.bayes.summaries: settled or open, from the summary shape build_summary writes."""

from __future__ import annotations

import numpy as np

from calibration.bayes.summaries import open_verdicts, verdict_table


def _summary(**cells: str) -> dict:
    cands: dict = {}
    for key, v in cells.items():
        cand, dim = key.split("__")
        cands.setdefault(cand, {"arm": cand, "dimensions": []})["dimensions"].append(
            {"dimension": dim, "verdict": v}
        )
    return {"candidates": list(cands.values())}


def test_go_and_no_go_are_settled_undecided_and_held_are_open():
    s = _summary(c1__a="go", c1__b="no-go", c2__a="undecided", c2__b="held")
    np.testing.assert_array_equal(
        open_verdicts(s, ["c1", "c2"], ["a", "b"]), [[False, False], [True, True]]
    )


def test_a_cell_the_summary_lacks_is_open_and_no_table_gives_none():
    s = _summary(c1__a="go")
    np.testing.assert_array_equal(open_verdicts(s, ["c1"], ["a", "new"]), [[False, True]])
    assert open_verdicts({}, ["c1"], ["a"]) is None
    assert open_verdicts({"candidates": {"c1": {}}}, ["c1"], ["a"]) is None  # the old shape
    assert verdict_table(s) == {("c1", "a"): "go"}
