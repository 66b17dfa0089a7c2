"""Engine bundles: export, load, run, reproduce; and every way a bundle can be broken."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_cnn
from workbench import list_engines, load_bundle, make_runner
from workbench.core.build import optimize
from workbench.core.bundle import BundleWarning
from workbench.core.export import MeasureSpec, export, reproduce
from workbench.core.session import Session
from workbench.errors import BundleError, UsageError

QUICK = MeasureSpec(iterations=10, warmup=2, samples=40)
ENGINES = {e.name: e for e in list_engines()}


def run(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def assert_user_error(p: subprocess.CompletedProcess, match: str) -> None:
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert match in lines[0], lines[0]
    assert "Traceback" not in p.stderr


def feeds(batch: int = 3, seed: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((batch, 3, 8, 8)).astype(np.float32)}


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import onnx

    p = tmp_path_factory.mktemp("src") / "tiny.onnx"
    onnx.save(tiny_cnn(), str(p))
    return p


@pytest.fixture(scope="module")
def bundle_dir(tiny_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("b") / "tiny-cpu"
    export(tiny_path, "fold,fuse", out, measure=QUICK)
    return out


@pytest.fixture
def copy(bundle_dir: Path, tmp_path: Path) -> Path:
    d = tmp_path / "copy"
    shutil.copytree(bundle_dir, d)
    return d


def test_cpu_round_trip_same_outputs_and_same_fingerprints(bundle_dir: Path, tiny_path: Path):
    b = load_bundle(bundle_dir)
    m = b.manifest
    assert set(m["files"]) == {"model.onnx", "engine.onnx", "README.md"}
    assert m["engine"]["artifact"] == "engine.onnx" and m["engine"]["verified"]["identical"] is True
    assert m["engine"]["run_options"]["optimization_level"] == "disabled"
    assert m["source"]["fingerprint"].startswith("sha256:") and m["source"]["path"] == str(tiny_path.resolve())
    assert [r["name"] for r in m["reports"]] == ["fold", "fuse"]
    assert "onnxruntime" in m["runtime"] and m["machine"]["cpu"]
    lat, q = m["metrics"]["latency"], m["metrics"]["quality"]
    assert lat["p50_ms"] > 0 and lat["conditions"]["iterations"] == 10
    assert lat["conditions"]["batch"] == 1 and lat["conditions"]["threads"] >= 1
    assert q["conditions"]["samples"] == 40 and q["top1"] is None  # random inputs: fidelity only
    assert q["cosine_to_source"] > 0.999999
    assert b.engine_model is not None and not b.warnings

    built = optimize(tiny_path, "fold,fuse")
    x = feeds()
    with make_runner(built.model, "cpu") as ref, b.runner() as r:
        want, got = ref.infer(x), r.infer(x)
    assert list(got) == ["y"] and np.array_equal(want["y"], got["y"])
    b.engine_model = None  # model.onnx with the recorded options: the same outputs too
    with b.runner() as r:
        assert np.array_equal(r.infer(x)["y"], want["y"])

    rep = reproduce(bundle_dir / "manifest.json")
    assert rep, rep.differences
    assert rep.compared["model.onnx"]["same"] and rep.compared["engine.onnx graph"]["same"]
    assert rep.compared["model fingerprint"]["bundle"] == built.model.fingerprint


def test_sample_bundle_records_accuracy_and_reproduces(tmp_path: Path):
    b = export("sample:resnet-fashion", "fuse", tmp_path / "fuse", measure=MeasureSpec(
        iterations=10, warmup=2, samples=200))
    q = b.manifest["metrics"]["quality"]
    assert q["conditions"]["labeled"] and q["conditions"]["samples"] == 200
    assert 0.9 < q["top1"] <= 1.0 and q["top1_agreement_with_source"] > 0.99
    assert b.manifest["source"]["source"] == "sample:resnet-fashion"
    assert b.model.source == "sample:resnet-fashion+" + b.manifest["recipe_label"]  # finds its test set
    rep = reproduce(b.path, out=tmp_path / "again")
    assert rep.identical, rep.differences
    again = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert again["files"]["model.onnx"] == b.manifest["files"]["model.onnx"]


def test_cli_export_bench_eval_build(tiny_path: Path, tmp_path: Path):
    out = tmp_path / "cli"
    p = run("export", str(tiny_path), "--passes", "fold", "--out", str(out), "--iterations", "5",
            "--samples", "20", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["bundle"] == str(out) and d["metrics"]["latency"]["conditions"]["iterations"] == 5
    p = run("bench", str(out), "--iterations", "5", "--warmup", "1", "--json")
    assert p.returncode == 0, p.stderr
    bench = json.loads(p.stdout)
    assert bench["settings"]["optimization_level"] == "disabled"  # the exported, optimized graph
    assert bench["threads"] == d["engine"]["options"]["threads"]
    p = run("eval", str(out), "--reference", str(tiny_path), "--limit", "20", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["cosine"] > 0.999999
    p = run("build", "--manifest", str(out / "manifest.json"))
    assert p.returncode == 0 and p.stdout.startswith("identical"), (p.stdout, p.stderr)
    p = run("export", str(tiny_path), "--passes", "fold", "--out", str(out), "--no-measure")
    assert_user_error(p, "already exists")


def test_calibrated_bundle_reproduces_from_another_folder(tiny_path: Path, tmp_path: Path):
    work = tmp_path / "work"
    work.mkdir()
    np.savez(work / "calib.npz", x=feeds(32, seed=2)["x"])
    p = run("export", str(tiny_path), "--passes", "int8", "--calib", "calib.npz", "--out", "b",
            "--no-measure", cwd=work)  # a relative calibration path
    assert p.returncode == 0, p.stderr
    m = json.loads((work / "b" / "manifest.json").read_text())
    assert m["calibration"]["source"] == str((work / "calib.npz").resolve()) and m["calibration"]["samples"] == 32
    p = run("build", "--manifest", str(work / "b" / "manifest.json"), "--json", cwd=tmp_path)
    assert p.returncode == 0, (p.stdout, p.stderr)
    d = json.loads(p.stdout)
    assert d["identical"] and d["compared"]["calibration hash"]["same"]
    np.savez(work / "calib.npz", x=feeds(32, seed=3)["x"])  # the calibration data changed since
    p = run("build", "--manifest", str(work / "b" / "manifest.json"), "--json", cwd=tmp_path)
    d = json.loads(p.stdout)
    assert p.returncode == 3 and "calibration hash" in d["differences"] and "model.onnx" in d["differences"]


def test_build_reports_how_a_rebuild_differs(copy: Path, tiny_path: Path, tmp_path: Path):
    import onnx

    other = tmp_path / "other.onnx"
    onnx.save(tiny_cnn(seed=1), str(other))  # the "source" changed since export
    p = run("build", "--manifest", str(copy / "manifest.json"), "--source", str(other), "--json")
    assert p.returncode == 3, p.stderr
    d = json.loads(p.stdout)
    assert d["identical"] is False
    assert {"source fingerprint", "model.onnx", "model fingerprint"} <= set(d["differences"])
    assert "recipe" not in d["differences"]


def _edit_manifest(d: Path, fn) -> None:
    m = json.loads((d / "manifest.json").read_text())
    fn(m)
    (d / "manifest.json").write_text(json.dumps(m))


def _rename_file(m: dict, old: str, new: str) -> None:
    m["files"][new] = m["files"].pop(old)
    if m["model_file"] == old:
        m["model_file"] = new


def _flip_byte(d: Path) -> None:
    data = bytearray((d / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / "model.onnx").write_bytes(bytes(data))


def _symlink_outside(d: Path) -> None:
    outside = d.parent / "outside.onnx"
    shutil.move(d / "model.onnx", outside)  # same bytes: only the link itself is wrong
    (d / "model.onnx").symlink_to(outside)


@pytest.mark.parametrize("breakage,match", [
    (_flip_byte, "model.onnx does not match its sha256"),
    (lambda d: (d / "engine.onnx").write_bytes((d / "engine.onnx").read_bytes()[:100]), "engine.onnx is 100 bytes"),
    (lambda d: (d / "model.onnx").unlink(), "model.onnx is missing"),
    (lambda d: (d / "manifest.json").write_text('{"format": "workbench-bundle", '), "is not valid JSON"),
    (lambda d: _edit_manifest(d, lambda m: _rename_file(m, "model.onnx", "../x.onnx")), "not a plain name"),
    (lambda d: _edit_manifest(d, lambda m: _rename_file(m, "model.onnx", "/etc/passwd")), "not a plain name"),
    (lambda d: _edit_manifest(d, lambda m: _rename_file(m, "model.onnx", "sub/model.onnx")), "not a plain name"),
    (lambda d: _edit_manifest(d, lambda m: m["engine"].update(artifact="other.onnx")), "file list does not hold"),
    (_symlink_outside, "outside the bundle"),
    (lambda d: _edit_manifest(d, lambda m: m["engine"]["run_options"].update(optimized_model_path="/tmp/x")),
     "option 'optimized_model_path', which a bundle may not set"),
])
def test_broken_bundles_are_refused(copy: Path, breakage, match):
    breakage(copy)
    assert_user_error(run("bench", str(copy), "--iterations", "2"), match)
    with pytest.raises(BundleError):
        load_bundle(copy)


def test_eval_and_build_refuse_a_tampered_bundle(copy: Path):
    _flip_byte(copy)
    assert_user_error(run("eval", str(copy), "--limit", "2"), "model.onnx does not match its sha256")
    assert_user_error(run("build", "--manifest", str(copy / "manifest.json")), "does not match its sha256")


def test_version_mismatch_warns_and_runs_model_onnx(copy: Path):
    _edit_manifest(copy, lambda m: m["runtime"].update(onnxruntime="0.0.1"))
    with pytest.warns(BundleWarning) as caught:
        b = load_bundle(copy)
    assert any("exported with onnxruntime 0.0.1" in str(w.message) for w in caught)
    assert b.engine_model is None and any("engine.onnx is not used" in w for w in b.warnings)
    x = feeds()
    with b.runner() as r, make_runner(optimize(b.manifest["source"]["path"], "fold,fuse").model) as ref:
        assert np.array_equal(r.infer(x)["y"], ref.infer(x)["y"])
    p = run("bench", str(copy), "--iterations", "2", "--warmup", "1")
    assert p.returncode == 0, p.stderr
    assert "warning: exported with onnxruntime 0.0.1" in p.stderr


def test_force_replaces_only_bundles(tiny_path: Path, tmp_path: Path):
    out = tmp_path / "b"
    first = export(tiny_path, "fold", out, measure=None)
    with pytest.raises(UsageError, match="already exists"):
        export(tiny_path, "fold,fuse", out, measure=None)
    second = export(tiny_path, "fold,fuse", out, measure=None, force=True)
    assert second.manifest["recipe_label"] != first.manifest["recipe_label"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temporary folders left behind
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # an ordinary folder, not mkdtemp's 0700
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not a workbench bundle"):
        export(tiny_path, "fold", mine, measure=None, force=True)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_session_export_writes_the_same_bundle(tiny_path: Path, tmp_path: Path):
    s = Session(tiny_path, latency_budget_s=0.1, quick_samples=20)
    rec = s.build("fold")
    model = s.export(rec, tmp_path / "panel")
    b = load_bundle(model.parent)
    assert b.manifest["session_row"]["label"] == rec.label
    assert b.manifest["engine"]["artifact"] == "engine.onnx" and b.manifest["metrics"]["latency"]["p50_ms"] > 0
    assert b.model.fingerprint == rec.model.fingerprint


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_interrupted_export_leaves_no_bundle(tmp_path: Path, sig):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "export", "sample:resnet-fashion",
                             "--passes", "fold", "--out", str(out), "--samples", "3000", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    partial = None
    while time.monotonic() < deadline and proc.poll() is None:  # mid-export: model.onnx is written
        partial = next((p for p in tmp_path.glob(".killed.*.partial") if (p / "model.onnx").exists()), None)
        if partial is not None:
            break
        time.sleep(0.005)
    assert partial is not None, proc.communicate()
    proc.send_signal(sig)
    proc.wait(30)
    assert proc.returncode != 0
    assert not out.exists()
    left = [p.name for p in tmp_path.iterdir()]
    if sig == signal.SIGTERM:
        assert left == []  # unwound: the temporary folder is removed
    else:
        assert all(n.startswith(".killed.") and n.endswith(".partial") for n in left)  # hidden, never the target


@pytest.mark.gpu
@pytest.mark.skipif(not ENGINES["ort-cuda"].available, reason=f"ort-cuda: {ENGINES['ort-cuda'].reason}")
def test_ort_cuda_round_trip(tiny_path: Path, tmp_path: Path):
    b = export(tiny_path, "fold", tmp_path / "cuda", device="cuda", measure=QUICK)
    eng = b.manifest["engine"]
    assert eng["name"] == "ort-cuda" and b.manifest["metrics"]["latency"]["p50_ms"] > 0
    built = optimize(tiny_path, "fold", device="cuda")
    x = feeds()
    with make_runner(built.model, "cuda") as ref, load_bundle(b.path).runner() as r:
        want, got = ref.infer(x), r.infer(x)
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-5)
    rep = reproduce(b.path)
    assert rep.compared["model.onnx"]["same"], rep.differences
    assert rep.identical, rep.differences


def test_bundles_hold_no_code(bundle_dir: Path):
    for p in bundle_dir.iterdir():
        assert p.suffix in (".onnx", ".json", ".md", ".plan", ".cache"), p
    assert os.path.getsize(bundle_dir / "manifest.json") < 1 << 20
