"""Model Explorer extension ``wb_explorer``: the ONNX adapter plus the workbench's display rules.

Model Explorer imports ``workbench.viewer.wb_explorer.main`` and registers every
class here that *directly* subclasses ``model_explorer.Adapter``. This adapter delegates to
``model_explorer_onnx`` and then, on the main graph:

- sets the graph id to the model file's basename (unique per model, so two panes never mix up);
- drops the graph-name top layer and turns torch.onnx ``name: class`` scopes into module paths;
- groups each op with the Q/DQ and Constant nodes that fold into it
  (:func:`workbench.core.graph_diff.fold_qdq`) and their initializers, in a layer ``<Op> <name>``
  (or the op's own one-op layer, such as torch's ``conv1``);
- hides Initializer nodes and shows the sidecar's pass notes as ``[workbench] ...`` attributes.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from typing import Any

import model_explorer
import onnx
from model_explorer import graph_builder as gb
from model_explorer_onnx.main import ONNXAdapter

from workbench.core.graph_diff import fold_qdq

SIDECAR = ".wbnotes.json"  # <model file>.wbnotes.json: {"notes": {node: [line]}, "namespaces": {node: ns}}
INIT_LABELS = ("Initializer", "InitializedInput")


class WorkbenchOnnxAdapter(model_explorer.Adapter):
    """ONNX, with Q/DQ folded into the op they feed and the workbench's pass notes."""

    metadata = model_explorer.AdapterMetadata(
        id="workbench_onnx", name="workbench ONNX adapter",
        description="ONNX with Q/DQ folded into their consumer and the workbench's pass notes",
        fileExts=["onnx"])

    def __init__(self) -> None:
        super().__init__()

    def convert(self, model_path: str, settings: dict[str, Any]) -> model_explorer.ModelExplorerGraphs:
        out = ONNXAdapter().convert(model_path, settings)
        graph = out["graphs"][0]
        side: dict[str, Any] = {}
        if os.path.exists(model_path + SIDECAR):
            with open(model_path + SIDECAR, encoding="utf-8") as f:
                side = json.load(f)
        proto = onnx.load(model_path, load_external_data=False)
        relayer(graph, side.get("namespaces", {}))
        group(graph, fold_qdq(proto.graph))
        add_notes(graph, side.get("notes", {}))
        graph.nodeLabelsToHide = ["Initializer"]
        graph.id = os.path.basename(model_path)
        return out


def clean_namespace(ns: str) -> str:
    """``: __main__.Net/layer1: torch...Sequential/layer1.0: Block/relu_4: aten.relu.default``
    (torch.onnx's scope metadata) -> ``layer1/0``; any other namespace is kept."""
    parts = [p for p in ns.split("/") if p]
    if not any(": " in p for p in parts):
        return "/".join(parts)
    keep = [p for p in parts if ": " not in p]
    mods = [p.split(": ", 1)[0] for p in parts if ": " in p][:-1]  # the last scope is the aten call
    return "/".join(keep + [m.rsplit(".", 1)[-1] for m in mods if m and not m.startswith("_")])


def relayer(graph: gb.Graph, shared: dict[str, str]) -> None:
    """Namespaces without the graph-name top layer (it would open as one collapsed box), torch
    scopes cleaned, and ``shared`` ones (from the baseline) for nodes that have none."""
    top = graph.id
    for n in graph.nodes:
        ns = n.namespace
        if ns == top or ns.startswith(top + "/"):
            ns = ns[len(top):].lstrip("/")
        if not ns and n.id in shared:
            ns = shared[n.id]
        n.namespace = clean_namespace(ns)
    attrs = graph.groupNodeAttributes or {}
    attrs.setdefault("", {}).update(attrs.pop(top, {}))
    graph.groupNodeAttributes = attrs


def group(graph: gb.Graph, into: dict[str, str]) -> dict[str, list[str]]:
    """Put each consumer in ``into``'s values, what folds into it and the initializers only
    they use into one layer: ``<Op> <name>``, or the consumer's own layer when nothing else is
    in it (torch's ``conv1`` module) or only Constants fold in; returns layer namespace -> member
    ids."""
    by_id = {n.id: n for n in graph.nodes}
    owner = {src: dst for src, dst in into.items() if src in by_id and dst in by_id}
    owner.update({dst: dst for dst in owner.values()})
    users: dict[str, set[str]] = defaultdict(set)
    for n in graph.nodes:
        for e in n.incomingEdges:
            users[e.sourceNodeId].add(owner.get(n.id, ""))
    for n in graph.nodes:
        if n.label in INIT_LABELS and len(users[n.id]) == 1 and "" not in users[n.id]:
            owner[n.id] = next(iter(users[n.id]))
    members: dict[str, list[str]] = defaultdict(list)
    for nid, dst in owner.items():
        members[dst].append(nid)
    ops = Counter(n.namespace for n in graph.nodes if n.label not in INIT_LABELS)
    parents = {n.namespace.rsplit("/", 1)[0] for n in graph.nodes if "/" in n.namespace}
    layers: dict[str, list[str]] = {}
    attrs = graph.groupNodeAttributes if graph.groupNodeAttributes is not None else {}
    for dst, ids in members.items():
        head = by_id[dst]
        ns = head.namespace
        if all(by_id[i].label in ("Constant", *INIT_LABELS) for i in ids if i != dst):
            for nid in ids:  # constants only: next to their op, no layer of their own
                by_id[nid].namespace = ns
            continue
        inside = sum(1 for i in ids if by_id[i].namespace == ns and by_id[i].label not in INIT_LABELS)
        if not ns or ops[ns] > inside or ns in parents:  # else the op's own layer (conv1) is reused
            name = f"{head.label.rsplit('::', 1)[-1]} {dst.rsplit('/', 1)[-1]}"
            ns = f"{ns}/{name}" if ns else name
        for nid in ids:
            by_id[nid].namespace = ns
        folded = Counter(by_id[i].label for i in ids if i != dst)
        attrs.setdefault(ns, {}).update({"[workbench] op": dst, "[workbench] folded":
                                         ", ".join(f"{k} x{v}" for k, v in sorted(folded.items()))})
        layers[ns] = ids
    graph.groupNodeAttributes = attrs
    return layers


def add_notes(graph: gb.Graph, notes: dict[str, Any]) -> None:
    """``int8: quantized`` -> attribute ``[workbench] int8`` = ``quantized``; lines without a
    ``pass:`` prefix go under ``[workbench] build``."""
    for n in graph.nodes:
        lines = notes.get(n.id)
        if not lines:
            continue
        by_key: dict[str, list[str]] = defaultdict(list)
        for line in [lines] if isinstance(lines, str) else lines:
            key, sep, text = str(line).partition(": ")
            if not sep or " " in key:
                key, text = "build", str(line)
            by_key[key].append(text)
        for key, texts in by_key.items():
            n.attrs.append(gb.KeyValue(key=f"[workbench] {key}", value="; ".join(texts)))
