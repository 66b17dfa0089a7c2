"""benchmarks/peers.py on a tiny model: the harness (core deps only) and each peer whose package is here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import tiny_cnn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import peer_builders  # noqa: E402
import peers  # noqa: E402

TINY_PLAN = peers.Plan(calib=4, eval_samples=16, rounds=2, budget_s=0.02, min_iterations=1)


@pytest.fixture
def tiny_subject(tmp_path: Path) -> peers.Subject:
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_cnn(), str(path))
    return peers.Subject("tiny", ("fuse",), source=str(path), about="tiny CNN")


def _failing(proto, feeds):
    raise RuntimeError("this peer cannot handle the model")


def test_harness_rows_quality_latency_and_report(tiny_subject, monkeypatch):
    monkeypatch.setattr(peers, "PEERS", {
        "ORT quantize_dynamic defaults": peer_builders.PEERS["ORT quantize_dynamic defaults"],
        "absent peer": ("no-such-package-xyz", _failing),
        "broken peer": ("onnxruntime", _failing),
    })
    monkeypatch.setattr(peers, "OV_PEERS", {k: peer_builders.OV_PEERS[k] for k in
                                            ("OpenVINO FP32", "NNCF int8 accuracy control")})
    sub = peers.run_subject(tiny_subject, TINY_PLAN, threads=1, polygraphy=False, log=lambda s: None)
    rows = sub["rows"]
    assert [f"ORT FP32 {lv}" for lv in peers.LEVELS] == list(rows)[:4]
    base = rows[peers.BASE]
    assert base["b1"]["speedup"] == 1.0 and base["b8"]["speedup"] == 1.0
    assert base["fidelity"]["max_abs"] == 0.0 and base["size_ratio"] == 1.0
    # fusing Conv+Relu changes float rounding at most
    fuse = rows["workbench fuse"]
    assert fuse["kind"] == "workbench" and fuse["fidelity"]["max_abs"] < 1e-4
    assert fuse["fidelity"]["top1_agreement"] == 1.0 and fuse["build_s"] > 0
    q = rows["ORT quantize_dynamic defaults"]
    assert 0.5 < q["fidelity"]["cosine"] < 1.0 and q["fidelity"]["samples"] == 16
    for row in (fuse, q):
        assert row["b1"]["p50_ms"] > 0 and row["b8"]["throughput"] > 0
        assert row["b1"]["speedup_range"][0] <= row["b1"]["speedup"] <= row["b1"]["speedup_range"][1]
    assert rows["absent peer"]["skipped"] == "no-such-package-xyz is not installed (pip install -e '.[bench]')"
    assert rows["broken peer"]["error"] == "build: RuntimeError: this peer cannot handle the model"
    if peer_builders.missing("openvino") is None:  # rows OpenVINO runs, each with its own runner
        ov = rows["OpenVINO FP32"]
        assert ov["runtime_label"] == "OpenVINO CPU f32" and ov["runtime_settings"]["threads"] == 1
        assert ov["fidelity"]["top1_agreement"] == 1.0 and ov["b1"]["p50_ms"] > 0 and ov["size_ratio"] == 1.0
        on_ov = rows["workbench fuse on OpenVINO"]
        assert on_ov["kind"] == "workbench" and on_ov["fidelity"]["cosine"] > 0.9999
        for_ov = rows["workbench int8 for openvino"]  # no int8 recipe here: int8 for openvino is added
        assert for_ov["runtime_label"] == "OpenVINO CPU f32" and for_ov["fidelity"]["cosine"] > 0.9
        assert for_ov["b8"]["throughput"] > 0
        if peer_builders.missing("nncf") is None:
            assert rows["NNCF int8 accuracy control"]["skipped"].startswith("unlabeled subject")
    left_out = {"about": "big", "skipped": "left out with `--skip`; measured elsewhere"}
    res = {"threads": 1, "uptime": "up", "versions": {"onnxruntime": ort.__version__},
           "subjects": {"tiny": sub, "big": left_out}, "wall_s": 1.0, "machine": peers.machine_info(),
           "plots": []}
    md = peers.report(res)
    assert "| **workbench fuse** | ORT CPU |" in md and "skipped: no-such-package-xyz" in md
    assert "**failed**: build: RuntimeError" in md
    assert "Not in this run: left out with `--skip`; measured elsewhere" in md
    head = "\n".join(peers.headline(res))
    assert "| tiny | `fuse` |" in head
    assert "| big | not in this run (left out with `--skip`; measured elsewhere) |" in head


def test_headline_picks_fastest_build_that_keeps_quality():
    def row(kind, s1, cos, sqnr=30.0):
        return {"kind": kind, "b1": {"speedup": s1}, "b8": {"speedup": s1},
                "fidelity": {"cosine": cos, "sqnr_db": sqnr}}

    rows = {peers.BASE: row("ORT FP32", 1.0, 1.0), "fast but wrong": row("peer", 5.0, 0.5),
            "scalar output, cosine blind": row("peer", 6.0, 1.0, sqnr=3.0),
            "peer ok": row("peer", 1.5, 0.999), "workbench a": row("workbench", 3.0, 0.995),
            "workbench b": row("workbench", 4.0, 0.9)}
    res = {"threads": 2, "subjects": {"m": {"labeled": False, "rows": rows}}}
    rows["OpenVINO int8"] = {**row("peer", 2.0, 0.999), "runtime": "openvino", "runtime_label": "OpenVINO CPU f32"}
    line = peers.headline(res)[4]
    assert line == "| m | `a` | ORT CPU | 3.00x / 3.00x | OpenVINO int8 | OpenVINO CPU f32 | 2.00x / 2.00x | 1.50x |"


def test_wheel_subject_is_located_or_missing_with_reason():
    for s in peers.SUBJECTS:
        if s.wheel is None:
            continue
        pkg, module, rel = s.wheel
        if peer_builders.missing(module) is None:
            assert Path(s.locate()).is_file()
        else:
            with pytest.raises(FileNotFoundError, match=f"{pkg} is not installed"):
                s.locate()


def _calib() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)} for _ in range(4)]


@pytest.mark.parametrize("name", list(peer_builders.PEERS))
def test_each_peer_builds_a_model_that_runs(name):
    pkg, build = peer_builders.PEERS[name]
    why = peer_builders.missing(pkg)
    if why:
        pytest.skip(why)
    src = tiny_cnn()
    built = build(src, _calib())
    x = _calib()[0]
    ref = ort.InferenceSession(src.SerializeToString()).run(None, x)[0]
    out = ort.InferenceSession(built.SerializeToString()).run(None, x)[0]
    assert out.shape == ref.shape
    cos = float((ref * out).sum() / (np.linalg.norm(ref) * np.linalg.norm(out)))
    assert cos > 0.9, f"{name}: cosine {cos}"


def _labeled_validation(n: int = 8):
    """Tiny-CNN inputs labeled with FP32's own top-1 (FP32 scores 1.0 on them)."""
    rng = np.random.default_rng(5)
    feeds = [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(n)]
    sess = ort.InferenceSession(tiny_cnn().SerializeToString())
    labels = np.array([int(sess.run(None, f)[0].argmax()) for f in feeds])
    return feeds, labels


@pytest.mark.parametrize("name", list(peer_builders.OV_PEERS))
def test_each_openvino_peer_builds_a_model_openvino_runs(name):
    pkg, build = peer_builders.OV_PEERS[name]
    why = peer_builders.missing("openvino") or peer_builders.missing(pkg)
    if why:
        pytest.skip(why)
    from workbench import load_model  # noqa: PLC0415
    from workbench.core.engines.openvino import OpenVinoIR  # noqa: PLC0415
    from workbench.core.evaluation.run import make_runner  # noqa: PLC0415

    src = load_model(tiny_cnn(), check=False)
    if name == "NNCF int8 accuracy control":
        with pytest.raises(peer_builders.PeerSkipped, match="unlabeled subject"):
            build(src.proto, _calib(), None)
    b = build(src.proto, _calib(), _labeled_validation())
    assert b.precision == (None if name == "OpenVINO default" else "f32")
    assert (b.xml is None) == name.startswith("OpenVINO")
    ir = None if b.xml is None else OpenVinoIR(b.xml, b.weights, src.fingerprint)
    x = _calib()[0]
    ref = ort.InferenceSession(src.proto.SerializeToString()).run(None, x)[0]
    with make_runner(src, "openvino", threads=1, precision=b.precision, ir=ir) as r:
        out = r.infer(x)["y"]
    cos = float((ref * out).sum() / (np.linalg.norm(ref) * np.linalg.norm(out)))
    assert out.shape == ref.shape and cos > 0.9, f"{name}: cosine {cos}"


def test_openvino_rows_time_each_batch_on_its_own_request(tiny_subject, monkeypatch):
    """Batch 1 and batch 8 are prepared on one OpenVINO runner: each callable must run its own
    batch (before e7dbd66 OpenVinoRunner.prepare bound its one infer request, and the batch-1
    timing ran batch 8)."""
    if peer_builders.missing("openvino"):
        pytest.skip(peer_builders.missing("openvino"))
    monkeypatch.setattr(peers, "PEERS", {})
    monkeypatch.setattr(peers, "OV_PEERS", {"OpenVINO FP32": peer_builders.OV_PEERS["OpenVINO FP32"]})
    seen = {}
    real = peers.interleaved

    def spy(configs, **kw):
        for key in ("OpenVINO FP32|b1", "OpenVINO FP32|b8", "workbench fuse on OpenVINO|b1"):
            out = configs[key]()  # OpenVINO's infer(): its outputs
            seen[key] = next(iter(out.values())).shape[0]
        return real(configs, **kw)

    monkeypatch.setattr(peers, "interleaved", spy)
    peers.run_subject(tiny_subject, TINY_PLAN, threads=1, polygraphy=False, log=lambda s: None)
    assert seen == {"OpenVINO FP32|b1": 1, "OpenVINO FP32|b8": 8, "workbench fuse on OpenVINO|b1": 1}


def test_polygraphy_cross_check_agrees(tiny_subject, monkeypatch):
    why = peer_builders.missing("polygraphy")
    if why:
        pytest.skip(why)
    monkeypatch.setattr(peers, "PEERS", {"ORT quantize_dynamic defaults":
                                         peer_builders.PEERS["ORT quantize_dynamic defaults"]})
    monkeypatch.setattr(peers, "OV_PEERS", {})
    sub = peers.run_subject(tiny_subject, TINY_PLAN, threads=1, polygraphy=True, log=lambda s: None)
    poly = sub["rows"]["ORT quantize_dynamic defaults"]["polygraphy"]
    assert poly["agree"] and poly["max_absdiff"] > 0
    assert poly["max_absdiff"] == pytest.approx(poly["workbench_max_abs"], rel=1e-2)


def test_plot_is_a_png(tiny_subject, monkeypatch, tmp_path):
    if peer_builders.missing("matplotlib"):
        pytest.skip("matplotlib is not installed (pip install -e '.[bench]')")
    monkeypatch.setattr(peers, "PEERS", {"broken peer": ("onnxruntime", _failing)})
    monkeypatch.setattr(peers, "OV_PEERS", {"OpenVINO FP32": peer_builders.OV_PEERS["OpenVINO FP32"]})
    sub = peers.run_subject(tiny_subject, TINY_PLAN, threads=1, polygraphy=False, log=lambda s: None)
    names = peers.plot({"subjects": {"tiny": sub}}, out_dir=tmp_path)
    assert names == ["peers_speedup.png"]
    assert (tmp_path / names[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_search_result_is_found_wherever_it_is_nested(tmp_path, monkeypatch):
    (tmp_path / "results").mkdir()
    result = {"model": "sample:resnet-fashion", "best": 3, "trials": [
        {"number": 2, "recipe": "int8"}, {"number": 3, "recipe": "prune-channels:ratio=0.4,int8"}]}
    (tmp_path / "results" / "search.json").write_text(
        __import__("json").dumps({"machine": {}, "runs": [{"result": result}, {"model": "x", "best": None,
                                                                                "trials": []}]}))
    monkeypatch.setattr(peers, "HERE", tmp_path)
    assert peers._search() == {"sample:resnet-fashion": "prune-channels:ratio=0.4,int8"}
    (tmp_path / "results" / "search.json").unlink()
    assert peers._search() is None


def test_a_mistyped_subject_key_is_an_error_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["peers.py", "--skip", "resnet50"])
    with pytest.raises(SystemExit) as e:
        peers.main()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error: unknown subject resnet50; the subjects are: sample:resnet-fashion" in err
