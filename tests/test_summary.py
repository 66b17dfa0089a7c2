"""Summary numbers: FLOPs of hand-computed graphs, parameters, ops, inputs."""

from __future__ import annotations

from conftest import text_model, tiny_cnn
from workbench import load_model, summarize


def test_tiny_cnn_flops_by_hand():
    s = summarize(load_model(tiny_cnn()))
    by = {n.name: n for n in s.per_node}
    # Conv: output 1x4x8x8 = 256 elements, each 3*3*3 = 27 MACs; bias adds 1 FLOP per output.
    assert by["conv"].macs == 256 * 27 == 6912
    assert by["conv"].flops == 2 * 6912 + 256
    assert by["conv"].params == 4 * 3 * 3 * 3 + 4
    assert by["relu"].flops == 256
    assert by["gap"].flops == 256  # one add per input element
    assert by["flatten"].flops == 0
    # Gemm: [1,4] x [4,5]^T + bias: 20 MACs, 5 bias adds.
    assert by["fc"].macs == 20 and by["fc"].flops == 45
    assert s.macs == 6912 + 20
    assert s.flops == 2 * 6912 + 256 + 256 + 256 + 45
    assert s.params == 108 + 4 + 20 + 5
    assert s.ops == {"Conv": 1, "Relu": 1, "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1}
    assert s.nodes == 5
    assert s.assumed == ["x: dim 0 'N' = 1 (batch)"]


def test_flops_scale_with_batch():
    m = load_model(tiny_cnn())
    assert summarize(m, batch=8).macs == 8 * summarize(m).macs


def test_text_model_matmul_flops_and_int_inputs():
    s = summarize(load_model(text_model()), shapes={"input_ids": (2, 16)})
    mm = next(n for n in s.per_node if n.op_type == "MatMul")
    assert mm.macs == 2 * 3 * 8  # [2,8] x [8,3]
    assert s.inputs[0].dtype == "int64" and s.inputs[0].shape == ("batch", "seq")
    assert s.params == 100 * 8 + 8 * 3  # the int64 'axes' constant is not a parameter


def test_synthetic_resnet50_matches_published_counts():
    s = summarize(load_model("sample:resnet50"))
    # torchvision's ResNet-50: 4.09 GMACs at 224x224; 25.56 M weights + 53 BN layers' running stats.
    assert abs(s.macs / 1e9 - 4.09) < 0.02
    assert 25.5e6 < s.params < 25.7e6
    assert s.latency_only
    assert s.ops["Conv"] == 53 and s.ops["BatchNormalization"] == 53


def test_sample_summary():
    s = summarize(load_model("sample:resnet-fashion"))
    assert s.ops["Conv"] == 20 and s.ops["BatchNormalization"] == 20 and s.ops["Add"] == 8
    assert s.inputs[0].shape == ("batch", 1, 28, 28)
    assert s.macs > 100e6
    d = s.to_dict()
    for k in ("nodes", "params", "flops", "ops", "inputs", "outputs", "size_bytes", "fingerprint"):
        assert k in d
