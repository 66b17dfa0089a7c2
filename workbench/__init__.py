"""workbench: build, measure and compare optimized inference engines for ONNX models.

The core API (no UI imported)::

    import workbench as wb
    model = wb.load_model("sample:resnet-fashion")
    print(wb.summarize(model).flops)
    print(wb.bench(model, batch=1, threads=2).latency.p50_ms)
    print(wb.evaluate(model).accuracy.top1)
    print(wb.profile(model, threads=2).by_op_type()[0])       # where the time goes
    print(wb.sweep(model, batches=(1, 8), concurrency=(1, 2)).peak)  # what throughput it sustains
"""

import os as _os

# ONNX Runtime 1.32 writes a device id and a telemetry database to ~/.cache/Microsoft/ on first
# session unless this is set before it loads: the workbench writes only where the user says.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from .core.bundle import Bundle, load_bundle
from .core.engines.registry import list_engines
from .core.evaluation.data import Dataset, Preprocessing, load_dataset, random_dataset
from .core.evaluation.run import BenchResult, EvalResult, bench, evaluate, make_runner
from .core.evaluation.sweep import SweepResult, sweep
from .core.machine import machine_info
from .core.model import Model, load_model
from .core.profiling.compare import ProfileComparison, profile_pair
from .core.profiling.layers import LayerProfile
from .core.profiling.run import profile
from .core.samples import SAMPLES, get_sample
from .core.summary import ModelSummary, summarize
from .errors import WorkbenchError

__version__ = "0.1.0"

__all__ = [
    "Model", "load_model", "summarize", "ModelSummary", "SAMPLES", "get_sample",
    "list_engines", "make_runner", "bench", "evaluate", "BenchResult", "EvalResult",
    "Dataset", "Preprocessing", "load_dataset", "random_dataset", "machine_info",
    "Bundle", "load_bundle", "WorkbenchError", "__version__",
    "profile", "profile_pair", "LayerProfile", "ProfileComparison", "sweep", "SweepResult",
]
