"""Build the interpreter kernels of a GPU plan: weights kept on the device, numpy in and out.

Requires a `GraphPlan` whose graph has weight values. Ensures one function per planned node,
called by `ir.interpreter.Interpreter` with the node's non-weight inputs. Each node's weights
are converted from their stored layout (never re-pruned from a dense matrix) and uploaded once
through a `DeviceWeights` cache that the prefill and decode graphs of a compiled model share;
activations go to the device and back on every call. Linear biases are added on the host.

Integer activations: the graph's `quantize` node holds q * s, the real values of its per-token
codes (the reference semantics). `token_codes` recovers q and s from them exactly (q is at most
127 in magnitude, so v / s rounds back to q), and the int8 GEMM takes those codes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sparseflow.backends.gpu.attention import decode_attention
from sparseflow.backends.gpu.dense_gemm import launch_gemm
from sparseflow.backends.gpu.device import cuda
from sparseflow.backends.gpu.int4 import launch_int4_gemm, launch_int4_gemv
from sparseflow.backends.gpu.int8 import MAX_DEPTH, launch_int8_gemm
from sparseflow.backends.gpu.launch import DeviceArray, ceil_div, default_row_threads, default_tile
from sparseflow.backends.gpu.norms import layernorm_kernel, rmsnorm_kernel, run_rows, softmax_kernel
from sparseflow.backends.gpu.plan import GpuKernel, GraphPlan, NodePlan, activation_bits
from sparseflow.backends.gpu.rotary import inverse_frequencies, launch_rope
from sparseflow.backends.gpu.sparse24 import launch_spmm_24, pack_24_metadata
from sparseflow.ir.errors import InputError
from sparseflow.ir.formats import PackedWeight
from sparseflow.ir.graph import Graph
from sparseflow.ir.interpreter import Kernel as NodeKernel
from sparseflow.ir.node import Node
from sparseflow.ir.ops import Op

Matmul = Callable[[np.ndarray], np.ndarray]  # X [T, K] f32 -> Y [T, N] f32


class DeviceWeights:
    """Upload each converted weight once: one device copy per (weight, form, storage type)."""

    def __init__(self) -> None:
        self._arrays: dict[tuple[str, str, str], tuple[DeviceArray, ...]] = {}

    def get(
        self, graph: Graph, name: str, form: str, convert: Callable[[object], tuple]
    ) -> tuple[DeviceArray, ...]:
        """Return the device arrays of `convert(value of weight name)`, uploading on first use."""
        key = (name, form, str(graph.node(name).type))
        if key not in self._arrays:
            if name not in graph.weights:
                raise InputError(f"weight {name!r} has no value (shape-only graph?)")
            host = convert(graph.weights[name])
            self._arrays[key] = tuple(cuda.to_device(np.ascontiguousarray(a)) for a in host)
        return self._arrays[key]

    @property
    def nbytes(self) -> int:
        """Return the bytes held on the device."""
        return sum(int(a.nbytes) for arrays in self._arrays.values() for a in arrays)


def _packed(value: object, kernel: GpuKernel) -> PackedWeight:
    if not isinstance(value, PackedWeight):
        raise InputError(f"{kernel.value} needs compressed storage, got a dense array")
    return value


def _dense(value: object) -> tuple[np.ndarray]:
    if isinstance(value, PackedWeight):
        return (value.to_dense(),)
    return (np.asarray(value, dtype=np.float32),)


def _spmm_24(value: object) -> tuple[np.ndarray, np.ndarray]:
    """Return (f32 values [N, K_pad/2], u32 2-bit metadata) of 2:4 N:M storage."""
    pw = _packed(value, GpuKernel.SPMM_24)
    indices = pw.arrays["indices"]
    if pw.type.quant is None:
        return pw.arrays["values"].astype(np.float32), pack_24_metadata(indices)
    n, k = pw.shape
    dense = np.zeros((n, ceil_div(k, 4) * 4), np.float32)
    dense[:, :k] = pw.to_dense()
    cols = (np.arange(indices.shape[1]) // 2) * 4 + indices.astype(np.int64)
    return np.take_along_axis(dense, cols, axis=1), pack_24_metadata(indices)


def _int8(value: object) -> tuple[np.ndarray, np.ndarray]:
    pw = _packed(value, GpuKernel.INT8_GEMM)
    return pw.arrays["values"].astype(np.int8), pw.arrays["scale"].astype(np.float32)


def _int4(value: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pw = _packed(value, GpuKernel.INT4)
    n, k = pw.shape
    group = pw.type.quant.group_size or k
    packed, scales, zeros = (pw.arrays[a] for a in ("packed", "scales", "zeros"))
    groups = ceil_div(k, group)
    if packed.shape != (n, k // 2) or scales.shape != (n, groups) or zeros.shape != scales.shape:
        raise InputError(
            f"int4 storage {packed.shape}, {scales.shape}, {zeros.shape} does not fit W[{n},{k}]"
            f" with groups of {group}"
        )
    return packed.astype(np.uint8), scales.astype(np.float32), zeros.astype(np.uint8)


def token_codes(x: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (int8 codes [T, K], f32 scales [T]) of per-token quantized values x = q * s."""
    qmax = np.float32(2 ** (bits - 1) - 1)
    scale = (np.abs(x).max(axis=1) / qmax).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1.0))
    codes = np.clip(np.rint(x / safe[:, None]), -qmax, qmax).astype(np.int8)
    return codes, scale


def _launch_output(rows: int, cols: int) -> DeviceArray:
    return cuda.device_array((rows, cols), dtype=np.float32)


def _gemm(w: DeviceArray) -> Matmul:
    def run(x: np.ndarray) -> np.ndarray:
        y = _launch_output(x.shape[0], w.shape[0])
        launch_gemm(cuda.to_device(x), w, y, default_tile())
        return y.copy_to_host()

    return run


def _spmm(values: DeviceArray, meta: DeviceArray) -> Matmul:
    def run(x: np.ndarray) -> np.ndarray:
        y = _launch_output(x.shape[0], values.shape[0])
        launch_spmm_24(cuda.to_device(x), values, meta, y, default_tile())
        return y.copy_to_host()

    return run


def _int8_gemm(qw: DeviceArray, sw: DeviceArray, bits: int) -> Matmul:
    if qw.shape[1] > MAX_DEPTH:
        raise InputError(f"K = {qw.shape[1]} could overflow the int8 GEMM's int32 accumulator")

    def run(x: np.ndarray) -> np.ndarray:
        qx, sx = token_codes(x, bits)
        shape = (x.shape[0], qw.shape[0])
        acc, y = cuda.device_array(shape, dtype=np.int32), _launch_output(*shape)
        launch_int8_gemm(cuda.to_device(qx), cuda.to_device(sx), qw, sw, acc, y, default_tile())
        return y.copy_to_host()

    return run


def _int4_gemm(packed: DeviceArray, scales: DeviceArray, zeros: DeviceArray, group: int) -> Matmul:
    n = packed.shape[0]

    def run(x: np.ndarray) -> np.ndarray:
        if x.shape[0] == 1:  # one token: the GEMV, one block per output row
            y = cuda.device_array(n, dtype=np.float32)
            args = (cuda.to_device(x[0]), packed, scales, zeros, group, y, default_row_threads())
            launch_int4_gemv(*args)
            return y.copy_to_host()[None, :]
        y = _launch_output(x.shape[0], n)
        launch_int4_gemm(cuda.to_device(x), packed, scales, zeros, group, y, default_tile())
        return y.copy_to_host()

    return run


def _matmul(graph: Graph, node: Node, kernel: GpuKernel, device: DeviceWeights) -> Matmul:
    """Return the planned matmul of a linear node, bound to its weight on the device."""
    name = node.inputs[1]
    if kernel in (GpuKernel.GEMM, GpuKernel.GEMM_DEQUANT):
        return _gemm(*device.get(graph, name, "f32", _dense))
    if kernel is GpuKernel.SPMM_24:
        return _spmm(*device.get(graph, name, "2:4", _spmm_24))
    if kernel is GpuKernel.INT8_GEMM:
        return _int8_gemm(*device.get(graph, name, "int8", _int8), activation_bits(graph, node))
    quant = graph.node(name).type.quant
    group = quant.group_size or int(graph.node(name).type.shape[1])
    return _int4_gemm(*device.get(graph, name, "int4", _int4), group)


def _linear(graph: Graph, node: Node, kernel: GpuKernel, device: DeviceWeights) -> NodeKernel:
    """Wrap the matmul into the node kernel: flatten batch dims, add the bias, reshape."""
    matmul = _matmul(graph, node, kernel, device)
    bias = host_bias(graph, node)

    def run(xs: list[np.ndarray]) -> np.ndarray:
        x = xs[0]
        y = matmul(np.ascontiguousarray(x.reshape(-1, x.shape[-1]), dtype=np.float32))
        if bias is not None:
            y += bias
        return y.reshape(*x.shape[:-1], y.shape[-1])

    return run


def host_bias(graph: Graph, node: Node) -> np.ndarray | None:
    """Return a linear's bias as a host f32 vector (added after the kernel), or None."""
    if len(node.inputs) < 3:
        return None
    if node.inputs[2] not in graph.weights:
        raise InputError(f"weight {node.inputs[2]!r} has no value (shape-only graph?)")
    return graph.weights.dense(node.inputs[2])


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _norm(graph: Graph, node: Node, device: DeviceWeights) -> NodeKernel:
    params = [device.get(graph, name, "f32", _dense)[0] for name in node.inputs[1:]]
    factory = rmsnorm_kernel if node.op is Op.RMSNORM else layernorm_kernel
    eps = np.float32(node.attr("eps"))
    return lambda xs: run_rows(factory, _f32(xs[0]), None, *params, eps)


def _softmax(xs: list[np.ndarray]) -> np.ndarray:
    return run_rows(softmax_kernel, _f32(xs[0]), None)


def _rope(node: Node) -> NodeKernel:
    """Return RoPE over x [B, H, T, D]: the kernel rotates the first rotary_dim features."""
    rotary = int(node.attr("rotary_dim") or node.type.shape[3])
    inv_freq = cuda.to_device(inverse_frequencies(rotary, float(node.attr("theta"))))

    def run(xs: list[np.ndarray]) -> np.ndarray:
        x, pos = xs
        b, h, t, _ = x.shape
        tokens_first = _f32(x[..., :rotary].transpose(2, 0, 1, 3).reshape(t, b * h, rotary))
        y = cuda.device_array(tokens_first.shape, dtype=np.float32)
        threads = default_row_threads()  # small blocks on the simulator, 4 warps on a GPU
        launch_rope(cuda.to_device(tokens_first), cuda.to_device(pos), inv_freq, y, threads)
        out = x.astype(np.float32)
        out[..., :rotary] = y.copy_to_host().reshape(t, b, h, rotary).transpose(1, 2, 0, 3)
        return out

    return run


def _attention(node: Node) -> NodeKernel:
    """Return the fused decode attention: keys 0..pos[0] of each cache are visible."""
    scale = float(node.attr("scale"))

    def run(xs: list[np.ndarray]) -> np.ndarray:
        q, k, v, pos = xs
        visible = min(int(pos[0]) + 1, k.shape[2])
        lengths = np.full(q.shape[0], visible, dtype=np.int32)
        out = decode_attention(_f32(q[:, :, 0, :]), _f32(k), _f32(v), lengths, scale=scale)
        return out[:, :, None, :]

    return run


def node_kernel(graph: Graph, entry: NodePlan, device: DeviceWeights) -> NodeKernel | None:
    """Return the kernel of one planned node, or None when it runs on the host."""
    node = graph.node(entry.node)
    kernel = entry.kernel
    if kernel in (GpuKernel.RMSNORM, GpuKernel.LAYERNORM):
        return _norm(graph, node, device)
    if kernel is GpuKernel.SOFTMAX:
        return _softmax
    if kernel is GpuKernel.ROPE:
        return _rope(node)
    if kernel is GpuKernel.DECODE_ATTENTION:
        return _attention(node)
    if kernel is GpuKernel.HOST:
        return None
    return _linear(graph, node, kernel, device)


def graph_kernels(plan: GraphPlan, device: DeviceWeights) -> dict[str, NodeKernel]:
    """Return the interpreter kernels of every planned GPU node; errors name the node."""
    kernels = {}
    for entry in plan.nodes:
        try:
            kernel = node_kernel(plan.graph, entry, device)
        except InputError as err:
            raise InputError(f"node %{entry.node} ({entry.kernel.value}): {err}") from None
        if kernel is not None:
            kernels[entry.node] = kernel
    return kernels
