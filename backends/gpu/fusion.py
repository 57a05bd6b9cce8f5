"""Fuse single-token attention chains of a decode graph into one `decode_attention` node.

Requires a verified graph. Ensures an equivalent graph in which every chain
    %s = matmul(%q, %k_rep) {transpose_b} ; %s2 = scale(%s) ; %s3 = causal_mask(%s2, %pos)
    %p = softmax(%s3) {axis: -1} ; %ctx = matmul(%p, %v_rep)
(the `scale` may be absent, as in OPT, which scales q: the fused scale is then 1)
with one query token (q [B, H, 1, D]), each intermediate read only by the next op, and keys and
values read directly from their caches or through one `repeat_kv` each (same n_rep), becomes
    %ctx = decode_attention(%q, %k, %v, %pos) {"n_rep": R, "scale": f}
The fused op is `Op.DECODE_ATTENTION` (defined in the op registry): its numpy reference runs
the references of the ops it replaces, so the lowered graph computes what the original did.
Keys past pos[0] are masked, so the kernel attends over the first pos[0] + 1 cache rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node, make_attrs
from sparseflow.ir.ops import Op


@dataclass(frozen=True)
class _Chain:
    """One matched attention chain: the nodes it removes and the fused node."""

    removed: frozenset[str]
    fused: Node


def _single_use(graph: Graph, users: dict[str, int], name: str, op: Op) -> Node | None:
    node = graph.node(name)
    return node if node.op is op and users[name] == 1 else None


def _cache(graph: Graph, users: dict[str, int], name: str) -> tuple[str, int, set[str]]:
    """Return (cache value, n_rep, removed nodes) for keys or values read by attention."""
    rep = _single_use(graph, users, name, Op.REPEAT_KV)
    if rep is None:
        return name, 1, set()
    return rep.inputs[0], int(rep.attr("n_rep")), {rep.name}


def _match(graph: Graph, users: dict[str, int], ctx: Node) -> _Chain | None:
    if ctx.op is not Op.MATMUL or ctx.attr("transpose_b", False):
        return None
    probs = _single_use(graph, users, ctx.inputs[0], Op.SOFTMAX)
    if probs is None or int(probs.attr("axis", -1)) not in (-1, 3):
        return None
    masked = _single_use(graph, users, probs.inputs[0], Op.CAUSAL_MASK)
    if masked is None:
        return None
    scaled = _single_use(graph, users, masked.inputs[0], Op.SCALE)  # OPT scales q instead
    scores = _single_use(graph, users, (scaled or masked).inputs[0], Op.MATMUL)
    if scores is None or not scores.attr("transpose_b", False):
        return None
    q = graph.node(scores.inputs[0])
    if q.type.rank != 4 or q.type.shape[2] != 1:
        return None
    k, k_rep, k_removed = _cache(graph, users, scores.inputs[1])
    v, v_rep, v_removed = _cache(graph, users, ctx.inputs[1])
    if k_rep != v_rep:
        return None
    factor = float(scaled.attr("factor")) if scaled is not None else 1.0
    attrs = make_attrs({"n_rep": k_rep, "scale": factor})
    inputs = (q.name, k, v, masked.inputs[1])
    fused = Node(ctx.name, Op.DECODE_ATTENTION, inputs, ctx.type, attrs)
    removed = {probs.name, masked.name, scores.name} | k_removed | v_removed
    if scaled is not None:
        removed.add(scaled.name)
    return _Chain(frozenset(removed), fused)


def fuse_decode_attention(graph: Graph) -> Graph:
    """Return `graph` with every single-token attention chain fused (see the module doc)."""
    users = graph.users()
    chains = [c for c in (_match(graph, users, n) for n in graph.nodes) if c is not None]
    if not chains:
        return graph
    removed = frozenset().union(*(c.removed for c in chains))
    fused = {c.fused.name: c.fused for c in chains}
    nodes = [fused.get(n.name, n) for n in graph.nodes if n.name not in removed]
    lowered = graph.with_nodes(nodes)
    lowered.verify()  # the fused nodes' types must be what their inputs infer
    return lowered
