"""Datapath precision: round every computed float activation to the precision that holds it.

Requires: nothing. Ensures: each node computing float values (every op except inputs, weights,
quantize, cast and the layout ops that only move values) is followed by a `cast` to `dtype`
named `<node>.<dtype>` that its readers read instead (a graph output keeps its name for the
rounded value; its computation is renamed `<name>.unrounded`); float weights
read by non-linear ops (norm gains, biases) are stored rounded to `dtype`, and so are the
constant factor of a `scale` and the eps of a norm (the SFU holds them as FP16 immediates:
LLaMA's eps 1e-6 is 1.0133e-6 there, and an eps below FP16's range, BERT's 1e-12, is its
smallest subnormal 2^-24 rather than 0). A backend whose
special-function unit computes in FP16 (FlightLLM's SFU) then matches the reference exactly.

IR before -> after (dtype f16):
    %layers.0.mlp.act : f32[1,T,172] = silu(%layers.0.mlp.gate)
    %layers.0.mlp.act : f16[1,T,172] = silu(%layers.0.mlp.gate.f16)
    %layers.0.mlp.act.f16 : f16[1,T,172] = cast(%layers.0.mlp.act) {"dtype": "f16"}
(an op reading f16 values is typed f16; its computed values are rounded by the cast after it)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sparseflow.ir.dtypes import DType, parse_dtype
from sparseflow.ir.graph import Graph, infer_types
from sparseflow.ir.node import Node, make_attrs
from sparseflow.ir.ops import Op
from sparseflow.ir.ops_math import positive_in_dtype, round_to_dtype
from sparseflow.passes.manager import PassContext, register_pass

# Ops whose outputs are never rounded: sources, integer values, and ops that only move values.
KEEP = {Op.INPUT, Op.WEIGHT, Op.QUANTIZE, Op.CAST}
KEEP |= {Op.RESHAPE, Op.TRANSPOSE, Op.REPEAT_KV, Op.KV_APPEND, Op.CONCAT, Op.SLICE}
ROUNDED_WEIGHT_ROLES = ("norm", "bias")


@dataclass(frozen=True)
class PrecisionOptions:
    """dtype: the float type activations are held in (f16 or bf16)."""

    dtype: str = "f16"

    def __post_init__(self) -> None:
        if self.dtype not in ("f16", "bf16"):
            raise ValueError(f"option 'dtype' must be 'f16' or 'bf16', got {self.dtype!r}")


@register_pass("round_activations", PrecisionOptions, roles=())
def round_activations(
    graph: Graph, layers: tuple[str, ...], ctx: PassContext, opts: PrecisionOptions
) -> Graph:
    """Hold every computed float activation (and norm/bias weight, scale factor and norm eps)
    in `dtype`."""
    dtype = parse_dtype(opts.dtype)
    cast, attrs = Op.CAST, make_attrs({"dtype": opts.dtype})
    outputs = set(graph.outputs)
    renamed: dict[str, str] = {}
    nodes: list[Node] = []
    rounded_weights: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        node = replace(node, inputs=tuple(renamed.get(i, i) for i in node.inputs))
        if node.op is Op.WEIGHT and node.attr("role") in ROUNDED_WEIGHT_ROLES:
            node = replace(node, type=node.type.with_(dtype=dtype))
            rounded_weights[node.name] = _rounded(graph, ctx, node.name, dtype)
        if node.op is Op.SCALE:
            factor = float(round_to_dtype(np.float32(node.attr("factor")), dtype))
            node = replace(node, attrs=make_attrs({**node.attr_dict, "factor": factor}))
        if node.op in (Op.RMSNORM, Op.LAYERNORM):
            eps = positive_in_dtype(float(node.attr("eps")), dtype)
            node = replace(node, attrs=make_attrs({**node.attr_dict, "eps": eps}))
        if node.op in KEEP or not node.type.dtype.is_float:
            nodes.append(node)
            continue
        if node.name in outputs:  # outputs keep their names: the rounded value is the output
            computed, rounded = replace(node, name=f"{node.name}.unrounded"), node.name
        else:
            computed, rounded = node, f"{node.name}.{opts.dtype}"
            renamed[node.name] = rounded
        out_type = cast.infer_type([computed.type], attrs, rounded)
        nodes += [computed, Node(rounded, cast, (computed.name,), out_type, attrs)]
    weights = {k: v for k, v in rounded_weights.items() if v is not None}
    return graph.with_nodes(infer_types(nodes), graph.weights.replace(weights))


def _rounded(graph: Graph, ctx: PassContext, name: str, dtype: DType) -> np.ndarray | None:
    if ctx.reuse is not None and name in ctx.reuse:
        return ctx.reuse[name]
    if name not in graph.weights:
        return None
    rounded = round_to_dtype(graph.weights.dense(name), dtype)
    return rounded.astype(np.float16) if dtype is DType.F16 else rounded
