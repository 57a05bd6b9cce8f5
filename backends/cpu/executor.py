"""The CPU backend: compile a compressed graph to a numba kernel plan and run it.

Requires a `CompileRequest` (prefill graph, optional decode graph, a cpu hardware model).
Ensures a `CpuProgram`: `write` lists the kernel plan (`DIR/program`, one line per linear),
`summary` gives it as JSON, and `runners` returns reference interpreters whose `linear` nodes
(and the `quantize` nodes folded into int8 kernels) run the planned kernels; every other op
runs its numpy reference. Weights are converted from their `PackedWeight` storage into the
kernels' containers once per runner set, never through a re-pruned dense matrix.

    %y = linear(%h.q8, %w.q)   ->  bsr_int8_spmm(quantize_rows(h), BSR int8 codes of w) + bias
    %h.q8 = quantize(%h)       ->  identity (folded: the int8 kernel quantizes h itself)

Planning works on shape-only graphs (for `compile`); `runners` needs the weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sparseflow.backends.cpu.bsr_fp32 import bsr_spmm
from sparseflow.backends.cpu.convert import (
    float_container,
    int4_from_packed,
    int8_bsr_from_packed,
    int8_from_packed,
)
from sparseflow.backends.cpu.csr_nm_fp32 import csr_spmm, nm_spmm
from sparseflow.backends.cpu.formats import BsrMatrix, CsrMatrix, NmMatrix
from sparseflow.backends.cpu.int4 import int4_gemm
from sparseflow.backends.cpu.int8 import bsr_int8_spmm, int8_gemm
from sparseflow.backends.cpu.plan import GraphPlan, Kernel, KernelPolicy, LayerPlan, plan_graph
from sparseflow.backends.cpu.pointwise import gelu, layernorm
from sparseflow.backends.cpu.quant import quantize_int8_rows
from sparseflow.backends.registry import CompileRequest, register_backend, write_plan_listing
from sparseflow.backends.runner import GraphRunner
from sparseflow.hw_models.schema import Kind
from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import PackedWeight
from sparseflow.ir.graph import Graph
from sparseflow.ir.interpreter import Interpreter
from sparseflow.ir.interpreter import Kernel as NodeKernel
from sparseflow.ir.node import Node
from sparseflow.ir.ops import Op
from sparseflow.ir.weights import Weights

Matmul = Callable[[np.ndarray], np.ndarray]  # X[T, K] f32 -> Y[T, N] f32


def _require(weights: Weights, name: str) -> None:
    if name not in weights:
        raise InputError(f"weight {name!r} has no value (shape-only graph?); runs need weights")


def _float_matmul(container: object) -> Matmul:
    """Return X -> X W^T for an f32 dense array or sparse container."""
    if isinstance(container, BsrMatrix):
        return lambda x: bsr_spmm(x, container)
    if isinstance(container, CsrMatrix):
        return lambda x: csr_spmm(x, container)
    if isinstance(container, NmMatrix):
        return lambda x: nm_spmm(x, container)
    dense = np.ascontiguousarray(container, dtype=np.float32)
    return lambda x: np.matmul(x, dense.T)


def _int8_matmul(layer: LayerPlan, packed: PackedWeight) -> Matmul:
    """Return X -> (quantized X) W^T through an int8 kernel, quantizing X per token."""
    qmax = 2 ** (layer.act_bits - 1) - 1
    if layer.kernel is Kernel.INT8_BSR:
        bsr, scale = int8_bsr_from_packed(packed)
        return lambda x: bsr_int8_spmm(*quantize_int8_rows(x, qmax), bsr, scale)
    weight = int8_from_packed(packed)
    return lambda x: int8_gemm(*quantize_int8_rows(x, qmax), weight)


def _matmul(layer: LayerPlan, weights: Weights) -> Matmul:
    """Return the planned kernel of one layer, bound to its converted weight."""
    if layer.kernel in (Kernel.DENSE_BLAS, Kernel.FALLBACK):
        return _float_matmul(weights.dense(layer.weight))
    packed = weights[layer.weight]
    if layer.is_int8:
        return _int8_matmul(layer, packed)
    if layer.kernel is Kernel.INT4:
        weight = int4_from_packed(packed)
        return lambda x: int4_gemm(x, weight)
    return _float_matmul(float_container(packed))


def _linear_kernel(layer: LayerPlan, matmul: Matmul, bias: np.ndarray | None) -> NodeKernel:
    """Wrap a 2-D matmul into the node kernel: flatten batch dims, add the bias, reshape."""
    n = layer.shape[0]

    def run(xs: list[np.ndarray]) -> np.ndarray:
        x = xs[0]
        rows = np.ascontiguousarray(x.reshape(-1, x.shape[-1]), dtype=np.float32)
        y = matmul(rows)
        if bias is not None:
            y += bias
        return y.reshape(*x.shape[:-1], n)

    return run


def _identity(xs: list[np.ndarray]) -> np.ndarray:
    return xs[0]


def _row_op_kernel(node: Node, weights: Weights) -> NodeKernel:
    """Return the `pointwise` kernel of a planned GELU or LayerNorm node."""
    if node.op is Op.GELU:
        approximate = str(node.attr("approximate", "none"))
        return lambda xs: gelu(xs[0], approximate)
    scale, shift = (weights.dense(p) for p in node.inputs[1:])
    eps = float(node.attr("eps"))
    return lambda xs: layernorm(xs[0], scale, shift, eps)


def _layer_kernel(layer: LayerPlan, weights: Weights, converted: dict) -> NodeKernel:
    """Return the node kernel of a planned linear, converting its weight unless cached."""
    _require(weights, layer.weight)
    key = (id(weights[layer.weight]), layer.kernel, layer.act_bits)
    if key not in converted:
        converted[key] = _matmul(layer, weights)
    bias = None
    if layer.bias is not None:
        _require(weights, layer.bias)
        bias = weights.dense(layer.bias)
    return _linear_kernel(layer, converted[key], bias)


def graph_kernels(plan: GraphPlan, converted: dict | None = None) -> dict[str, NodeKernel]:
    """Return the interpreter kernels of a plan: linears, folded quantizes and row ops.

    `converted` caches each weight's bound kernel by (weight object, kernel, activation bits),
    so graphs sharing weight objects (prefill and decode) convert each weight once.
    """
    weights = plan.graph.weights
    converted = {} if converted is None else converted
    kernels: dict[str, NodeKernel] = {q: _identity for q in plan.folded_quantize}
    for layer in plan.layers:
        try:
            kernels[layer.node] = _layer_kernel(layer, weights, converted)
        except InputError as err:
            raise InputError(f"node %{layer.node} (linear): {err}") from None
    for name in plan.row_ops:
        node = plan.graph.node(name)
        try:
            kernels[name] = _row_op_kernel(node, weights)
        except InputError as err:
            raise InputError(f"node %{name} ({node.op}): {err}") from None
    return kernels


@dataclass
class CpuProgram:
    """A model compiled for the CPU: kernel plans of its prefill and decode graphs."""

    hw_name: str
    prefill: GraphPlan
    decode: GraphPlan | None
    _runners: tuple[GraphRunner, GraphRunner | None] | None = field(default=None, repr=False)

    def plans(self) -> list[GraphPlan]:
        """Return the plans, prefill first."""
        return [p for p in (self.prefill, self.decode) if p is not None]

    def write(self, out_dir: Path) -> list[Path]:
        """Write `out_dir/program`, the readable kernel plan; return its path."""
        header = [f"# sparseflow cpu kernel plan for {self.hw_name}", "# node kernel/variant "
                  "weight activation storage bytes # reason"]  # fmt: skip
        body = [line for plan in self.plans() for line in plan.listing()]
        return write_plan_listing(out_dir, header, body)

    def summary(self) -> dict:
        """Return the plans as JSON: per graph the layers, kernel counts and fallbacks."""
        graphs = {}
        for plan in self.plans():
            phase = str(plan.graph.meta_dict.get("phase", plan.graph.name))
            graphs[phase] = {
                "tokens": plan.tokens,
                "layers": [layer.to_json() for layer in plan.layers],
                "kernel_counts": plan.kernel_counts(),
                "fallback_layers": sum(layer.kernel is Kernel.FALLBACK for layer in plan.layers),
                "folded_quantize": list(plan.folded_quantize),
            }
        return {"backend": "cpu", "target": self.hw_name, "graphs": graphs}

    def runners(self) -> tuple[GraphRunner, GraphRunner | None]:
        """Return interpreters running the planned kernels (weights converted on first call)."""
        if self._runners is None:
            converted: dict = {}
            kernels = graph_kernels(self.prefill, converted)
            prefill = Interpreter(self.prefill.graph, kernels=kernels)
            decode = None
            if self.decode is not None:
                kernels = graph_kernels(self.decode, converted)
                decode = Interpreter(self.decode.graph, kernels=kernels)
            self._runners = (prefill, decode)
        return self._runners


def compile_graphs(
    prefill: Graph,
    decode: Graph | None,
    hw_name: str = "cpu",
    batch: int = 1,
    prompt_len: int = 128,
    policy: KernelPolicy = KernelPolicy.AUTO,
) -> CpuProgram:
    """Plan prefill (batch x prompt_len rows per linear) and decode (batch rows) graphs."""
    decode_plan = plan_graph(decode, batch, policy) if decode is not None else None
    return CpuProgram(hw_name, plan_graph(prefill, batch * prompt_len, policy), decode_plan)


@register_backend(Kind.CPU)
def compile_cpu(request: CompileRequest) -> CpuProgram:
    """Compile a request for a cpu hardware model (kernel policy AUTO)."""
    return compile_graphs(
        request.prefill, request.decode, request.hw.name, request.batch, request.prompt_len
    )
