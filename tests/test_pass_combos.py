"""Every pass alone and in sensible combinations, on both samples: valid, runnable, sound."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import evaluate, load_dataset, load_model, random_dataset
from workbench.core.build import optimize
from workbench.core.cache import BuildCache

FAST = {"int8": "int8:samples=64", "prune-channels": "prune-channels:samples=200",
        "fp16": "fp16:samples=16"}
ALONE = ["fold", "fuse", "fp16", "int8", "int8-dynamic", "prune-magnitude", "prune-2:4", "prune-channels"]
COMBOS = ["fuse,int8", "prune-channels,int8", "fuse,prune-channels,int8", "fuse,fp16",
          "prune-channels,fp16", "prune-2:4,int8", "prune-magnitude,fuse", "fold,fuse,prune-channels"]


def _spell(recipe: str) -> str:
    return ",".join(FAST.get(p, p) for p in recipe.split(","))


@pytest.fixture(scope="module")
def sample():
    m = load_model("sample:resnet-fashion")
    calib = load_dataset("sample:resnet-fashion:calib", m)
    test = load_dataset(None, m)
    small = type(test)({k: v[:300] for k, v in test.inputs.items()}, test.labels[:300], "first 300")
    return m, calib, small


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ALONE + COMBOS)
def test_sample_recipe(sample, recipe):
    m, calib, small = sample
    res = optimize(m, _spell(recipe), calibration=calib, cache=BuildCache(enabled=False))
    assert [r.name for r in res.reports] == recipe.split(",")
    e = evaluate(res.model, data=small, reference=m, batch=100)
    assert e.samples == 300
    # Sound, not merely valid: predictions stay close to FP32 and accuracy stays high.
    assert e.fidelity.top1_agreement >= 0.9, e.fidelity
    assert e.accuracy.top1 >= 0.88, e.accuracy


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ALONE + ["fuse,int8", "prune-channels,int8", "fuse,fp16"])
def test_resnet50_recipe(recipe):
    """Random weights: only validity, runnability and finite outputs are meaningful here."""
    m = load_model("sample:resnet50")
    calib = random_dataset(m, 4, seed=1)
    res = optimize(m, _spell(recipe).replace("samples=200", "samples=4").replace("samples=64", "samples=4"),
                   calibration=calib, cache=BuildCache(enabled=False))
    e = evaluate(res.model, data=random_dataset(m, 2, seed=2), reference=m, batch=2)
    assert e.samples == 2 and np.isfinite(e.fidelity.max_abs)
