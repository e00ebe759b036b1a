"""A model's graph as plain data: nodes, edges, lanes, parameters, FLOPs and output shapes.

The graph viewer draws it, reports and the CLI print it.  It is built from the model itself,
never hand-drawn per model:

* **structure**: a model with ``layers_info()`` (the YOLO builder) gives one node per config
  layer, its lane (backbone / neck / head / aux) and its inputs; any other model is traced with
  ``torch.fx``, its direct children being the nodes; code ``torch.fx`` cannot trace is recorded
  while it runs on the example input (the path that input takes); if even that fails, the
  children are shown in order and the graph says ``approximate``.  It is the inference graph
  (eval mode);
* **numbers**: one traced run (on the ``meta`` device by default: shapes and FLOPs without
  computing anything, so YOLOv7-E6E at 1280 px takes well under a second) records each
  module's output shape, and ``torch.utils.flop_counter`` its FLOPs (a multiply-add counts 2);
* **insides**: each block node carries the graph of its own children, ``depth`` levels down;
* **folding**: a chain of identical blocks (same type, parameters and shapes) becomes one node
  with ``repeat`` = N.

Every node has a position (``x``, ``y``: top-to-bottom data flow; lanes side by side), so a
viewer only draws.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn

from .errors import ConfigError

NODE_W, NODE_H, GAP_X, GAP_Y, LANE_GAP = 150.0, 46.0, 24.0, 30.0, 60.0
LANE_ORDER = ("backbone", "neck", "aux", "head")


@dataclass
class Node:
    id: str
    type: str                       # block / module class or function name
    name: str = ""                  # module path inside its parent ("layers.3", "layer1") or op name
    kind: str = "module"            # module | function | input | output
    lane: str | None = None
    params: int = 0
    flops: int = 0
    shape: Any = None               # output shape (batch 1), a list of shapes for several outputs
    args: dict[str, Any] = field(default_factory=dict)
    repeat: int = 1                 # > 1: a chain of identical blocks folded into this node
    members: list[str] = field(default_factory=list)
    children: Graph | None = None   # the block's inside
    x: float = 0.0
    y: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.type} ×{self.repeat}" if self.repeat > 1 else self.type


@dataclass
class Edge:
    src: str
    dst: str
    shape: Any = None


@dataclass
class Graph:
    name: str
    nodes: list[Node]
    edges: list[Edge]
    lanes: list[str] = field(default_factory=list)
    input_shape: list[int] | None = None
    approximate: bool = False
    width: float = 0.0
    height: float = 0.0

    @property
    def params(self) -> int:
        return sum(n.params for n in self.nodes)

    @property
    def flops(self) -> int:
        return sum(n.flops for n in self.nodes)

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        from .errors import UnknownNameError

        raise UnknownNameError("graph node", node_id, [n.id for n in self.nodes])

    def find(self, path: list[str] | str) -> Node:
        """A node by its id path through nested insides, e.g. ``["layer1", "0", "conv1"]`` or "layer1/0"."""
        parts = path.split("/") if isinstance(path, str) else list(path)
        graph, node = self, None
        for i, part in enumerate(parts):
            if graph is None:
                raise ConfigError("graph", "/".join(parts), f"{parts[i - 1]!r} has no inside")
            node = graph.node(part)
            graph = node.children
        if node is None:
            raise ConfigError("graph", "path", "empty node path")
        return node

    def to_dict(self) -> dict[str, Any]:
        def node_dict(n: Node) -> dict[str, Any]:
            d = {k: v for k, v in asdict(n).items() if k != "children"}
            d["label"] = n.label
            d["children"] = n.children.to_dict() if n.children is not None else None
            return d

        return {"name": self.name, "lanes": list(self.lanes), "input_shape": self.input_shape,
                "approximate": self.approximate, "params": self.params, "flops": self.flops,
                "width": self.width, "height": self.height,
                "nodes": [node_dict(n) for n in self.nodes], "edges": [asdict(e) for e in self.edges]}

    def summary(self) -> str:
        """A text table of the top-level nodes (the CLI and plain reports print this)."""
        rows = [("node", "lane", "type", "output", "params", "FLOPs")]
        for n in self.nodes:
            rows.append((n.id, n.lane or "", n.label, _shape_text(n.shape), f"{n.params:,}", f"{n.flops:,}"))
        rows.append(("total", "", "", "", f"{self.params:,}", f"{self.flops:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows)


def _shape_text(shape: Any) -> str:
    if shape is None:
        return ""
    if shape and isinstance(shape[0], (list, tuple)):
        return ", ".join(_shape_text(s) for s in shape)
    return "×".join(str(v) for v in shape)


def _shapes(value: Any) -> Any:
    """Shapes of a tensor or of nested lists / tuples of tensors (None for anything else)."""
    if isinstance(value, torch.Tensor):
        return list(value.shape)
    if isinstance(value, (list, tuple)):
        inner = [_shapes(v) for v in value]
        inner = [s for s in inner if s is not None]
        return inner or None
    return None


# --- the traced run ------------------------------------------------------------------------------------
class _Run:
    """One forward pass with hooks: output shape, FLOPs and the inputs of every module."""

    def __init__(self, model: nn.Module, example: torch.Tensor, keep_inputs_depth: int) -> None:
        from torch.utils.flop_counter import FlopCounterMode

        self.outputs: dict[str, Any] = {}
        self.inputs: dict[str, tuple] = {}
        handles = []
        for fqn, module in model.named_modules():
            keep = fqn.count(".") + (1 if fqn else 0) <= keep_inputs_depth + 2
            handles.append(module.register_forward_hook(self._hook(fqn, keep)))
        try:
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                model(example)
        finally:
            for h in handles:
                h.remove()
        prefix = type(model).__name__
        self.flops: dict[str, int] = {}
        for key, ops in counter.get_flop_counts().items():
            if key == "Global":
                continue
            fqn = key[len(prefix) + 1:] if key.startswith(prefix + ".") else ("" if key == prefix else None)
            if fqn is not None:
                self.flops[fqn] = int(sum(ops.values()))

    def _hook(self, fqn: str, keep: bool):
        def hook(module, args, output):
            self.outputs[fqn] = _shapes(output)
            if keep:
                self.inputs[fqn] = args
        return hook


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


# --- one level of structure ------------------------------------------------------------------------------
def _fn_name(target: Any) -> str:
    if isinstance(target, str):
        return target
    if target is operator.getitem:
        return "getitem"
    return getattr(target, "__name__", str(target)).strip("_") or str(target)


def _fx_level(module: nn.Module, fqn: str, run: _Run, depth: int) -> Graph:
    """The graph of ``module``'s direct children (and the functions between them) by torch.fx."""
    import torch.fx as fx

    class LevelTracer(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return True

    args = run.inputs.get(fqn)
    graph_fx = LevelTracer().trace(module)
    gm = fx.GraphModule(module, graph_fx)
    values: dict[str, Any] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            values[n.name] = _shapes(out)
            return out

    if args is not None:
        with torch.no_grad():
            Recorder(gm).run(*args)
    nodes: list[Node] = []
    edges: list[Edge] = []
    kept: set[str] = set()
    for n in graph_fx.nodes:
        if n.op == "get_attr":
            continue
        shape = values.get(n.name)
        if n.op in ("call_function", "call_method") and shape is None and args is not None:
            continue  # sizes, flags: no tensor flows through
        if n.op == "placeholder":
            node = Node(n.name, "input", n.name, kind="input", shape=shape)
        elif n.op == "output":
            node = Node("output", "output", "output", kind="output", shape=shape)
        elif n.op == "call_module":
            sub = module.get_submodule(n.target)
            node = Node(n.name, type(sub).__name__, n.target, params=_params(sub),
                        flops=run.flops.get(_join(fqn, n.target), 0),
                        shape=shape if shape is not None else run.outputs.get(_join(fqn, n.target)))
            if depth > 0 and any(True for _ in sub.children()):
                node.children = _level(sub, _join(fqn, n.target), run, depth - 1)
        else:
            node = Node(n.name, _fn_name(n.target), _fn_name(n.target), kind="function", shape=shape)
        nodes.append(node)
        kept.add(n.name)
        for src in n.all_input_nodes:
            if src.name in kept:
                edges.append(Edge(src.name, node.id, values.get(src.name)))
    # nodes that fed nothing kept (e.g. a dropped size()) still show; edges into "output" use its id
    return Graph(type(module).__name__, nodes, edges)


def _flat_tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _flat_tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _flat_tensors(item)]
    return []


def _run_level(module: nn.Module, fqn: str, run: _Run, depth: int) -> Graph:
    """The graph of one forward call, recorded while it runs (for code torch.fx cannot trace,
    e.g. ``list(x.chunk(2, 1))``): every direct child call and every torch function called at
    this level is a node, edges follow the tensors.  Ops whose result never reaches the output
    (the test of an ``if``) are dropped; branches not taken on the example input are absent."""
    from torch.overrides import TorchFunctionMode

    args = run.inputs[fqn]
    nodes: dict[str, Node] = {}
    edges: list[Edge] = []
    producer: dict[int, str] = {}
    alive: list[Any] = []  # keeps traced tensors alive so their id() stays unique
    counts: dict[str, int] = {}
    inside = [0]

    def new_id(name: str) -> str:
        counts[name] = counts.get(name, 0) + 1
        return name if counts[name] == 1 else f"{name}_{counts[name] - 1}"

    def link(obj: Any, dst: str) -> None:
        for t in _flat_tensors(obj):
            src = producer.get(id(t))
            if src is not None and src != dst and not any(e.src == src and e.dst == dst for e in edges):
                edges.append(Edge(src, dst, list(t.shape)))

    def produce(obj: Any, node_id: str) -> None:
        alive.append(obj)
        for t in _flat_tensors(obj):
            producer[id(t)] = node_id

    nodes["input"] = Node("input", "input", "input", kind="input", shape=_shapes(args[0] if len(args) == 1 else args))
    produce(args, "input")

    class Level(TorchFunctionMode):
        def __torch_function__(self, func, types, f_args=(), kwargs=None):
            out = func(*f_args, **(kwargs or {}))
            if inside[0] == 0 and _flat_tensors(out):
                name = _fn_name(getattr(func, "__name__", func))
                node = Node(new_id(name), name, name, kind="function", shape=_shapes(out))
                nodes[node.id] = node
                link((f_args, kwargs), node.id)
                produce(out, node.id)
            return out

    def before(child_name: str):
        def hook(mod, h_args):
            if inside[0] == 0:
                node = Node(new_id(child_name), type(mod).__name__, child_name, params=_params(mod),
                            flops=run.flops.get(_join(fqn, child_name), 0))
                if depth > 0 and any(True for _ in mod.children()):
                    node.children = _level(mod, _join(fqn, child_name), run, depth - 1)
                nodes[node.id] = node
                link(h_args, node.id)
                mod._tango_graph_node = node.id
            inside[0] += 1
        return hook

    def after(mod, h_args, out):
        inside[0] -= 1
        if inside[0] == 0:
            nodes[mod._tango_graph_node].shape = _shapes(out)
            produce(out, mod._tango_graph_node)

    handles = []
    for name, child in module.named_children():
        handles += [child.register_forward_pre_hook(before(name)), child.register_forward_hook(after)]
    try:
        with torch.no_grad(), Level():
            out = module(*args)
    finally:
        for h in handles:
            h.remove()
        for child in module.children():
            child.__dict__.pop("_tango_graph_node", None)
    nodes["output"] = Node("output", "output", "output", kind="output", shape=_shapes(out))
    link(out, "output")
    # keep what feeds the output
    feeds: dict[str, list[str]] = {}
    for e in edges:
        feeds.setdefault(e.dst, []).append(e.src)
    keep, todo = set(), ["output"]
    while todo:
        n = todo.pop()
        if n not in keep:
            keep.add(n)
            todo += feeds.get(n, [])
    keep.add("input")
    return Graph(type(module).__name__, [n for n in nodes.values() if n.id in keep],
                 [e for e in edges if e.src in keep and e.dst in keep])


def _chain_level(module: nn.Module, fqn: str, run: _Run, depth: int) -> Graph:
    """Last resort (torch.fx cannot trace it and it never ran): the children in the order they
    were defined, one after the other."""
    called = [name for name, _ in module.named_children()]
    nodes = [Node("input", "input", kind="input")]
    for name in called:
        sub = module.get_submodule(name)
        node = Node(name, type(sub).__name__, name, params=_params(sub), flops=run.flops.get(_join(fqn, name), 0),
                    shape=run.outputs.get(_join(fqn, name)))
        if depth > 0 and any(True for _ in sub.children()):
            node.children = _level(sub, _join(fqn, name), run, depth - 1)
        nodes.append(node)
    nodes.append(Node("output", "output", kind="output", shape=run.outputs.get(fqn)))
    edges = [Edge(a.id, b.id, a.shape) for a, b in zip(nodes, nodes[1:], strict=False)]
    return Graph(type(module).__name__, nodes, edges, approximate=True)


def _level(module: nn.Module, fqn: str, run: _Run, depth: int) -> Graph:
    try:
        return _fx_level(module, fqn, run, depth)
    except Exception:  # noqa: BLE001 - torch.fx cannot trace it: record a run instead
        pass
    if fqn in run.inputs:
        try:
            return _run_level(module, fqn, run, depth)
        except Exception:  # noqa: BLE001 - the last resort below says it is approximate
            pass
    return _chain_level(module, fqn, run, depth)


def _config_level(model: nn.Module, run: _Run, depth: int, input_shape: list[int]) -> Graph:
    """One node per config layer (``layers_info()``), lanes from the config's parts."""
    infos = model.layers_info()
    layers = model.layers
    nodes = [Node("input", "input", "image", kind="input", lane=infos[0]["part"], shape=input_shape)]
    edges: list[Edge] = []
    for info in infos:
        i = int(info["index"])
        fqn = f"layers.{i}"
        sub = layers[i]
        node = Node(str(i), str(info["block"]), fqn, lane=str(info["part"]), params=_params(sub),
                    flops=run.flops.get(fqn, 0), shape=run.outputs.get(fqn),
                    args={k: v for k, v in dict(info.get("args") or {}).items()})
        if "stride" in info:
            node.args["stride"] = info["stride"]
        if depth > 0 and any(True for _ in sub.children()):
            node.children = _level(sub, fqn, run, depth - 1)
        nodes.append(node)
        for j in info["inputs"]:
            src = "input" if j < 0 else str(j)
            edges.append(Edge(src, node.id, input_shape if j < 0 else run.outputs.get(f"layers.{j}")))
    parts = list(dict.fromkeys(str(info["part"]) for info in infos))
    lanes = [p for p in LANE_ORDER if p in parts] + [p for p in parts if p not in LANE_ORDER]
    return Graph(getattr(model, "cfg", {}).get("name", type(model).__name__), nodes, edges, lanes=lanes)


# --- folding and layout -------------------------------------------------------------------------------
def _signature(node: Node) -> tuple:
    return (node.kind, node.type, node.params, node.flops, str(node.shape), repr(sorted(node.args.items())))


def fold_repeats(graph: Graph) -> Graph:
    """Fold chains of identical nodes (one edge in, one edge out, same signature) into ``×N``."""
    preds: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    succs: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    for e in graph.edges:
        preds[e.dst].append(e.src)
        succs[e.src].append(e.dst)
    by_id = {n.id: n for n in graph.nodes}
    absorbed: dict[str, str] = {}
    for n in graph.nodes:
        if n.id in absorbed or n.kind != "module":
            continue
        cur = n
        while len(succs[cur.id]) == 1:
            nxt = by_id[succs[cur.id][0]]
            if preds[nxt.id] != [cur.id] or _signature(nxt) != _signature(n) or nxt.lane != n.lane:
                break
            absorbed[nxt.id] = n.id
            n.repeat += 1
            n.members.append(nxt.id)
            cur = nxt
        if n.repeat > 1:
            n.members.insert(0, n.id)
            last = by_id[n.members[-1]]
            n.params = sum(by_id[m].params for m in n.members)
            n.flops = sum(by_id[m].flops for m in n.members)
            n.shape = last.shape
    if not absorbed:
        return graph
    edges, seen = [], set()
    for e in graph.edges:
        src, dst = absorbed.get(e.src, e.src), absorbed.get(e.dst, e.dst)
        if src == dst or (src, dst) in seen:
            continue
        seen.add((src, dst))
        edges.append(Edge(src, dst, e.shape if e.src not in absorbed.values() else by_id[e.src].shape))
    graph.nodes = [n for n in graph.nodes if n.id not in absorbed]
    graph.edges = edges
    return graph


def layout(graph: Graph) -> Graph:
    """Positions: rows by longest path from the inputs (data flows down), lanes side by side."""
    rank: dict[str, int] = {}
    preds: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    for e in graph.edges:
        preds[e.dst].append(e.src)
    succs: dict[str, list[str]] = {n.id: [] for n in graph.nodes}
    for e in graph.edges:
        succs[e.src].append(e.dst)
    for n in graph.nodes:  # nodes are in execution (topological) order
        rank[n.id] = max((rank[p] + 1 for p in preds[n.id] if p in rank), default=0)
    # pull each node down to just above its first consumer, so a side branch (a 1x1 conv on an
    # early backbone output) sits beside where it is used instead of far above it
    for n in reversed(graph.nodes):
        if succs[n.id] and n.kind != "input":
            rank[n.id] = max(rank[n.id], min(rank[s] for s in succs[n.id]) - 1)
    lanes = graph.lanes or [None]
    slots: dict[tuple[Any, int], int] = {}
    lane_cols: dict[Any, int] = {lane: 1 for lane in lanes}
    for n in graph.nodes:
        key = (n.lane if graph.lanes else None, rank[n.id])
        slot = slots.get(key, 0)
        slots[key] = slot + 1
        lane_cols[key[0]] = max(lane_cols.get(key[0], 1), slot + 1)
    offsets, x = {}, 0.0
    for lane in lanes:
        offsets[lane] = x
        x += lane_cols[lane] * (NODE_W + GAP_X) + (LANE_GAP if graph.lanes else 0)
    used: dict[tuple[Any, int], int] = {}
    for n in graph.nodes:
        key = (n.lane if graph.lanes else None, rank[n.id])
        slot = used.get(key, 0)
        used[key] = slot + 1
        n.x = offsets.get(key[0], 0.0) + slot * (NODE_W + GAP_X)
        n.y = rank[n.id] * (NODE_H + GAP_Y)
    graph.width = max((n.x + NODE_W for n in graph.nodes), default=0.0)
    graph.height = max((n.y + NODE_H for n in graph.nodes), default=0.0)
    for n in graph.nodes:
        if n.children is not None:
            layout(n.children)
    return graph


def _fold_all(graph: Graph) -> None:
    fold_repeats(graph)
    for n in graph.nodes:
        if n.children is not None:
            _fold_all(n.children)


# --- entry point -----------------------------------------------------------------------------------------
def model_graph(model: nn.Module | str, input_size: int | tuple[int, int] | None = None,
                in_channels: int | None = None, depth: int = 2, fold: bool = True,
                device: str | None = None, num_classes: int | None = None) -> Graph:
    """The graph of a registered model name or a module.

    ``input_size`` defaults to the registry's input size; ``depth`` is how many levels of block
    insides to include; ``device="meta"`` (the default for names) traces without computing, a
    module is otherwise run where it is (pass ``device="meta"`` to trace a copy on meta).
    """
    name = model if isinstance(model, str) else getattr(model, "tango_name", type(model).__name__)
    if isinstance(model, str):
        from .models import create_model, model_info

        info = model_info(model)
        input_size = input_size or info.get("input_size")
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes, in_channels=in_channels or 3)
        device = "meta"
    elif device == "meta":
        model = copy.deepcopy(model).to("meta")
    if not isinstance(model, nn.Module):
        raise ConfigError("model_graph", "model", f"expected a model name or torch.nn.Module, got {type(model).__name__}")
    if input_size is None:
        tn = getattr(model, "tango_name", None)
        if tn:
            from .models import model_info

            input_size = model_info(tn).get("input_size")
    if input_size is None:
        raise ConfigError("model_graph", "input_size", "unknown for this model", "pass input_size=...")
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if in_channels is None:
        in_channels = getattr(model, "in_channels", None) or _first_in_channels(model) or 3
    try:
        dev = device or next(model.parameters()).device
    except StopIteration:
        dev = "cpu"
    example = torch.zeros(1, in_channels, h, w, device=dev)
    # the inference graph: eval mode for the trace and every re-run (batch-norm statistics of
    # a real model stay untouched), the caller's mode restored after
    was_training = model.training
    model.eval()
    try:
        run = _Run(model, example, keep_inputs_depth=depth)
        input_shape = list(example.shape)
        if hasattr(model, "layers_info") and hasattr(model, "layers"):
            graph = _config_level(model, run, depth - 1, input_shape)
        else:
            graph = _level(model, "", run, depth - 1)
    finally:
        model.train(was_training)
    graph.name = str(name)
    graph.input_shape = input_shape
    if fold:
        _fold_all(graph)
    return layout(graph)


def _first_in_channels(model: nn.Module) -> int | None:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Conv3d)):
            return m.in_channels
    return None
