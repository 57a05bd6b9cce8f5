"""The GPU backend: compile a compressed graph to a numba.cuda kernel plan and run it.

Requires a `CompileRequest` (prefill graph, optional decode graph, a gpu hardware model).
Ensures a `GpuProgram`: `write` lists the kernel plan (`DIR/program`, one line per compute
node: kernel, shapes, weight bytes, reason), `summary` gives it as JSON with `cuda_simulator`
(whether numba's CUDA simulator, not a GPU, runs the kernels), and `runners` returns runners
whose planned nodes run the GPU kernels and whose other nodes run their numpy references.

Lowering: single-token attention chains of the graphs are fused into `decode_attention`
(`fusion`); kernels are chosen per node from the storage types (`plan`); weights are uploaded
once per compiled model, shared by its prefill and decode runners (`node_kernels`).

    %y = linear(%h.q8, %w) : W 2:4 -> spmm_24(h.q8, values, 2-bit metadata of w)
    %ctx = matmul(softmax(causal_mask(scale(matmul(%q, repeat_kv(%k))))), repeat_kv(%v))
        -> decode_attention(%q, %k, %v, %pos)

Planning works on shape-only graphs (for `compile`); `runners` needs the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sparseflow.backends.gpu.device import simulator_switching, using_simulator
from sparseflow.backends.gpu.fusion import fuse_decode_attention
from sparseflow.backends.gpu.node_kernels import DeviceWeights, graph_kernels
from sparseflow.backends.gpu.plan import GpuKernel, GraphPlan, plan_graph
from sparseflow.backends.registry import CompileRequest, register_backend, write_plan_listing
from sparseflow.backends.runner import GraphRunner
from sparseflow.hw_models.schema import Kind
from sparseflow.ir.graph import Graph
from sparseflow.ir.interpreter import Interpreter


@dataclass(frozen=True)
class GpuRunner:
    """Run a lowered graph: planned nodes on the GPU kernels, the rest on numpy."""

    interpreter: Interpreter

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Return the graph outputs for these inputs."""
        with simulator_switching():
            return self.interpreter.run(inputs)


@dataclass
class GpuProgram:
    """A model compiled for a GPU: kernel plans of its (lowered) prefill and decode graphs."""

    hw_name: str
    prefill: GraphPlan
    decode: GraphPlan | None
    device: DeviceWeights = field(default_factory=DeviceWeights, repr=False)
    _runners: tuple[GpuRunner, GpuRunner | None] | None = field(default=None, repr=False)

    def plans(self) -> list[GraphPlan]:
        """Return the plans, prefill first."""
        return [p for p in (self.prefill, self.decode) if p is not None]

    def write(self, out_dir: Path) -> list[Path]:
        """Write `out_dir/program`, the readable kernel plan; return its path."""
        where = "numba's CUDA simulator" if using_simulator() else "a CUDA GPU"
        header = [
            f"# sparseflow gpu kernel plan for {self.hw_name} (kernels run on {where})",
            "# node kernel inputs -> output weight-bytes # reason (host: numpy reference)",
        ]
        body = [line for plan in self.plans() for line in plan.listing()]
        return write_plan_listing(out_dir, header, body)

    def summary(self) -> dict:
        """Return the plans as JSON: per graph the kernel counts and the GPU nodes."""
        graphs = {}
        for plan in self.plans():
            graphs[plan.phase] = {
                "kernel_counts": plan.kernel_counts(),
                "nodes": [n.to_json() for n in plan.nodes if n.kernel is not GpuKernel.HOST],
                "dequantized_fallbacks": [
                    n.node for n in plan.nodes if n.kernel is GpuKernel.GEMM_DEQUANT
                ],
            }
        return {
            "backend": "gpu",
            "target": self.hw_name,
            "cuda_simulator": using_simulator(),
            "device_weight_bytes": self.device.nbytes,
            "graphs": graphs,
        }

    def runners(self) -> tuple[GraphRunner, GraphRunner | None]:
        """Return the runners (weights uploaded to the device on the first call)."""
        if self._runners is None:
            prefill = self._runner(self.prefill)
            decode = self._runner(self.decode) if self.decode is not None else None
            self._runners = (prefill, decode)
        return self._runners

    def _runner(self, plan: GraphPlan) -> GpuRunner:
        return GpuRunner(Interpreter(plan.graph, kernels=graph_kernels(plan, self.device)))


def compile_graphs(prefill: Graph, decode: Graph | None, hw_name: str = "gpu") -> GpuProgram:
    """Lower and plan a prefill and an optional decode graph for the GPU."""
    decode_plan = plan_graph(fuse_decode_attention(decode)) if decode is not None else None
    return GpuProgram(hw_name, plan_graph(fuse_decode_attention(prefill)), decode_plan)


@register_backend(Kind.GPU)
def compile_gpu(request: CompileRequest) -> GpuProgram:
    """Compile a request for a gpu hardware model."""
    return compile_graphs(request.prefill, request.decode, request.hw.name)
