"""ONNX Runtime's profiler (``SessionOptions.enable_profiling``), on the CPU and CUDA providers.

ONNX Runtime writes a Chrome-trace JSON: one ``Session/model_run`` event per run and one
``Node/<name>_kernel_time`` event per node and run, in microseconds. The names are those of the
graph ONNX Runtime optimized, not the model's: ``FusedConv`` keeps the Conv's name and covers the
BatchNormalization and Relu it absorbed; the NCHWc transformer names its convolution after the
tensor it writes (``relu_nchwc``) and inserts ``ReorderInput``/``ReorderOutput``. So the collector
asks ONNX Runtime for its optimized graph too (``optimized_model_filepath``) and maps each of its
nodes back to the model's by data flow: the model nodes between the tensors it reads and the tensors
it writes that both graphs share (:func:`map_optimized`).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..model import Model
from .layers import Collected, NodeTime, model_node_names, node_stats, run_schedule

__all__ = ["collect_ort", "map_optimized", "parse_trace", "INSERTED_OPS"]

# Nodes ONNX Runtime adds that compute nothing of the model: layout reorders and device copies.
INSERTED_OPS = {
    "ReorderInput": "layout reorder NCHW -> NCHWc",
    "ReorderOutput": "layout reorder NCHWc -> NCHW",
    "MemcpyToHost": "copy GPU -> CPU",
    "MemcpyFromHost": "copy CPU -> GPU",
}
_TOKEN = re.compile(r"(_token_\d+)+$")  # ORT's layout transformer: "<node>_token_<k>"


def parse_trace(events: list[dict[str, Any]], keep: int | Sequence[bool]) -> tuple[
        dict[str, list[float]], list[float], dict[str, dict[str, Any]], list[float]]:
    """Per node name, its time in each kept run (ms); each kept run's total (``model_run``, ms); per
    node the event's args (op_name, provider); and each kept run's sum of node times (ms).

    ``keep``: the last N runs, or one flag per run for the last ``len(keep)`` runs (earlier runs,
    e.g. the one ``prepare`` makes, are dropped)."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    flags = [True] * keep if isinstance(keep, int) else list(keep)
    tail = runs[-len(flags):] if flags else []
    kept = [r for r, f in zip(tail, flags[-len(tail):] if tail else []) if f]
    per_node: dict[str, list[float]] = defaultdict(list)
    args: dict[str, dict[str, Any]] = {}
    spans = [(r["ts"], r["ts"] + r["dur"]) for r in kept]
    nodes = sorted((e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")),
                   key=lambda e: e["ts"])
    sums = [0.0] * len(spans)
    j = 0
    for e in nodes:
        while j < len(spans) and e["ts"] > spans[j][1]:
            j += 1
        if j == len(spans):
            break
        if e["ts"] < spans[j][0]:
            continue  # a warm-up run's node
        name = e["name"][: -len("_kernel_time")]
        per_node[name].append(e["dur"] / 1e3)
        sums[j] += e["dur"] / 1e3
        args[name] = e.get("args", {})
    return dict(per_node), [r["dur"] / 1e3 for r in kept], args, sums


def _tensors(g: onnx.GraphProto) -> set[str]:
    return ({i.name for i in g.input} | {t.name for t in g.initializer}
            | {o for n in g.node for o in n.output if o})


def map_optimized(original: onnx.GraphProto, optimized: onnx.GraphProto) -> dict[str, tuple[str, ...]]:
    """Optimized node name -> the original node names it computes (``()`` for inserted nodes).

    A node's output anchors are its outputs the original graph also has (through any reorders that
    follow it, or named after them: ``relu_nchwc`` writes ``relu``); it covers the original nodes
    found walking back from them, stopping at graph inputs, initializers and tensors another
    optimized node writes. Original nodes nobody covers were folded or removed at load.
    """
    orig_tensors = _tensors(original)
    orig_names = {n.name for n in original.node}
    producer0 = {o: n for n in original.node for o in n.output if o}
    outputs0 = {n.name: [o for o in n.output if o] for n in original.node}
    consumers1: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in optimized.node:
        for i in n.input:
            consumers1[i].append(n)

    def forward(t: str, seen: set[str]) -> list[str]:  # through inserted nodes to original tensors
        if t in orig_tensors:
            return [t]
        if t in seen:
            return []
        seen.add(t)
        out: list[str] = []
        for c in consumers1.get(t, []):
            if c.op_type in INSERTED_OPS:
                for o in c.output:
                    out += forward(o, seen)
        return out

    anchors: dict[str, list[str]] = {}
    for n in optimized.node:
        if n.op_type in INSERTED_OPS:
            continue
        outs = [a for o in n.output if o for a in forward(o, set())]
        if not outs:  # renamed tensors (NHWC, NCHWc chains): the node's name says where it came from
            base = _TOKEN.sub("", n.name)
            if base in orig_names:
                outs = list(outputs0[base])
            elif base.endswith("_nchwc") and base[: -len("_nchwc")] in orig_tensors:
                outs = [base[: -len("_nchwc")]]
        anchors[n.name] = list(dict.fromkeys(outs))
    written = {t: name for name, ts in anchors.items() for t in ts}
    stop = {i.name for i in original.input} | {t.name for t in original.initializer}
    out: dict[str, tuple[str, ...]] = {}
    claimed: set[str] = set()
    for n in optimized.node:
        if n.op_type in INSERTED_OPS:
            out[n.name] = ()
            continue
        covered: list[str] = []
        todo = list(anchors.get(n.name, []))
        seen: set[str] = set()
        while todo:
            t = todo.pop()
            if t in seen or t in stop or (written.get(t, n.name) != n.name):
                continue
            seen.add(t)
            p = producer0.get(t)
            if p is None or p.name in claimed:
                continue
            claimed.add(p.name)
            covered.append(p.name)
            todo += [i for i in p.input if i]
        order = {m.name: k for k, m in enumerate(original.node)}
        out[n.name] = tuple(sorted(covered, key=order.get))
    return out


def _kernel(node: onnx.NodeProto | None) -> str:
    if node is None:
        return ""
    dom = f"{node.domain}." if node.domain else ""
    act = next((a.s.decode() for a in node.attribute if a.name == "activation" and a.s), "")
    return f"{dom}{node.op_type}" + (f" ({act})" if act else "")


def collect_ort(model: Model, feeds: dict[str, np.ndarray], *, runs: int, warmup: int,
                device: str = "cpu", options: dict[str, Any] | None = None,
                between: Callable[[], None] | None = None) -> Collected:
    """Profile ``model`` on ONNX Runtime (``device`` ``cpu`` or ``cuda[:N]``): ``warmup`` + ``runs``
    runs in a session of its own with the profiler on; node times are medians over ``runs``.
    ``between`` is called after each kept run (the caller's unprofiled timing, interleaved)."""
    from ..evaluation.run import make_runner  # noqa: PLC0415

    opts = dict(options or {})
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wb-profile-") as tmp:
        opt_path = Path(tmp) / "optimized.onnx"
        extra: dict[str, Any] = {"profile_prefix": str(Path(tmp) / "ort"), "optimized_model_path": str(opt_path)}
        if device.startswith("cuda"):
            extra["cuda_graph"] = False  # a replayed graph has no per-node events
            notes += _cuda_notes(opts)
        runner = make_runner(model, device, **{**opts, **extra})
        with runner:
            fn = runner.prepare(feeds)  # (it ran the model too: only the schedule's runs are read)
            flags = run_schedule(fn, runs=runs, warmup=warmup, between=between)
            trace = runner.session.end_profiling()
            settings = dict(runner.settings)
        events = json.loads(Path(trace).read_text())
        per_node, totals, args, sums = parse_trace(events, flags)
        optimized = _load_optimized(opt_path, notes)
    for k in ("profile_prefix", "optimized_model_path"):
        settings.pop(k, None)
    nodes = _nodes(model.proto, optimized, per_node, args, notes)
    return Collected(nodes, float(np.median(totals)) if totals else float("nan"), settings, notes,
                     float(np.median(sums)) if sums else float("nan"))


def _cuda_notes(opts: dict[str, Any]) -> list[str]:
    """What the node times mean on CUDA. Seen on an H200 (ResNet-50 FP16, ONNX Runtime 1.31): the
    node times summed to about 3 ms at batch 1 and at batch 32 alike, against p50s of 0.59 ms and
    2.9 ms with a CUDA graph (1.75 and 3.2 ms without): they are launch costs, not GPU time."""
    if os.environ.get("CUDA_LAUNCH_BLOCKING") == "1":
        notes = ["CUDA: CUDA_LAUNCH_BLOCKING=1, so every kernel launch waited for its kernel: per-node "
                 "times hold the GPU time plus one synchronization each, and the run is slower than usual"]
    else:
        notes = ["CUDA: per-node times are the host-side kernel times ONNX Runtime records (it launches "
                 "asynchronously): they measure launch cost, not GPU time; the whole-run time is measured "
                 "with a sync. For node times that hold the GPU time, set CUDA_LAUNCH_BLOCKING=1 before "
                 "CUDA starts (a new process)"]
    if opts.get("cuda_graph") is True:
        notes.append("CUDA: the profiled session runs without a CUDA graph (a replayed graph has no per-node "
                     "events) while the latency it is checked against replays one (cuda_graph=True); "
                     "profile with cuda_graph=False to compare like with like")
    else:
        notes.append("CUDA: profiled and timed runs both run without a CUDA graph (a replayed graph has no "
                     "per-node events); with one, ONNX Runtime runs this model faster than timed here")
    return notes


def _load_optimized(path: Path, notes: list[str]) -> onnx.GraphProto | None:
    try:
        return onnx.load(str(path), load_external_data=False).graph
    except Exception as e:  # noqa: BLE001 - no optimized graph: map by name alone, and say so
        notes.append(f"ONNX Runtime's optimized graph could not be read ({type(e).__name__}); "
                     "nodes are mapped by name only")
        return None


def _nodes(proto: onnx.ModelProto, optimized: onnx.GraphProto | None, per_node: dict[str, list[float]],
           args: dict[str, dict[str, Any]], notes: list[str]) -> list[NodeTime]:
    main = {n.name for n in proto.graph.node}
    every = set(model_node_names(proto))
    covers = map_optimized(proto.graph, optimized) if optimized is not None else {}
    by_name = {n.name: n for n in optimized.node} if optimized is not None else {}
    inner = [n for n in per_node if n not in by_name and n not in main and n in every]
    if inner:  # an If/Loop node's own time includes its body's nodes: count them once
        for n in inner:
            per_node.pop(n)
        notes.append(f"{len(inner)} nodes inside If/Loop/Scan bodies are counted in their parent node")
    order = {n: k for k, n in enumerate(by_name)} if by_name else {}
    op_of = {n.name: n.op_type for n in proto.graph.node}
    out = []
    for name in sorted(per_node, key=lambda n: order.get(n, len(order))):
        med, p90 = node_stats(per_node[name])
        node = by_name.get(name)
        a = args.get(name, {})
        op = (node.op_type if node is not None else a.get("op_name", "?"))
        cov = covers.get(name, (name,) if name in every else ())
        if op in INSERTED_OPS:
            origin, note = "inserted", INSERTED_OPS[op]
        elif op == "Transpose" and not cov:  # the NHWC layout transformer's (QLinearConv, CUDA NHWC)
            origin, note = "inserted", "layout transpose NCHW <-> NHWC"
        else:
            real = [c for c in cov if op_of.get(c) != "Constant"]  # folded into initializers
            origin = "model" if len(real) <= 1 and cov else "fused" if cov else "unmapped"
            note = "" if cov else "no model node found for it"
        shapes = a.get("output_type_shape") or []
        prec = next(iter(shapes[0]), "") if shapes and isinstance(shapes[0], dict) else ""
        provider = str(a.get("provider", "")).replace("ExecutionProvider", "")
        kernel = _kernel(node) + (f" on {provider}" if provider and provider != "CPU" else "")
        out.append(NodeTime(name, op, med, p90, cov, origin, kernel, prec, note))
    return out
