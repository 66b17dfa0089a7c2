"""Package boundaries and the bundled sample's files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx

from conftest import REPO, SAMPLE


def test_core_imports_without_ui_libraries():
    """Every core module imports with ipywidgets, plotly and IPython made unimportable."""
    code = (
        "import sys, pkgutil, importlib\n"
        "for m in ('ipywidgets', 'plotly', 'IPython', 'torch', 'tensorrt'): sys.modules[m] = None\n"
        "import workbench, workbench.core\n"
        "names = [m.name for m in pkgutil.walk_packages(workbench.core.__path__, 'workbench.core.')]\n"
        "[importlib.import_module(n) for n in names]\n"
        "import workbench.cli\n"
        "print(len(names))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) >= 10


def test_sample_files_meet_their_targets():
    assert SAMPLE.stat().st_size <= 25 * 10**6
    m = onnx.load(str(SAMPLE))
    ops = {n.op_type for n in m.graph.node}
    assert {"Conv", "BatchNormalization", "Relu", "Add", "Gemm"} <= ops
    meta = {p.key: p.value for p in m.metadata_props}
    assert json.loads(meta["workbench.preprocessing"])["mean"]
    assert len(json.loads(meta["workbench.labels"])) == 10
    with np.load(REPO / "sample_models" / "fashion_mnist_test.npz") as z:
        assert z["images"].shape == (10_000, 1, 28, 28) and z["images"].dtype == np.uint8
        assert np.bincount(z["labels"]).tolist() == [1000] * 10
    with np.load(REPO / "sample_models" / "fashion_mnist_calib.npz") as z:
        assert len(z["images"]) >= 1000
    log = json.loads((REPO / "sample_models" / "train_log.json").read_text())
    assert log["ran_on"]["device"] and log["ran_on"]["torch"]
