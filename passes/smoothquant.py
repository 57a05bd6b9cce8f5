"""SmoothQuant: move activation outliers into the weights before INT8 quantization.

Requires: a prefill graph with float weights (run it before sparsity and quantization).
Ensures: for each norm whose output feeds only selected linears, factors s[K] from the
calibration activations' column maxima and the weights (alpha from the options, 0.5 in the
paper) are folded exactly into the norm (weight and bias / s) and those linears (columns * s),
so the graph computes the same function while its activations are easier to quantize. Norms
feeding anything else are left alone. Shape-only graphs are returned unchanged (the pass moves
values, never types).

IR before -> after: identical text; only the weight table changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import PackedWeight
from sparseflow.ir.graph import Graph
from sparseflow.ir.ops import Op
from sparseflow.passes.calibration import linear_inputs
from sparseflow.passes.manager import PassContext, register_pass
from sparseflow.passes.quantize import fold_smoothing, smoothquant_scales

NORM_OPS = (Op.RMSNORM, Op.LAYERNORM)


@dataclass(frozen=True)
class SmoothOptions:
    """alpha: migration strength in [0, 1] (0.5 in the SmoothQuant paper)."""

    alpha: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"option 'alpha' must be in [0, 1], got {self.alpha}")


def smoothable_norms(graph: Graph, layers: tuple[str, ...]) -> dict[str, list[str]]:
    """Return {norm node: [linear weights it feeds]} for norms feeding only selected linears."""
    users: dict[str, list[str]] = {}
    for node in graph.nodes:
        for used in node.inputs:
            users.setdefault(used, []).append(node.name)
    chosen = set(layers)
    found = {}
    for norm in (n for n in graph.nodes if n.op in NORM_OPS):
        readers = [graph.node(u) for u in users.get(norm.name, [])]
        if readers and all(r.op is Op.LINEAR and r.inputs[1] in chosen for r in readers):
            found[norm.name] = [r.inputs[1] for r in readers]
    return found


@register_pass("smoothquant", SmoothOptions)
def smoothquant(
    graph: Graph, layers: tuple[str, ...], ctx: PassContext, opts: SmoothOptions
) -> Graph:
    """Fold SmoothQuant factors into norms and the linears they feed."""
    norms = smoothable_norms(graph, layers)
    if not graph.weights or not norms:
        return graph
    touched = [n for norm, ws in norms.items() for n in (*graph.node(norm).inputs[1:], *ws)]
    if ctx.reuse is not None:
        return graph.with_nodes(
            graph.nodes, graph.weights.replace({n: ctx.reuse[n] for n in touched})
        )
    for name in touched:
        if isinstance(graph.weights[name], PackedWeight):
            raise InputError(f"layer {name!r} is already compressed: run smoothquant first")
    inputs = linear_inputs(graph, tuple(w for ws in norms.values() for w in ws), ctx)
    updates: dict[str, np.ndarray] = {}
    for norm, weights in norms.items():
        params = graph.node(norm).inputs[1:]
        act_absmax = np.abs(inputs[weights[0]]).max(axis=0)
        mats = [graph.weights.dense(w) for w in weights]
        scales = smoothquant_scales(act_absmax, mats, opts.alpha)
        bias = graph.weights.dense(params[1]) if len(params) == 2 else None
        gain, new_bias, folded = fold_smoothing(graph.weights.dense(params[0]), bias, mats, scales)
        updates[params[0]] = gain
        if new_bias is not None:
            updates[params[1]] = new_bias
        updates.update(zip(weights, folded, strict=True))
    return graph.with_nodes(graph.nodes, graph.weights.replace(updates))
