"""Plan the GPU kernels of a compressed graph: one entry per compute node, chosen by type.

Requires a verified graph (possibly lowered by `fusion.fuse_decode_attention`). Ensures a
`GraphPlan` naming, per node, the kernel that runs it, its shapes, the stored bytes of its
weight and the reason. Planning reads types only, so it works on shape-only graphs.

Rules for `linear` (weight W [N, K] read from a `weight` node):
1. dense float W: `gemm` (tiled fp32).
2. 2:4 N:M storage (any payload): `spmm_24`; the stored values and offsets become the kernel's
   values + 2-bit metadata directly (a quantized payload is dequantized once, entry by entry).
3. dense int8 per-channel W read through an int8/int4 `quantize` node: `int8_gemm` (int32
   accumulate, per-token x per-channel scale epilogue).
4. dense int4 (group-wise or per channel), K even: `int4_gemm` (`int4_gemv` for one token).
5. anything else (CSR, BSR, other N:M, FlightLLM nmblock, fp4, OliVe, LLM.int8, int8 weights
   with float activations): `gemm_dequant`, W decoded once to dense f32, labelled as such.
Other ops: `rmsnorm`, `layernorm` (parameters stored as weights), `softmax` (last axis), `rope`
and the fused `decode_attention` run their kernels; everything else runs its numpy reference
on the host (`host`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node
from sparseflow.ir.ops import Op
from sparseflow.ir.types import QuantScheme, SparsePattern, TensorType

# The `quantize` bit widths whose codes fit the int8 GEMM's int8 operands.
INT8_KERNEL_ACT_BITS = (4, 8)


class GpuKernel(enum.Enum):
    """The kernels (and the host reference) a node of the plan can run on."""

    GEMM = "gemm"
    SPMM_24 = "spmm_24"
    INT8_GEMM = "int8_gemm"
    INT4 = "int4_gemm"
    GEMM_DEQUANT = "gemm_dequant"
    RMSNORM = "rmsnorm"
    LAYERNORM = "layernorm"
    SOFTMAX = "softmax"
    ROPE = "rope"
    DECODE_ATTENTION = "decode_attention"
    HOST = "host"


NORM_KERNELS = {Op.RMSNORM: GpuKernel.RMSNORM, Op.LAYERNORM: GpuKernel.LAYERNORM}


@dataclass(frozen=True)
class NodePlan:
    """The kernel of one node, its shapes, its weight and why the kernel was chosen."""

    node: str
    op: Op
    kernel: GpuKernel
    inputs: tuple[str, ...]  # printed types of the inputs, weights included
    output: str
    weight: str | None
    weight_bytes: int
    reason: str

    def line(self) -> str:
        """Return the one-line listing: node, kernel, shapes, weight bytes, reason."""
        shapes = ", ".join(self.inputs) + " -> " + self.output
        return (
            f"%{self.node:<30} {self.kernel.value:<16} {shapes:<64} "
            f"{self.weight_bytes:>9} B  # {self.reason}"
        )

    def to_json(self) -> dict:
        """Return a JSON-serialisable record of the plan line."""
        return {
            "node": self.node,
            "op": self.op.value,
            "kernel": self.kernel.value,
            "inputs": list(self.inputs),
            "output": self.output,
            "weight": self.weight,
            "weight_bytes": self.weight_bytes,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class GraphPlan:
    """The kernel plan of one graph (prefill or decode)."""

    graph: Graph
    nodes: tuple[NodePlan, ...]

    @property
    def phase(self) -> str:
        """Return the graph's phase (prefill, decode) or its name."""
        return str(self.graph.meta_dict.get("phase", self.graph.name))

    def listing(self) -> list[str]:
        """Return the readable plan: a header and one line per compute node."""
        return [f"graph {self.graph.name} phase={self.phase}"] + [
            "  " + n.line() for n in self.nodes
        ]

    def kernel_counts(self) -> dict[str, int]:
        """Return how many nodes run each kernel (`host`: the numpy reference)."""
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.kernel.value] = counts.get(n.kernel.value, 0) + 1
        return counts


def _is_stored(graph: Graph, name: str) -> bool:
    return graph.node(name).op is Op.WEIGHT


def activation_bits(graph: Graph, node: Node) -> int | None:
    """Return the bits of the `quantize` node feeding a linear, or None when x is float."""
    source = graph.node(node.inputs[0])
    if source.op is not Op.QUANTIZE:
        return None
    return int(source.attr("bits", 8))


def choose_linear(graph: Graph, node: Node) -> tuple[GpuKernel, str]:
    """Return the kernel of a `linear` node and the reason, from its weight's storage type."""
    if not _is_stored(graph, node.inputs[1]):
        return GpuKernel.HOST, "weight is computed, not stored"
    w: TensorType = graph.node(node.inputs[1]).type
    sparse, quant = w.sparse, w.quant
    if sparse is None and quant is None:
        return GpuKernel.GEMM, "dense f32"
    if sparse is not None and sparse.pattern is SparsePattern.NM and (sparse.n, sparse.m) == (2, 4):
        if quant is None:
            return GpuKernel.SPMM_24, "2:4 values + offsets as 2-bit metadata"
        return GpuKernel.SPMM_24, f"2:4, {quant} payload dequantized once"
    integer = sparse is None and quant.scheme is QuantScheme.INT
    bits = activation_bits(graph, node)
    if integer and quant.bits == 8 and quant.granularity == "channel":
        if bits in INT8_KERNEL_ACT_BITS:
            return GpuKernel.INT8_GEMM, f"W8A{bits}, per-token x per-channel scales"
        return GpuKernel.GEMM_DEQUANT, f"{quant} with float activations: decoded once to f32"
    if integer and quant.bits == 4 and isinstance(w.shape[1], int) and w.shape[1] % 2 == 0:
        return GpuKernel.INT4, f"{quant}, dequantized in the kernel"
    storage = " ".join(str(p) for p in (sparse, quant) if p is not None)
    return GpuKernel.GEMM_DEQUANT, f"no kernel for {storage}: decoded once to f32"


def choose_kernel(graph: Graph, node: Node) -> tuple[GpuKernel, str]:
    """Return the kernel of any compute node and the reason."""
    op = node.op
    params_stored = all(_is_stored(graph, i) for i in node.inputs[1:])
    if op is Op.LINEAR:
        return choose_linear(graph, node)
    if op in NORM_KERNELS and params_stored:
        return NORM_KERNELS[op], "one block per row, parameters on the device"
    if op is Op.SOFTMAX and int(node.attr("axis", -1)) in (-1, node.type.rank - 1):
        return GpuKernel.SOFTMAX, "one block per row"
    if op is Op.ROPE:
        return GpuKernel.ROPE, "one thread per rotation pair"
    if op is Op.DECODE_ATTENTION:
        return GpuKernel.DECODE_ATTENTION, "fused q k^T, scale, mask, softmax, v (split-K)"
    return GpuKernel.HOST, "numpy reference"


def plan_graph(graph: Graph) -> GraphPlan:
    """Return the kernel plan of every compute node of `graph`."""
    entries = []
    for node in graph.nodes:
        if node.op.is_source:
            continue
        kernel, reason = choose_kernel(graph, node)
        weight = node.inputs[1] if node.op is Op.LINEAR else None
        stored = [i for i in node.inputs if _is_stored(graph, i)]
        entries.append(
            NodePlan(
                node=node.name,
                op=node.op,
                kernel=kernel,
                inputs=tuple(str(graph.node(i).type) for i in node.inputs),
                output=str(node.type),
                weight=weight if weight in stored else None,
                weight_bytes=sum(graph.stored_bytes(i) for i in stored),
                reason=reason,
            )
        )
    return GraphPlan(graph, tuple(entries))
