"""Analytical per-kernel time and energy for GPU and CPU targets (roofline with efficiencies).

Contract of one kernel (`KernelWork`): `flops` is the dense-equivalent operation count (a
MAC counts 2); `weights` are the types of the weights it reads, as stored (sparse format,
quantization), of which it reads `weight_fraction` (an embedding reads its ids' rows).

    compute_time = work the kernel executes / (applicable peak x efficiency of its dtype)
    memory_time  = bytes moved / (peak DRAM bandwidth x bandwidth efficiency)
    time = max(compute, memory) + (1 - overlap) x min(compute, memory) + launch overhead
    power = static + busy + dynamic energy / time, never above the power limit (tdp_w)

Modelling choices, each stated where it is made:
- Matrix ops (linear, attention) run at the dtype's peak: tensor cores on GPUs, FMA or VNNI
  on CPUs; INT4 without an INT4 path runs at the INT8 peak; CPUs up-convert FP16/BF16 to FP32.
  Float GEMMs reach `gemm_compute_efficiency` of that peak, INT8/INT4 ones
  `int8_gemm_compute_efficiency`.
- A GEMM's efficiency depends on its shape through its arithmetic intensity: a decode GEMV
  (one row) is all memory time, a long-prompt GEMM all compute time, and shapes near the
  ridge point pay both, overlapped by `compute_memory_overlap` (a device property that
  calibration fits; 1 is the ideal roofline).
- 2:4 weights on a GPU with sparse tensor cores run at peak x sparse_2to4_speedup; elsewhere
  (V100S) tensor cores gain nothing. Unstructured sparsity (and N:M patterns other than 2:4,
  FlightLLM's N:16 blocks) never speeds up tensor cores. Block-sparse GPU kernels, and every
  sparse CPU kernel, skip zero weights at the device's `sparse_compute_efficiency`. A runtime
  picks the faster of the sparse and dense kernel.
- Weights cross DRAM as deployed (`weight_storage_bytes` of their type: the one count the
  report's `weight_bytes` sums too), so compressed weights cut memory traffic.
- Norms, element-wise ops and embeddings run on vector units at the FP32 peak.
- Every byte crosses DRAM once: no L2/LLC reuse between kernels (pessimistic for small
  layers whose weights fit in cache).
- Power: idle (`static_power_w`) always, `busy_power_w` while a kernel runs, and energy per
  operation and per DRAM byte. A kernel whose power would exceed `tdp_w` is slowed down
  until it draws exactly `tdp_w` (the board's power limit lowers clocks), bound "power".
The time never beats the roofline floor: executed work / peak and bytes / peak bandwidth.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from sparseflow.hw_models.schema import CpuModel, GpuModel, HardwareModel
from sparseflow.ir.dtypes import DType, parse_dtype
from sparseflow.ir.errors import InputError
from sparseflow.ir.ops import OpClass, weight_storage_bytes
from sparseflow.ir.types import SparseFormat, SparsePattern, TensorType
from sparseflow.simulator.energy import (
    EnergyEvents,
    EnergyLedger,
    busy_energy,
    dynamic_energy,
    static_energy,
)

AMOUNT_FIELDS = ("flops", "activation_bytes_read", "bytes_written", "kv_bytes_read")
MATRIX_OPS = frozenset({OpClass.LINEAR, OpClass.ATTENTION})
COMPUTE_DTYPES = (DType.F32, DType.F16, DType.BF16, DType.I8, DType.I4)


@dataclass(frozen=True)
class KernelWork:
    """Describe one kernel's work; validate it on construction (InputError names the field).

    flops: dense-equivalent operations (a MAC counts 2). dtype: the compute type (one of
    COMPUTE_DTYPES; its short name is accepted). weights: the types of the weights read, as
    stored; the first (the matrix; a bias follows it) gives the kernel's sparse format.
    weight_fraction: the share of the weights read (an embedding reads its ids' rows).
    """

    name: str
    op_class: OpClass
    flops: float
    activation_bytes_read: float = 0.0
    bytes_written: float = 0.0
    kv_bytes_read: float = 0.0
    dtype: DType = DType.F16
    weights: tuple[TensorType, ...] = ()
    weight_fraction: float = 1.0

    def __post_init__(self) -> None:
        set_field = object.__setattr__
        if self.op_class not in [m.value for m in OpClass] or self.op_class == OpClass.SOURCE:
            self.fail("op_class", f"expected one of {KERNEL_CLASSES}, got {self.op_class!r}")
        set_field(self, "op_class", OpClass(self.op_class))
        set_field(self, "dtype", self.compute_dtype())
        for name in AMOUNT_FIELDS:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                self.fail(name, f"must be a finite number >= 0, got {value!r}")
        if not 0 <= self.weight_fraction <= 1:
            self.fail("weight_fraction", f"must lie in [0, 1], got {self.weight_fraction}")
        if self.sparse is not None and self.op_class not in MATRIX_OPS:
            self.fail("weights", "only linear and attention kernels take sparse weights")

    def compute_dtype(self) -> DType:
        """Return the dtype field as a DType, or fail naming the allowed ones."""
        value = self.dtype
        if isinstance(value, str) and value in [d.short for d in COMPUTE_DTYPES]:
            value = parse_dtype(value)
        if value not in COMPUTE_DTYPES:
            allowed = [d.short for d in COMPUTE_DTYPES]
            self.fail("dtype", f"expected one of {allowed}, got {value!r}")
        return value

    def fail(self, name: str, problem: str) -> None:
        """Raise an InputError naming this kernel and field."""
        raise InputError(f"kernel '{self.name}': field '{name}': {problem}")

    @property
    def sparse(self) -> SparseFormat | None:
        """Return the sparse format of the kernel's weights (None when dense)."""
        return self.weights[0].sparse if self.weights else None

    @property
    def density(self) -> float:
        """Return the fraction of weights kept (1 when dense)."""
        return self.sparse.density if self.sparse is not None else 1.0

    @property
    def stored_weight_bytes(self) -> int:
        """Return the bytes of weights the kernel reads, as deployed."""
        return round(sum(weight_storage_bytes(w) for w in self.weights) * self.weight_fraction)


KERNEL_CLASSES = [c.value for c in OpClass if c is not OpClass.SOURCE]


@dataclass(frozen=True)
class KernelTiming:
    """Give one kernel's modelled time (seconds), its bound, traffic and energy."""

    name: str
    op_class: str
    time_s: float
    compute_time_s: float
    memory_time_s: float
    launch_overhead_s: float
    bound: str
    flops_executed: float
    bytes_moved: float
    peak_ops_per_s: float
    peak_bandwidth_bytes_per_s: float
    energy: EnergyLedger

    @property
    def energy_j(self) -> float:
        """Return the kernel's total energy (dynamic + static) in joules."""
        return self.energy.total_j

    @property
    def compute_utilization(self) -> float:
        """Return executed work over what the peak could do in `time_s` (0..1)."""
        return self.flops_executed / (self.time_s * self.peak_ops_per_s) if self.time_s else 0.0

    @property
    def bandwidth_utilization(self) -> float:
        """Return bytes moved over what peak bandwidth could move in `time_s` (0..1)."""
        capacity = self.time_s * self.peak_bandwidth_bytes_per_s
        return self.bytes_moved / capacity if capacity else 0.0

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready record of the timing."""
        return {
            "name": self.name,
            "op_class": self.op_class,
            "time_s": self.time_s,
            "compute_time_s": self.compute_time_s,
            "memory_time_s": self.memory_time_s,
            "launch_overhead_s": self.launch_overhead_s,
            "bound": self.bound,
            "flops_executed": self.flops_executed,
            "bytes_moved": self.bytes_moved,
            "energy_j": self.energy_j,
            "energy": self.energy.to_dict(),
        }


@dataclass(frozen=True)
class ComputePlan:
    """Hold how a kernel's arithmetic runs: work executed, peak used, efficiency reached."""

    flops_executed: float
    peak_ops_per_s: float
    efficiency: float

    @property
    def time_s(self) -> float:
        """Return the compute time of the plan."""
        return self.flops_executed / (self.peak_ops_per_s * self.efficiency)


def estimate_kernels(hw: HardwareModel, works: Iterable[KernelWork]) -> list[KernelTiming]:
    """Estimate each kernel of `works` on `hw`, in order (identical kernels are timed once)."""
    timed: dict[tuple, KernelTiming] = {}
    timings = []
    for work in works:
        key = tuple(getattr(work, f.name) for f in dataclasses.fields(work) if f.name != "name")
        if key not in timed:
            timed[key] = estimate_kernel(hw, work)
        timings.append(dataclasses.replace(timed[key], name=work.name))
    return timings


def estimate_kernel(hw: HardwareModel, work: KernelWork) -> KernelTiming:
    """Estimate one kernel's time, bound and energy on a GPU or CPU model."""
    hw = analytical_model(hw)
    plan = compute_plan(hw, work)
    bytes_moved = (
        work.stored_weight_bytes
        + work.activation_bytes_read
        + work.bytes_written
        + work.kv_bytes_read
    )
    peak_bw = dram_bandwidth(hw)
    memory_time_s = bytes_moved / (peak_bw * hw.efficiency.memory_bandwidth_efficiency)
    launch_s = hw.efficiency.kernel_launch_overhead_s
    dynamic = dynamic_energy(hw, energy_events(hw, work, plan.flops_executed, bytes_moved))
    time_s = float(kernel_time_s(hw, plan.time_s, memory_time_s, dynamic.dynamic_j))
    return KernelTiming(
        name=work.name,
        op_class=work.op_class.value,
        time_s=time_s,
        compute_time_s=plan.time_s,
        memory_time_s=memory_time_s,
        launch_overhead_s=launch_s,
        bound=str(bound_of(hw, plan.time_s, memory_time_s, dynamic.dynamic_j)),
        flops_executed=plan.flops_executed,
        bytes_moved=bytes_moved,
        peak_ops_per_s=plan.peak_ops_per_s,
        peak_bandwidth_bytes_per_s=peak_bw,
        energy=dynamic + static_energy(hw, time_s) + busy_energy(hw, time_s),
    )


def analytical_model(hw: HardwareModel) -> GpuModel | CpuModel:
    """Return `hw` if the analytical model covers it (gpu, cpu); else raise naming its kind."""
    if not isinstance(hw, GpuModel | CpuModel):
        raise InputError(
            f"{hw.source_file or hw.name}: field 'kind': the analytical model covers gpu and "
            f"cpu targets; '{hw.name}' is {hw.kind.value} (use the event simulator)"
        )
    return hw


def overlapped_s(hw: GpuModel | CpuModel, compute_s: float, memory_s: float) -> float:
    """Return compute and memory time combined: the longer plus the unhidden share of the other.

    Works on floats and on numpy arrays alike.
    """
    hidden = hw.efficiency.compute_memory_overlap
    return np.maximum(compute_s, memory_s) + (1 - hidden) * np.minimum(compute_s, memory_s)


def kernel_time_s(
    hw: GpuModel | CpuModel, compute_s: float, memory_s: float, dynamic_j: float
) -> float:
    """Return a kernel's time: overlapped compute and memory plus launch, or longer at tdp_w.

    At the power limit the device spends `dynamic_j` plus static and busy power x time in
    exactly tdp_w x time. Works on floats and on numpy arrays alike.
    """
    unthrottled_s = overlapped_s(hw, compute_s, memory_s) + hw.efficiency.kernel_launch_overhead_s
    return np.maximum(unthrottled_s, dynamic_j / power_headroom_w(hw))


def power_headroom_w(hw: GpuModel | CpuModel) -> float:
    """Return the power left for per-event energy under the limit: tdp - static - busy."""
    power = hw.power
    return power.tdp_w - power.static_power_w - power.busy_power_w


def bound_of(
    hw: GpuModel | CpuModel, compute_s: float, memory_s: float, dynamic_j: float
) -> np.ndarray:
    """Name what limits a kernel: 'power' (held at tdp_w), 'launch', 'compute' or 'memory'.

    Works on floats (a 0-d array: take `str` of it) and on numpy arrays alike.
    """
    launch_s = hw.efficiency.kernel_launch_overhead_s
    unthrottled_s = overlapped_s(hw, compute_s, memory_s) + launch_s
    conditions = [
        dynamic_j / power_headroom_w(hw) > unthrottled_s,
        launch_s > np.maximum(compute_s, memory_s),
        np.asarray(compute_s) >= memory_s,
    ]
    return np.select(conditions, ["power", "launch", "compute"], "memory")


def dram_bandwidth(hw: GpuModel | CpuModel) -> float:
    """Return the device's peak DRAM bandwidth in bytes per second."""
    if isinstance(hw, GpuModel):
        return hw.memory.hbm_bandwidth_bytes_per_s
    return hw.memory.dram_bandwidth_bytes_per_s


def compute_plan(hw: GpuModel | CpuModel, work: KernelWork) -> ComputePlan:
    """Choose the peak and efficiency a kernel runs at; take the faster sparse or dense kernel."""
    eff = hw.efficiency
    if work.op_class not in MATRIX_OPS:
        return ComputePlan(work.flops, vector_peak(hw), eff.vector_compute_efficiency)
    integer = work.dtype in (DType.I8, DType.I4)
    gemm_eff = eff.int8_gemm_compute_efficiency if integer else eff.gemm_compute_efficiency
    dense = ComputePlan(work.flops, matrix_peak(hw, work.dtype), gemm_eff)
    sparse = sparse_plan(hw, work, dense.peak_ops_per_s)
    return sparse if sparse is not None and sparse.time_s < dense.time_s else dense


def sparse_plan(hw: GpuModel | CpuModel, work: KernelWork, dense_peak: float) -> ComputePlan | None:
    """Return the sparse kernel's plan, or None where the device gains nothing from the pattern."""
    sparse = work.sparse
    kept_flops = work.flops * work.density
    sparse_eff = hw.efficiency.sparse_compute_efficiency
    if sparse is None:
        return None
    if isinstance(hw, CpuModel):
        return ComputePlan(kept_flops, dense_peak, sparse_eff)
    if is_2to4(sparse) and hw.peaks.sparse_2to4_speedup is not None:
        # Sparse tensor cores execute only the kept half at speedup x the dense rate.
        sparse_peak = dense_peak * hw.peaks.sparse_2to4_speedup * work.density
        return ComputePlan(kept_flops, sparse_peak, sparse_eff)
    if sparse.pattern is SparsePattern.BLOCK:
        return ComputePlan(kept_flops, dense_peak, sparse_eff)
    return None


def is_2to4(sparse: SparseFormat) -> bool:
    """Return True for the 2:4 pattern that sparse tensor cores run."""
    return sparse.pattern is SparsePattern.NM and (sparse.n, sparse.m) == (2, 4)


def matrix_peak(hw: GpuModel | CpuModel, dtype: DType) -> float:
    """Return the dense peak of matrix ops in `dtype` (ops/s, a MAC counts 2)."""
    if isinstance(hw, CpuModel):
        if dtype in (DType.I8, DType.I4):
            return hw.compute.peak_int8_ops_per_s
        return hw.compute.peak_fp32_flops_per_s
    peaks = hw.peaks
    if dtype is DType.I4 and peaks.int4_tensor_ops_per_s is not None:
        return peaks.int4_tensor_ops_per_s
    if dtype in (DType.I8, DType.I4):
        return peaks.int8_tensor_ops_per_s
    if dtype in (DType.F16, DType.BF16):
        return peaks.fp16_tensor_flops_per_s
    return peaks.fp32_flops_per_s


def vector_peak(hw: GpuModel | CpuModel) -> float:
    """Return the peak of vector (non-matrix) ops: the FP32 rate."""
    if isinstance(hw, CpuModel):
        return hw.compute.peak_fp32_flops_per_s
    return hw.peaks.fp32_flops_per_s


def energy_events(
    hw: GpuModel | CpuModel, work: KernelWork, flops_executed: float, bytes_moved: float
) -> EnergyEvents:
    """Count a kernel's energy events: executed ops by dtype and DRAM bytes."""
    dtype = work.dtype if work.op_class in MATRIX_OPS else DType.F32
    ops_field = {
        DType.F32: "fp32_flops",
        DType.F16: "fp16_flops",
        DType.BF16: "fp16_flops",
        DType.I8: "int8_ops",
        DType.I4: "int4_ops",
    }[dtype]
    bytes_field = "hbm_bytes" if isinstance(hw, GpuModel) else "ddr_bytes"
    return EnergyEvents(**{ops_field: flops_executed, bytes_field: bytes_moved})
