"""One build on every CPU runtime, side by side (`workbench bench MODEL --device cpu,openvino`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.cli import main
from workbench.core.engines.openvino import device_precisions
from workbench.core.evaluation.compare import RuntimeTarget, compare_runtimes, cpu_targets, parse_targets
from workbench.errors import EngineUnavailableError, UsageError

HAS_BF16 = "bf16" in device_precisions("CPU")


def test_cpu_targets_list_every_cpu_runtime_and_precision_here():
    targets = cpu_targets()
    assert targets[0] == RuntimeTarget("cpu")
    ov = [dict(t.options).get("precision") for t in targets if t.device == "openvino"]
    assert ov == (["f32", "bf16"] if HAS_BF16 else ["f32"])
    assert parse_targets("cpu, openvino", ["f32"], "throughput")[1].options == (
        ("precision", "f32"), ("performance_hint", "throughput"))
    with pytest.raises(UsageError, match="twice"):
        parse_targets("cpu,cpu")
    with pytest.raises(EngineUnavailableError, match="unknown device"):
        parse_targets("cpu,quantum")


def test_side_by_side_measure_reports_speedups_and_agreement():
    c = compare_runtimes("sample:resnet-fashion", "cpu,openvino", threads=1, rounds=2, budget_s=0.05)
    assert [r.engine for r in c.rows][:2] == ["ort-cpu", "openvino"]
    ref, ov = c.rows[0], c.rows[1]
    assert ref.speedup == 1.0 and ref.max_abs == 0.0
    assert ov.speedup > 0 and ov.speedup_range[0] <= ov.speedup <= ov.speedup_range[1]
    assert ov.settings["precision"] == "f32" and ov.settings["threads"] == 1
    assert ov.max_abs < 1e-3 and ov.cosine > 0.99999  # the same FP32 answer from another runtime
    assert all(r.latency.iterations >= 2 * 3 for r in c.rows)
    assert c.fastest in c.rows
    d = json.loads(json.dumps(c.to_dict()))
    assert d["reference"] == "ONNX Runtime CPU" and len(d["rows"]) == len(c.rows) and "rounds" in d["method"]


def test_cli_compares_runtimes_and_refuses_what_cannot_run(capsys):
    assert main(["bench", "sample:resnet-fashion", "--device", "cpu,openvino", "--threads", "1",
                 "--rounds", "2", "--time-budget", "0.05", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [r["engine"] for r in d["rows"]][:2] == ["ort-cpu", "openvino"]
    assert d["fastest"] in [r["label"] for r in d["rows"]]
    assert main(["bench", "sample:resnet-fashion", "--device", "cpu,openvino", "--rounds", "1",
                 "--time-budget", "0.05", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "fastest:" in out and "OpenVINO CPU (f32)" in out and "ONNX Runtime CPU" in out
    assert main(["bench", "sample:resnet-fashion", "--device", "cpu,openvino", "--opt-level", "basic"]) == 2
    assert "ONNX Runtime's alone" in capsys.readouterr().err
    if not HAS_BF16:
        assert main(["bench", "sample:resnet-fashion", "--device", "openvino", "--precision", "bf16",
                     "--rounds", "1", "--time-budget", "0.05"]) == 2
        assert "BF16" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_BF16, reason="bf16 needs a CPU with AVX-512 BF16 or AMX (this one has none)")
def test_bf16_runs_on_openvino_where_the_cpu_has_it():
    c = compare_runtimes("sample:resnet-fashion", [RuntimeTarget("cpu"), RuntimeTarget(
        "openvino", (("precision", "bf16"),))], threads=1, rounds=1, budget_s=0.05)
    bf16 = c.rows[1]
    assert bf16.settings["precision"] == "bf16"
    assert 0 < bf16.max_abs and bf16.cosine > 0.99 and np.isfinite(bf16.speedup)
