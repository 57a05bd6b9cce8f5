"""Run a compiled FPGA program's arithmetic bit-accurately on numpy, as the runners' backend.

Requires a `Program` and the compressed graph it was compiled from (weights present). Ensures
a runner whose outputs are what the accelerator computes:
- linears: every weight tile of the program's layout (its core's rows x K group) runs on the
  matrix engine model (`engine_model.execute_matrix`: INT8 activations x INT4/INT8 weights in
  the tile's N:16 mode, int32 accumulation); DEQUANT scales each tile's int32 sums by the
  token and (row, group) scales in f32, adds the bias (FP16) if the linear has one, and
  rounds to the SFU precision;
- attention runs on the engine too (FlightLLM): q is quantized to INT8 per token and head,
  keys and values are the INT8 cache codes with their per-row scales, probabilities are
  quantized per row after folding in the value scales;
- SFU work (norms, RoPE, softmax, mask, eltwise) computes in f32 on inputs rounded to the
  SFU precision and rounds its result to it (FP16 on the FlightLLM targets [P][A]).
Data movement (LOAD/STORE, buffer addresses) is not replayed: the event simulator times it.
The bucket serving each call's length must exist in the program (InputError otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from sparseflow.backends.fpga.engine_model import (
    DENSE_N,
    EngineBuffers,
    EngineParams,
    dequantize,
    execute_matrix,
    load_linear,
    plan_linear,
    read_linear,
)
from sparseflow.backends.fpga.program import Program, WeightPlacement
from sparseflow.ir.formats import FLIGHTLLM_BLOCK
from sparseflow.ir.graph import Graph
from sparseflow.ir.interpreter import Interpreter, bind_inputs
from sparseflow.ir.node import Node
from sparseflow.ir.ops import Op
from sparseflow.passes.quantize import symmetric_quantize

SFU_ROUNDED = {
    *(Op.RMSNORM, Op.LAYERNORM, Op.SILU, Op.GELU, Op.RELU, Op.ADD, Op.MUL, Op.ROPE),
    *(Op.SOFTMAX, Op.SCALE, Op.CAUSAL_MASK, Op.EMBEDDING),
}
PRECISIONS = {"fp16": np.float16, "fp32": np.float32}


def int_codes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (INT8 codes, f32 scales) of per-row symmetric INT8 values (rows: last axis)."""
    return symmetric_quantize(np.asarray(x, np.float32), 8)


def engine_matmul(
    engine: EngineParams, n: int, x_codes: np.ndarray, w_codes: np.ndarray
) -> np.ndarray:
    """Return the engine's int32 x_codes [T, K] @ w_codes [R, K].T in mode N:16."""
    k = -(-x_codes.shape[1] // FLIGHTLLM_BLOCK) * FLIGHTLLM_BLOCK
    op = plan_linear(engine, n, x_codes.shape[0], w_codes.shape[0], k)
    depth = max(op.tok_pairs * op.k_steps, op.row_tiles * op.k_steps, op.tok_pairs * op.row_tiles)
    sized = EngineParams(engine.chain, engine.n_chains, depth, depth, 1, depth)
    buf = EngineBuffers.zeros(sized)
    load_linear(sized, buf, op, x_codes, w_codes)
    execute_matrix(op, sized, buf)
    return read_linear(sized, buf, op, x_codes.shape[0], w_codes.shape[0])


class FunctionalRunner:
    """Run `graph` (prefill or decode) with the program's engine and SFU arithmetic."""

    def __init__(self, program: Program, graph: Graph, phase: str) -> None:
        self.program, self.graph, self.phase = program, graph, phase
        self.dtype = PRECISIONS[str(program.meta.get("sfu_precision", "fp16"))]
        self.weight_codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        kernels = {}
        for node in graph.nodes:
            if node.op is Op.LINEAR:
                kernels[node.name] = self._linear_kernel(node)
            elif node.op is Op.MATMUL:
                kernels[node.name] = self._attention_kernel(node)
            elif node.op in SFU_ROUNDED:
                kernels[node.name] = self._sfu_kernel(node)
        self.interpreter = Interpreter(graph, kernels=kernels)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Return the graph outputs computed as the accelerator computes them."""
        bindings = bind_inputs(self.graph, inputs)
        length = bindings.get("L", -1) + 1 if self.phase == "decode" else np.shape(inputs["ids"])[1]
        self.program.bucket_for(self.phase, int(length))
        return self.interpreter.run(inputs)

    def _round(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # beyond the FP16 range is +-inf, as in the SFU
            return np.asarray(x, np.float32).astype(self.dtype).astype(np.float32)

    def _sfu_kernel(self, node: Node):
        weights = [i for i in node.inputs if self.graph.node(i).op is Op.WEIGHT]

        def kernel(values: list[np.ndarray]) -> np.ndarray:
            it = iter(values)
            args = []
            for name in node.inputs:
                if name in weights:
                    args.append(self._round(self.interpreter.weight(name)))
                else:
                    v = next(it)
                    args.append(self._round(v) if np.issubdtype(v.dtype, np.floating) else v)
            if node.op is Op.EMBEDDING:  # the host looks up rows of the f32 table
                args[1] = self.interpreter.weight(node.inputs[1])
            return self._round(node.op.reference(args, node.attr_dict))

        return kernel

    def _codes(self, placement: WeightPlacement) -> tuple[np.ndarray, np.ndarray]:
        """Return the integer weight codes [rows, k] and f32 scales [rows, groups]."""
        if placement.name not in self.weight_codes:
            packed = self.graph.weights[placement.name]
            dense = packed.to_dense()
            scales = np.asarray(packed.arrays.get("scales", packed.arrays.get("scale")), np.float32)
            scales = scales.reshape(placement.rows, -1)
            per_k = np.repeat(scales, placement.k_group, axis=1)[:, : placement.k]
            codes = np.rint(dense / np.where(per_k == 0, 1, per_k)).astype(np.int64)
            self.weight_codes[placement.name] = (codes, scales)
        return self.weight_codes[placement.name]

    def _linear_kernel(self, node: Node):
        placement = self.program.layout.weight(node.inputs[1])
        engine = self.program.engine
        bias = node.inputs[2] if len(node.inputs) > 2 else None

        def kernel(values: list[np.ndarray]) -> np.ndarray:
            x = values[0]
            x_codes, x_scale = int_codes(x.reshape(-1, x.shape[-1]))
            codes, scales = self._codes(placement)
            y = np.zeros((x_codes.shape[0], placement.rows), np.float32)
            if bias is not None:  # DEQUANT_BIAS adds the FP16 bias before rounding
                y += self._round(self.interpreter.weight(bias))
            for t in placement.tiles:
                rows, ks = slice(t.row0, t.row0 + t.rows), slice(t.k0, t.k0 + t.k)
                acc = engine_matmul(engine, placement.n, x_codes[:, ks], codes[rows, ks])
                group_scale = scales[rows, t.k0 // placement.k_group]
                y[:, rows] += dequantize(acc, x_scale[:, None] * group_scale[None, :])
            return self._round(y).reshape(*x.shape[:-1], placement.rows)

        return kernel

    def _attention_kernel(self, node: Node):
        engine = self.program.engine
        scores = bool(node.attr("transpose_b", False))
        static = None if scores else self._static_scale(node.inputs[1])

        def kernel(values: list[np.ndarray]) -> np.ndarray:
            a, b = values  # scores: q [B,H,T,D], k [B,H,S,D]; context: p [B,H,T,S], v [B,H,S,D]
            out = np.zeros((*a.shape[:-1], b.shape[-1] if not scores else b.shape[-2]), np.float32)
            for bh in np.ndindex(*a.shape[:2]):
                if scores:
                    cache_codes, cache_scale = int_codes(b[bh])  # exact: INT8 rows
                    q_codes, q_scale = int_codes(self._round(a[bh]))
                    acc = engine_matmul(engine, DENSE_N, q_codes, cache_codes)
                    out[bh] = dequantize(acc, q_scale[:, None] * cache_scale[None, :])
                elif static is not None:  # one value scale per layer: p codes x v codes exactly
                    p_codes, p_scale = int_codes(self._round(a[bh]))
                    v_codes = np.rint(b[bh] / static).astype(np.int64)
                    acc = engine_matmul(engine, DENSE_N, p_codes, v_codes.T)
                    out[bh] = dequantize(acc, p_scale[:, None] * static)
                else:  # per-row value scales fold into the probabilities before quantizing
                    cache_codes, cache_scale = int_codes(b[bh])
                    p_codes, p_scale = int_codes(self._round(a[bh]) * cache_scale[None, :])
                    acc = engine_matmul(engine, DENSE_N, p_codes, cache_codes.T)
                    out[bh] = dequantize(acc, p_scale[:, None])
            return self._round(out)

        return kernel

    def _static_scale(self, value: str) -> np.float32 | None:
        """Return the static scale of the value cache that `value` reads, if it has one."""
        node = self.graph.node(value)
        while node.op in (Op.REPEAT_KV, Op.KV_APPEND, Op.QUANTIZE):
            if node.op is Op.QUANTIZE and len(node.inputs) == 2:
                return np.float32(self.graph.weights.dense(node.inputs[1]).reshape(()))
            node = self.graph.node(node.inputs[1 if node.op is Op.KV_APPEND else 0])
        return None
