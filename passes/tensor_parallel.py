"""Tensor parallelism: the graph one device of a group of `tp` runs (Megatron-LM style).

Requires: a graph built by `sparseflow.ir.models` (compressed or not) whose metadata holds
its config (num_heads, num_kv_heads, intermediate_size, vocab_size) and whose weights follow
the builders' names; weight values, if any, are dense or lazy arrays (split before
compressing: a packed weight cannot be cut).
Ensures: `tensor_shard(graph, tp, rank)` is device `rank`'s graph: the column-parallel
linears (q/k/v projections, gate/up or fc1, each expert's gate/up, the LM head) keep the rows
of the device's heads, intermediate features or vocabulary; the row-parallel ones (o_proj,
down_proj or fc2, each expert's down_proj) keep the matching columns and yield partial sums,
summed by an `all_reduce` (after the expert combine for routed experts; a row-parallel bias
is added once, after it); a sharded LM head is followed by an `all_gather` of the logits.
Key/value heads split too, or, with fewer of them than devices, each device keeps the one its
query heads share (as TensorRT-LLM replicates them). Embeddings, norms and routers stay
whole on every device; the metadata gives the device's own head and feature counts. Names
are kept: the all-reduce takes a row-parallel node's name (the linear becomes
`<name>.partial`), so every reader and graph output is unchanged.
IR before -> after (tp = 2, hidden 4096, 32 heads):
    %l.q : f32[1,T,4096] = linear(%l.in, %layers.0.attn.q_proj)        # w [4096, 4096]
    %l.out : f32[1,T,4096] = linear(%l.merged, %layers.0.attn.o_proj)  # w [4096, 4096]
  becomes
    %l.q : f32[1,T,2048] = linear(%l.in, %layers.0.attn.q_proj)        # w [2048, 4096]
    %l.out.partial : f32[1,T,4096] = linear(%l.merged, %layers.0.attn.o_proj)  # [4096, 2048]
    %l.out : f32[1,T,4096] = all_reduce(%l.out.partial) {"devices": 2}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from sparseflow.ir.dims import same_dim
from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import PackedWeight
from sparseflow.ir.graph import Graph, infer_types
from sparseflow.ir.node import Node, make_attrs
from sparseflow.ir.ops import Op
from sparseflow.ir.types import TensorType
from sparseflow.ir.weights import Weights

_LAYER = r"layers\.\d+\."
_ROLES = {
    "q": re.compile(_LAYER + r"attn\.q_proj"),
    "kv": re.compile(_LAYER + r"attn\.[kv]_proj"),
    "ffn": re.compile(_LAYER + r"mlp\.(gate_proj|up_proj|fc1|experts\.\d+\.(gate|up)_proj)"),
    "o": re.compile(_LAYER + r"attn\.o_proj"),
    "ffn_out": re.compile(_LAYER + r"mlp\.(down_proj|fc2|experts\.\d+\.down_proj)"),
}
ROW_ROLES = ("o", "ffn_out")  # the others split rows (outputs)


@dataclass(frozen=True)
class ShardPlan:
    """Which slice of each sharded dimension device `rank` of `tp` keeps."""

    tp: int
    rank: int
    heads: tuple[int, int]  # query heads [start, stop)
    kv_heads: tuple[int, int]
    ffn: tuple[int, int]  # intermediate features (each expert's too)
    vocab: tuple[int, int] | None  # LM-head rows; None: the head stays whole
    head_dim: int

    def rows(self, role: str) -> tuple[int, int]:
        """Return the [start, stop) a weight of `role` keeps along its sharded axis."""
        if role in ("q", "o"):
            return self.heads[0] * self.head_dim, self.heads[1] * self.head_dim
        if role == "kv":
            return self.kv_heads[0] * self.head_dim, self.kv_heads[1] * self.head_dim
        if role == "head":
            assert self.vocab is not None
            return self.vocab
        return self.ffn


def plan_shards(graph: Graph, tp: int, rank: int = 0) -> ShardPlan:
    """Return device `rank`'s slices; raise InputError naming --tp when tp does not fit."""
    meta = graph.meta_dict
    model = meta.get("name", graph.name)
    heads, kv = int(meta["num_heads"]), int(meta["num_kv_heads"])
    ffn, vocab = int(meta["intermediate_size"]), int(meta["vocab_size"])
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise InputError(f"--tp (parallel.tp) must be an integer >= 1, not {tp!r}")
    for what, size in (("attention heads", heads), ("intermediate features", ffn)):
        if size % tp:
            raise InputError(f"--tp {tp} (parallel.tp) does not divide the {size} {what} of "
                             f"{model}")  # fmt: skip
    if kv % tp and tp % kv:
        raise InputError(f"--tp {tp} (parallel.tp) and the {kv} key/value heads of {model} "
                         "must divide one another")  # fmt: skip
    if not 0 <= rank < tp:
        raise InputError(f"rank {rank} outside a group of {tp} devices")
    per_kv = max(1, kv // tp)
    first_kv = rank * per_kv if kv >= tp else rank * kv // tp
    head = _sharded_head(graph, vocab, tp)
    return ShardPlan(
        tp=tp,
        rank=rank,
        heads=_part(heads, tp, rank),
        kv_heads=(first_kv, first_kv + per_kv),
        ffn=_part(ffn, tp, rank),
        vocab=_part(vocab, tp, rank) if head else None,
        head_dim=int(meta["head_dim"]),
    )


def _part(size: int, parts: int, rank: int) -> tuple[int, int]:
    step = size // parts
    return rank * step, (rank + 1) * step


def _sharded_head(graph: Graph, vocab: int, tp: int) -> str | None:
    """Return the LM head's weight when it is split by vocabulary: it must divide evenly and
    not be the embedding table itself (a tied head stays whole, as the lookup needs it)."""
    if "logits" not in graph or vocab % tp:
        return None
    head = graph.node("logits")
    while head.op is Op.CAST:  # rounded to the datapath's float type after the linear
        head = graph.node(head.inputs[0])
    if head.op is not Op.LINEAR:
        return None
    weight = head.inputs[1]
    readers = [n for n in graph.nodes if weight in n.inputs]
    return weight if len(readers) == 1 and tp > 1 else None


def weight_role(name: str, head: str | None) -> str | None:
    """Return how weight `name` splits ('q', 'kv', 'ffn', 'o', 'ffn_out', 'head'), or None."""
    if name == head:
        return "head"
    return next((role for role, pattern in _ROLES.items() if pattern.fullmatch(name)), None)


def tensor_shard(graph: Graph, tp: int, rank: int = 0) -> Graph:
    """Return the graph device `rank` of a tensor-parallel group of `tp` runs (module doc)."""
    if tp == 1:
        return graph
    plan = plan_shards(graph, tp, rank)
    head = _sharded_head(graph, int(graph.meta_dict["vocab_size"]), tp)
    builder = _Sharder(graph, plan, head)
    for node in graph.nodes:
        builder.visit(node)
    nodes = infer_types(builder.nodes)
    local = {
        "num_heads": plan.heads[1] - plan.heads[0],
        "num_kv_heads": plan.kv_heads[1] - plan.kv_heads[0],
        "intermediate_size": plan.ffn[1] - plan.ffn[0],
    }
    meta = make_attrs({**graph.meta_dict, **local, "tp": tp, "tp_rank": rank})
    name = f"{graph.name}.tp{rank}"
    return replace(graph, name=name, nodes=tuple(nodes), meta=meta, weights=builder.weights)


class _Sharder:
    """Rewrite a graph node by node into one device's shard (see `tensor_shard`)."""

    def __init__(self, graph: Graph, plan: ShardPlan, head: str | None) -> None:
        self.graph, self.plan, self.head = graph, plan, head
        self.nodes: list[Node] = []
        self.types: dict[str, TensorType] = {}
        self.partial: set[str] = set()
        self.updates: dict[str, object] = {}
        self.past = {n.inputs[0] for n in graph.nodes_of(Op.KV_APPEND)}
        users: dict[str, list[Node]] = {}
        for node in graph.nodes:
            for name in node.inputs:
                users.setdefault(name, []).append(node)
        self.users = users

    @property
    def weights(self) -> Weights:
        return self.graph.weights.replace(self.updates)

    def emit(self, node: Node) -> None:
        if not node.op.is_source:
            ins = [self.types[i] for i in node.inputs]
            node = replace(node, type=node.op.infer_type(ins, node.attrs, node.name))
        self.types[node.name] = node.type
        self.nodes.append(node)

    def visit(self, node: Node) -> None:
        if node.op is Op.WEIGHT:
            return self.emit(self.weight(node))
        if node.op is Op.INPUT and node.name in self.past:
            shape = list(node.type.shape)
            shape[1] = self.plan.kv_heads[1] - self.plan.kv_heads[0]
            return self.emit(replace(node, type=node.type.with_(shape=tuple(shape))))
        if node.op is Op.RESHAPE and node.inputs[0] in self.types:
            node = replace(node, attrs=make_attrs({"shape": self.reshaped(node)}))
        if node.op is Op.REPEAT_KV:
            node = replace(node, attrs=make_attrs({"n_rep": self.n_rep(node)}))
        role = self.role(node)
        if role in ROW_ROLES:
            return self.row_parallel(node)
        if node.op is Op.EXPERT_COMBINE and any(i in self.partial for i in node.inputs[1:]):
            return self.reduce(replace(node, name=f"{node.name}.partial"), node.name)
        if role == "head":
            shard = replace(node, name=f"{node.name}.shard")
            self.emit(shard)
            attrs = make_attrs({"devices": self.plan.tp, "axis": -1})
            return self.emit(Node(node.name, Op.ALL_GATHER, (shard.name,), node.type, attrs))
        return self.emit(node)

    def role(self, node: Node) -> str | None:
        if node.op is not Op.LINEAR:
            return None
        return weight_role(node.inputs[1], self.head)

    def weight(self, node: Node) -> Node:
        """Return a weight node cut to the device's slice (its value too, when it has one)."""
        base = node.name.removesuffix(".bias")
        role = weight_role(base, self.head)
        if role is None or (role in ROW_ROLES and node.name != base):
            return node
        axis = 1 if role in ROW_ROLES else 0
        start, stop = self.plan.rows(role)
        shape = list(node.type.shape)
        self.check_groups(node, axis, stop - start)
        shape[axis] = stop - start
        if node.name in self.graph.weights:
            self.updates[node.name] = _sliced(self.graph.weights, node.name, axis, start, stop)
        return replace(node, type=node.type.with_(shape=tuple(shape)))

    def check_groups(self, node: Node, axis: int, size: int) -> None:
        quant = node.type.quant
        grouped = axis == 1 and quant is not None and quant.granularity == "group"
        if grouped and size % quant.group_size:
            raise InputError(
                f"--tp {self.plan.tp} (parallel.tp): weight {node.name!r} keeps {size} "
                f"columns per device, not a multiple of its quantization groups of "
                f"{quant.group_size}"
            )

    def row_parallel(self, node: Node) -> None:
        x, w, *bias = node.inputs
        partial = replace(node, inputs=(x, w))
        if all(u.op is Op.EXPERT_COMBINE for u in self.users.get(node.name, [])):
            if bias:
                raise InputError(f"expert {w!r} has a bias: routed biases are not split")
            self.partial.add(node.name)
            return self.emit(partial)
        if not bias:
            return self.reduce(replace(partial, name=f"{node.name}.partial"), node.name)
        self.reduce(replace(partial, name=f"{node.name}.partial"), f"{node.name}.reduced")
        self.emit(Node(node.name, Op.ADD, (f"{node.name}.reduced", bias[0]), node.type))

    def reduce(self, partial: Node, name: str) -> None:
        self.emit(partial)
        attrs = make_attrs({"devices": self.plan.tp})
        self.emit(Node(name, Op.ALL_REDUCE, (partial.name,), partial.type, attrs))

    def reshaped(self, node: Node) -> tuple:
        """Return a reshape's target with its heads axis cut by the factor its input lost."""
        old_in = self.graph.node(node.inputs[0]).type.shape
        new_in = self.types[node.inputs[0]].shape
        target = list(node.attr("shape"))
        changed = [(a, b) for a, b in zip(old_in, new_in, strict=True) if a != b]
        if not changed:
            return tuple(target)
        ((old, new),) = changed
        pairs = enumerate(zip(old_in, target, strict=False))
        keep = next((i for i, (a, b) in pairs if not same_dim(a, b)), None)
        if keep is None or int(target[keep]) * new % old:
            raise InputError(f"node %{node.name}: cannot split reshape {target} by {old // new}")
        target[keep] = int(target[keep]) * new // old
        return tuple(target)

    def n_rep(self, node: Node) -> int:
        """Return how many local query heads share each local key/value head."""
        heads = self.plan.heads[1] - self.plan.heads[0]
        return heads // int(self.types[node.inputs[0]].shape[1])


def _sliced(weights: Weights, name: str, axis: int, start: int, stop: int):
    """Return a lazy entry holding rows or columns [start, stop) of a dense weight value."""
    if isinstance(weights[name], PackedWeight):
        raise InputError(f"weight {name!r} is packed: split the model before compressing it")

    def load() -> np.ndarray:
        value = np.asarray(weights[name], dtype=np.float32)
        index = [slice(None)] * value.ndim
        index[axis] = slice(start, stop)
        return np.ascontiguousarray(value[tuple(index)])

    return load
