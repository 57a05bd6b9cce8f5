"""Activation and KV-cache quantization passes: insert `quantize` nodes.

quantize_activations requires: the selected weights feed `linear` nodes. Ensures: each such
linear reads its input through a per-token symmetric `quantize` node (shared by linears that
read the same value), so backends run integer matmuls.
    %q = linear(%h, %w.q)  ->  %h.q8 : i8[..] q=int8:token = quantize(%h) ; %q = linear(%h.q8, %w.q)

quantize_attention requires nothing. Ensures: both operands of every `matmul` (scores = q k^T,
context = p v) are read through per-vector `quantize` nodes (unless already quantized), the
precision of an integer attention datapath such as FlightLLM's.

quantize_kv_cache requires: a decode graph (keys and values enter the cache through
`kv_append`) or a prefill graph (its outputs after the first are the caches it fills). Ensures:
keys and values are quantized per token and head before they enter the cache, attention reads
the quantized cache, and cache inputs are typed as the quantized tensors they are.
    prefill: %k.0 = rope(..)  ->  %k.0.f = rope(..) ; %k.0 : i8[..] q=int8:token = quantize(%k.0.f)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sparseflow.ir.dtypes import DType, symmetric_scale
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph, infer_types
from sparseflow.ir.node import Node, make_attrs
from sparseflow.ir.ops import Op
from sparseflow.ir.types import TensorType
from sparseflow.passes.calibration import collect_values
from sparseflow.passes.manager import PassContext, register_pass


@dataclass(frozen=True)
class ActivationOptions:
    """bits: activation bit width (8, or 4)."""

    bits: int = 8

    def __post_init__(self) -> None:
        if self.bits not in (4, 8):
            raise ValueError(f"option 'bits' must be 8 or 4, got {self.bits}")


def _quantize_node(graph_types: dict, value: str, bits: int) -> Node:
    op = Op.QUANTIZE
    attrs = make_attrs({"bits": bits})
    name = f"{value}.q{bits}"
    return Node(name, op, (value,), op.infer_type([graph_types[value]], attrs, name), attrs)


def _insert_quantize(graph: Graph, wanted, bits: int, once: bool = False) -> Graph:
    """Rebuild the graph; for nodes where wanted(node) gives an input position, quantize it.

    An input that is already quantized stays as it is, or, with `once`, is an InputError
    naming the node (a recipe quantizing the same linears twice).
    """
    types = {n.name: n.type for n in graph.nodes}
    made: dict[str, str] = {}
    nodes: list[Node] = []
    for node in graph.nodes:
        position = wanted(node)
        if position is not None:
            source = node.inputs[position]
            if once and types[source].quant and source not in made:
                raise InputError(
                    f"node %{node.name}: its input %{source} is already quantized "
                    f"({types[source].quant}); quantize each linear's input once"
                )
            if not types[source].quant and source not in made:
                q = _quantize_node(types, source, bits)
                nodes.append(q)
                types[q.name] = q.type
                made[source] = q.name
            if source in made:
                inputs = list(node.inputs)
                inputs[position] = made[source]
                node = replace(node, inputs=tuple(inputs))
        nodes.append(node)
    return graph.with_nodes(nodes)


@register_pass("quantize_activations", ActivationOptions)
def quantize_activations(
    graph: Graph, layers: tuple[str, ...], ctx: PassContext, opts: ActivationOptions
) -> Graph:
    """Quantize the inputs of the selected linears per token (symmetric, `bits` bits)."""
    chosen = set(layers)

    def wanted(node: Node) -> int | None:
        return 0 if node.op is Op.LINEAR and node.inputs[1] in chosen else None

    return _insert_quantize(graph, wanted, opts.bits, once=True)


SCALE_TYPE = TensorType((1,), DType.F32)  # a static quantization scale (the quantize op's input)


@dataclass(frozen=True)
class KvCacheOptions:
    """bits: cache bit width (8, or 4); static_values: quantize the value cache with one scale
    per layer, calibrated on the prefill graph (so an integer engine can multiply
    probabilities by it exactly), instead of one scale per token and head."""

    bits: int = 8
    static_values: bool = False

    def __post_init__(self) -> None:
        ActivationOptions(self.bits)


@register_pass("quantize_kv_cache", KvCacheOptions, roles=())
def quantize_kv_cache(
    graph: Graph, layers: tuple[str, ...], ctx: PassContext, opts: KvCacheOptions
) -> Graph:
    """Store keys and values in the KV cache quantized (per token and head, or static)."""
    appends = graph.nodes_of(Op.KV_APPEND)
    caches = tuple(n.name for n in appends) or graph.outputs[1:]
    scales = _value_scales(graph, caches, ctx, opts.bits) if opts.static_values else {}
    if not appends:
        return _quantize_outputs(graph, caches, opts.bits, scales)
    past = {n.inputs[0]: n.name for n in appends}
    nodes: list[Node] = []
    types: dict[str, object] = {}
    for node in graph.nodes:
        if node.name in past:
            cache_type = _cache_type(node.type, opts.bits, past[node.name] in scales)
            node = replace(node, type=cache_type)
        if node.op is Op.KV_APPEND:
            q = _quantizer(types, node.inputs[1], opts.bits, node.name, node.name in scales)
            for extra in q:
                types[extra.name] = extra.type
            nodes += q
            node = replace(node, inputs=(node.inputs[0], q[-1].name))
        types[node.name] = node.type
        nodes.append(node)
    return graph.with_nodes(infer_types(nodes), graph.weights.replace(_scale_weights(scales)))


def _cache_type(tensor_type: TensorType, bits: int, static: bool) -> TensorType:
    """Return the type of a cache input: what quantizing such a tensor gives."""
    ins = [tensor_type, SCALE_TYPE] if static else [tensor_type]
    return Op.QUANTIZE.infer_type(ins, make_attrs({"bits": bits}), "cache")


def _value_scales(
    graph: Graph, caches: tuple[str, ...], ctx: PassContext, bits: int
) -> dict[str, np.ndarray | None]:
    """Return {value cache name: static scale [1]}: absmax over calibration / qmax."""
    values = tuple(name for name in caches if name.startswith("v."))
    if not graph.weights:  # shape-only: the scale weights are typed, without values
        return dict.fromkeys(values)
    if ctx.reuse is not None and all(f"{v}.scale" in ctx.reuse for v in values):
        return {v: np.asarray(ctx.reuse[f"{v}.scale"]) for v in values}
    seen = collect_values(graph, values, ctx)
    qmax = 2 ** (bits - 1) - 1
    return {v: symmetric_scale(np.abs(x).max(), qmax).reshape(1) for v, x in seen.items()}


def _scale_weights(scales: dict[str, np.ndarray | None]) -> dict[str, np.ndarray]:
    return {f"{name}.scale": value for name, value in scales.items() if value is not None}


def _quantizer(
    types: dict, value: str, bits: int, cache: str, static: bool, name: str | None = None
) -> list[Node]:
    """Return the nodes quantizing `value` (entering `cache`): a quantize node, after the
    cache's scale weight `<cache>.scale` if static."""
    if not static:
        q = _quantize_node(types, value, bits)
        return [replace(q, name=name) if name else q]
    role = make_attrs({"role": "scale"})
    weight = Node(f"{cache}.scale", Op.WEIGHT, (), SCALE_TYPE, role)
    op, attrs = Op.QUANTIZE, make_attrs({"bits": bits})
    out_name = name or f"{value}.q{bits}"
    out_type = op.infer_type([types[value], SCALE_TYPE], attrs, out_name)
    return [weight, Node(out_name, op, (value, weight.name), out_type, attrs)]


@register_pass("quantize_attention", ActivationOptions, roles=())
def quantize_attention(
    graph: Graph, layers: tuple[str, ...], ctx: PassContext, opts: ActivationOptions
) -> Graph:
    """Quantize both operands of every attention matmul per vector (q per token and head,
    probabilities per row), as an integer matrix engine computes attention."""
    for position in (0, 1):
        graph = _insert_quantize(
            graph, lambda n, p=position: p if n.op is Op.MATMUL else None, opts.bits
        )
    return graph


def _quantize_outputs(
    graph: Graph, outputs: tuple[str, ...], bits: int, scales: dict[str, np.ndarray]
) -> Graph:
    """Make each named output, and every reader of it, the quantized value: the computed
    node is renamed `<name>.f` and `<name>` becomes its quantize node."""
    chosen = set(outputs)
    types: dict[str, object] = {}
    nodes: list[Node] = []
    for node in graph.nodes:
        if node.name not in chosen or node.type.quant is not None:
            nodes.append(node)
            types[node.name] = node.type
            continue
        computed = replace(node, name=f"{node.name}.f")
        types[computed.name] = computed.type
        static = node.name in scales
        made = _quantizer(types, computed.name, bits, node.name, static, name=node.name)
        for extra in made:
            types[extra.name] = extra.type
        nodes += [computed, *made]
    return graph.with_nodes(infer_types(nodes), graph.weights.replace(_scale_weights(scales)))
