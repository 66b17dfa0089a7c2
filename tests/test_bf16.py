"""``bf16``: a precision the user toggles on OpenVINO's CPU plugin, never a hidden default."""

from __future__ import annotations

import pytest

from workbench.core.build import optimize
from workbench.core.cache import BuildCache
from workbench.core.evaluation.run import make_runner
from workbench.core.machine import cpu_isa
from workbench.core.model import PRECISION_KEY, load_model
from workbench.core.passes.bf16 import BF16_ISA
from workbench.core.shapes import random_feeds, resolve_inputs, tensor_specs

HAS_BF16 = any(x in cpu_isa() for x in BF16_ISA)


def _feeds(m):
    return random_feeds(resolve_inputs(tensor_specs(m.proto.graph)[0], batch=2))


def test_openvino_runs_f32_unless_asked_even_where_the_cpu_has_bf16():
    m = load_model("sample:resnet-fashion")
    with make_runner(m, "openvino", threads=1) as r:
        r.infer(_feeds(m))
        assert r.settings["precision"] == "f32" and r.settings["precision_requested"] == "f32"


def test_bf16_declines_onnx_runtime_with_the_reason(tmp_path):
    res = optimize("sample:resnet-fashion", "bf16", device="cpu", cache=BuildCache(tmp_path))
    d = res.reports[0].declined
    assert d and "openvino" in d[0]["reason"] and "no bf16 kernels" in d[0]["reason"]
    assert PRECISION_KEY not in res.model.metadata


@pytest.mark.skipif(HAS_BF16, reason="checks the decline on CPUs without bf16 instructions")
def test_bf16_declines_a_cpu_without_bf16_instructions(tmp_path):
    res = optimize("sample:resnet-fashion", "bf16", device="openvino", cache=BuildCache(tmp_path))
    d = res.reports[0].declined
    assert d and "no bf16 instructions" in d[0]["reason"] and PRECISION_KEY not in res.model.metadata


@pytest.mark.skipif(not HAS_BF16, reason="needs a CPU with AVX-512 BF16 or AMX (the other test checks the decline)")
def test_bf16_build_runs_in_bf16_on_openvino(tmp_path):
    import numpy as np  # noqa: PLC0415

    res = optimize("sample:resnet-fashion", "bf16", device="openvino", cache=BuildCache(tmp_path))
    assert res.model.metadata[PRECISION_KEY] == "bf16" and res.reports[0].modified
    feeds = _feeds(res.model)
    with make_runner(res.model, "openvino", threads=1) as r, make_runner(res.source, "cpu", threads=1) as ref:
        got, want = next(iter(r.infer(feeds).values())), next(iter(ref.infer(feeds).values()))
        assert r.settings["precision"] == "bf16"
    assert 0 < float(np.max(np.abs(got - want))) < 0.5 * float(np.max(np.abs(want)))
