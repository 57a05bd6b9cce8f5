"""Plan the CPU kernels of a compressed graph: one kernel per `linear` node, chosen by storage.

Requires a verified graph whose `linear` nodes read a `weight` node (its type carries the
storage: sparse pattern and quantization). Ensures a `GraphPlan` naming, per linear, the kernel,
its shape variant for the planned token count (one token: the GEMV kernels), the stored bytes
and the reason; and the `quantize` nodes folded into int8 kernels (those whose every user is
such a kernel, so their fake-quantized output is never needed).

Rules, in order:
1. int8 per-channel weight read through an int8/int4 `quantize`: `int8_gemm` (dense) or
   `bsr_int8_spmm` (block); other layouts dequantize their payload per row (rule 2).
2. f32 container (float payload, or int8 per-channel dequantized per row): dense -> numpy
   BLAS; CSR / BSR / N:M -> `csr_spmm` / `bsr_spmm` / `nm_spmm`. Policy AUTO asks
   `dispatch.choose_kernel` whether the sparse kernel beats dense BLAS at this token count,
   and decodes the weight to dense when it does not; policy STORAGE always runs the layout's
   kernel.
3. dense int4 (group-wise or per channel): `int4_gemv` (one token) / `int4_gemm`.
4. Anything else (fp4, OliVe, LLM.int8, FlightLLM nmblock, sparse int4): FALLBACK, the weight
   decoded once to dense f32 and multiplied with numpy BLAS, labelled as such in the plan.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sparseflow.backends.cpu._common import DECODE_MAX_TOKENS
from sparseflow.backends.cpu.convert import (
    has_float_container,
    has_int4_container,
    is_int8_channel,
)
from sparseflow.backends.cpu.dispatch import choose_kernel
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node
from sparseflow.ir.ops import Op
from sparseflow.ir.types import SparsePattern, TensorType


class KernelPolicy(enum.Enum):
    """How a sparse f32 layout picks its kernel."""

    AUTO = "auto"  # the dispatcher's modelled choice between the sparse kernel and dense BLAS
    STORAGE = "storage"  # always the kernel of the stored layout


class Kernel(enum.Enum):
    """The CPU kernels a linear layer can run."""

    DENSE_BLAS = "dense_blas"
    CSR = "csr_spmm"
    BSR = "bsr_spmm"
    NM = "nm_spmm"
    INT8_GEMM = "int8_gemm"
    INT8_BSR = "bsr_int8_spmm"
    INT4 = "int4_gemm"
    FALLBACK = "dequant_dense_blas"

    def variant(self, tokens: int) -> str:
        """Return the shape variant the kernel runs for `tokens` rows."""
        if self in (Kernel.DENSE_BLAS, Kernel.FALLBACK):
            return "gemv" if tokens <= DECODE_MAX_TOKENS else "gemm"
        return "decode" if tokens <= DECODE_MAX_TOKENS else "tokens"


_SPARSE_KERNELS = {
    SparsePattern.UNSTRUCTURED: Kernel.CSR,
    SparsePattern.BLOCK: Kernel.BSR,
    SparsePattern.NM: Kernel.NM,
}
ACTIVATION_BITS = (4, 8)  # quantize bit widths whose codes fit the int8 kernels


@dataclass(frozen=True)
class LayerPlan:
    """The kernel of one linear node and why it was chosen."""

    node: str
    weight: str
    kernel: Kernel
    shape: tuple[int, int]
    tokens: int
    storage: str
    storage_bytes: int
    reason: str
    bias: str | None = None
    act_bits: int | None = None  # bits of the folded `quantize` feeding an int8 kernel

    @property
    def is_int8(self) -> bool:
        """Return whether the kernel takes integer activations."""
        return self.kernel in (Kernel.INT8_GEMM, Kernel.INT8_BSR)

    def line(self) -> str:
        """Return the one-line listing: node, kernel, shapes, bytes, reason."""
        n, k = self.shape
        variant = self.kernel.variant(self.tokens)
        return (
            f"%{self.node:<28} {self.kernel.value + '/' + variant:<26} "
            f"W[{n},{k}] x[{self.tokens},{k}] {self.storage:<34} {self.storage_bytes:>10} B  "
            f"# {self.reason}"
        )

    def to_json(self) -> dict:
        """Return a JSON-serialisable record of the plan line."""
        return {
            "node": self.node,
            "weight": self.weight,
            "kernel": self.kernel.value,
            "variant": self.kernel.variant(self.tokens),
            "shape": list(self.shape),
            "tokens": self.tokens,
            "storage": self.storage,
            "storage_bytes": self.storage_bytes,
            "fallback": self.kernel is Kernel.FALLBACK,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class GraphPlan:
    """The kernel plan of one graph (prefill or decode) at a planned token count."""

    graph: Graph
    tokens: int
    layers: tuple[LayerPlan, ...]
    folded_quantize: tuple[str, ...]
    row_ops: tuple[str, ...]  # gelu / layernorm nodes run by `pointwise` kernels

    def listing(self) -> list[str]:
        """Return the readable plan: a header, one line per linear, the folded quantizes."""
        phase = self.graph.meta_dict.get("phase", "?")
        lines = [f"graph {self.graph.name} phase={phase} tokens={self.tokens}"]
        lines += ["  " + layer.line() for layer in self.layers]
        lines += [
            f"  %{q:<28} folded into the int8 kernels reading it" for q in self.folded_quantize
        ]
        return lines

    def kernel_counts(self) -> dict[str, int]:
        """Return how many layers run each kernel."""
        counts: dict[str, int] = {}
        for layer in self.layers:
            counts[layer.kernel.value] = counts.get(layer.kernel.value, 0) + 1
        return counts


def _pattern_name(tensor_type: TensorType) -> str:
    """Return the dispatcher's pattern string for a stored weight type."""
    sparse = tensor_type.sparse
    if sparse is None:
        return "dense"
    if sparse.pattern is SparsePattern.BLOCK:
        return f"block{sparse.block[0]}x{sparse.block[1]}"
    if sparse.pattern is SparsePattern.NM:
        return f"{sparse.n}:{sparse.m}"
    return "unstructured"


def _float_kernel(w: TensorType, tokens: int, policy: KernelPolicy) -> tuple[Kernel, str]:
    """Return (kernel, reason) for a weight held in an f32 container."""
    note = " (int8 payload dequantized per row)" if w.quant else ""
    if w.sparse is None:
        return Kernel.DENSE_BLAS, "dense weights" + note
    kernel = _SPARSE_KERNELS[w.sparse.pattern]
    if policy is KernelPolicy.STORAGE:
        return kernel, f"stored layout {_pattern_name(w)}{note}"
    n, k = (int(d) for d in w.shape)
    choice = choose_kernel(n, k, tokens, _pattern_name(w), w.sparse.density)
    if not choice.sparse:
        return Kernel.DENSE_BLAS, f"dispatcher: {choice.reason}; decoded to dense{note}"
    return kernel, f"dispatcher: {choice.reason}, ~{choice.predicted_speedup:.1f}x{note}"


def choose_layer(
    w: TensorType, act_bits: int | None, tokens: int, policy: KernelPolicy
) -> tuple[Kernel, str]:
    """Return (kernel, reason) for a linear with weight storage `w` (rules of the docstring)."""
    pattern = w.sparse.pattern if w.sparse else None
    if is_int8_channel(w) and act_bits in ACTIVATION_BITS:
        if pattern is None:
            return Kernel.INT8_GEMM, f"int8 weights x int{act_bits} per-token activations"
        if pattern is SparsePattern.BLOCK:
            return Kernel.INT8_BSR, f"int8 block weights x int{act_bits} per-token activations"
    if has_float_container(w):
        return _float_kernel(w, tokens, policy)
    if has_int4_container(w):
        return Kernel.INT4, "int4 group-wise weights, dequantized in registers"
    return Kernel.FALLBACK, f"FALLBACK: no CPU kernel for {w}; decoded once to dense f32"


def _act_bits(graph: Graph, node: Node) -> int | None:
    """Return the bits of the per-token `quantize` node feeding a linear, or None.

    Only the one-input (per-token, dynamic) form is folded into int8 kernels; a quantize with
    a static scale input stays a reference node and the linear takes its float path.
    """
    source = graph.node(node.inputs[0])
    per_token = source.op is Op.QUANTIZE and len(source.inputs) == 1
    return int(source.attr("bits", 8)) if per_token else None


def _plan_layer(graph: Graph, node: Node, tokens: int, policy: KernelPolicy) -> LayerPlan:
    weight = graph.node(node.inputs[1])
    if weight.op is not Op.WEIGHT:
        raise InputError(f"node %{node.name} (linear): its weight %{weight.name} is computed")
    bias = node.inputs[2] if len(node.inputs) == 3 else None
    if bias is not None and graph.node(bias).op is not Op.WEIGHT:
        raise InputError(f"node %{node.name} (linear): its bias %{bias} is not a weight")
    act_bits = _act_bits(graph, node)
    kernel, reason = choose_layer(weight.type, act_bits, tokens, policy)
    shape = (int(weight.type.shape[0]), int(weight.type.shape[1]))
    return LayerPlan(
        node.name, weight.name, kernel, shape, tokens, str(weight.type),
        graph.stored_bytes(weight.name), reason, bias,
        act_bits if kernel in (Kernel.INT8_GEMM, Kernel.INT8_BSR) else None,
    )  # fmt: skip


def _folded_quantize(graph: Graph, layers: tuple[LayerPlan, ...]) -> tuple[str, ...]:
    """Return the quantize nodes read only by int8 kernels (and not graph outputs)."""
    int8_nodes = {layer.node for layer in layers if layer.is_int8}
    readers: dict[str, list[str]] = {}
    for node in graph.nodes:
        for value in node.inputs:
            readers.setdefault(value, []).append(node.name)
    return tuple(
        q.name
        for q in graph.nodes_of(Op.QUANTIZE)
        if q.name not in graph.outputs and set(readers.get(q.name, [None])) <= int8_nodes
    )


def _is_row_op(graph: Graph, node: Node) -> bool:
    """Return whether a node is a GELU or a LayerNorm with weight parameters (the ops
    `pointwise` implements)."""
    if node.op is Op.LAYERNORM:
        return all(graph.node(p).op is Op.WEIGHT for p in node.inputs[1:])
    return node.op is Op.GELU


def plan_graph(graph: Graph, tokens: int, policy: KernelPolicy = KernelPolicy.AUTO) -> GraphPlan:
    """Plan every linear of `graph` for `tokens` activation rows per call."""
    if tokens < 1:
        raise InputError(f"graph {graph.name!r}: cannot plan for {tokens} tokens")
    layers = tuple(_plan_layer(graph, n, tokens, policy) for n in graph.nodes_of(Op.LINEAR))
    row_ops = tuple(n.name for n in graph.nodes if _is_row_op(graph, n))
    return GraphPlan(graph, tokens, layers, _folded_quantize(graph, layers), row_ops)
