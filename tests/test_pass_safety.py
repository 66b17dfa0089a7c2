"""Every pass on every model of the third-party-like zoo either builds a model that ONNX Runtime
runs (same outputs and shapes, finite where the baseline is) or declines with a reason and returns
the model unchanged; never an exception, never "this is a workbench bug"."""

from __future__ import annotations

import pytest
from zoo import PASSES, ZooModel, build_zoo, check_pass

ZOO_NAMES = ("cnn-ir3-opset7", "cnn-ir4-opset9", "if-opset13", "loop-opset13", "embedding-int64-bool",
             "transformer-opset14", "transformer-opset17", "detector-opset11", "crnn-lstm-opset13",
             "audio-gru-opset17", "crnn-dynamic-quant", "cnn-static-qdq", "cnn-static-qoperator")


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ZooModel]:
    models = build_zoo(tmp_path_factory.mktemp("zoo"))
    assert tuple(m.name for m in models) == ZOO_NAMES
    return {m.name: m for m in models}


@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("model_name", ZOO_NAMES)
def test_pass_builds_or_declines(zoo: dict[str, ZooModel], model_name: str, pass_name: str) -> None:
    row = check_pass(zoo[model_name], pass_name)
    assert row["outcome"] in ("built", "declined"), row["why"]
    assert "workbench bug" not in row["why"]


def test_the_reported_failures_say_what_happened(zoo: dict[str, ZooModel]) -> None:
    from workbench.core.build import optimize
    from workbench.core.cache import BuildCache

    def run(model: str, recipe: str):
        return optimize(zoo[model].path, recipe, cache=BuildCache(enabled=False)).reports[0]

    fused = run("detector-opset11", "fuse")  # the rewriter wrote Reshape allowzero=1 into opset 11
    assert fused.modified and any("Reshape.allowzero" in n for n in fused.notes)
    for recipe in ("int8-dynamic", "fp16", "prune-magnitude"):
        rep = run("crnn-dynamic-quant", recipe)
        assert not rep.modified and rep.declined[0]["what"] == "the whole model", recipe
        assert rep.declined[0]["reason"].startswith("already quantized (3 DynamicQuantizeLinear"), recipe
    dyn = run("crnn-lstm-opset13", "int8-dynamic")  # LSTM and MatMul quantized, Conv left in float
    assert dyn.modified and not dyn.metrics["integer_ops"].get("ConvInteger")
    assert any(n.startswith("Conv left in float") for n in dyn.notes)
    old = run("cnn-ir3-opset7", "fuse")  # IR 3: initializer inputs made constants, BatchNorm folded
    assert old.fused.get("Conv+BatchNormalization") == 1
