"""Issue 20's labels: a build is named by its passes and only the options that differ from the
defaults; deltas read as people say them; the accuracy axis is scaled to the data."""

from __future__ import annotations

import pytest

from workbench.core.passes.recipe import Recipe
from workbench.ui.figures import pareto
from workbench.ui.results_html import _delta_cells


@pytest.mark.parametrize("text,short", [
    ("int8", "int8"),
    ("int8:calibration=entropy", "int8 (entropy)"),
    ("int8:calibration=minmax:samples=256:per_channel=auto", "int8"),  # every option at its default
    ("prune-channels:ratio=0.5,int8", "prune-channels (ratio 0.5) + int8"),
    ("int8:exclude=conv1+fc", "int8 (exclude 2 items)"),
    ("fuse,fp16", "fuse + fp16"),
])
def test_short_label_lists_only_what_differs_from_the_defaults(text, short):
    r = Recipe.parse(text)
    assert r.short_label() == short
    # the full recipe is kept as given (options sorted), for the hover and the exports
    assert all(part in r.label() for p in text.split(",") for part in p.split(":"))


def test_deltas_read_as_people_say_them():
    assert _delta_cells("p50_ms", {"current": 0.7, "ratio": 0.104, "delta": -6.0}) == \
        ("p50 latency", "0.700 ms", "9.6x faster")
    assert _delta_cells("p99_ms", {"current": 2.0, "ratio": 1.2, "delta": 0.3})[2] == "1.20x slower"
    assert _delta_cells("throughput", {"current": 1450.0, "ratio": 9.6, "delta": 1300})[1:] == \
        ("1450.0 items/s", "9.6x higher")
    assert _delta_cells("size_bytes", {"current": 2.5e6, "ratio": 0.25, "delta": -7.5e6})[1:] == \
        ("2.50 MB", "-75% size")
    assert _delta_cells("top1", {"current": 0.9516, "ratio": 0.998, "delta": -0.002}) == \
        ("top-1", "95.16%", "-0.20 pt top-1")


def test_the_accuracy_axis_is_scaled_to_the_data():
    rows = [{"index": 0, "label": "baseline", "p50_ms": 6.0, "top1": 0.9536, "size_bytes": 9e6},
            {"index": 1, "label": "int8", "p50_ms": 2.0, "top1": 0.9530, "size_bytes": 2.5e6}]
    lo, hi = pareto(rows).layout.yaxis.range
    assert 0.95 < lo < 0.9530 and 0.9536 < hi < 0.957
    assert pareto(rows).layout.yaxis.title.text == "top-1"
