"""Analytical per-kernel time and energy for GPU and CPU targets (roofline with efficiencies).

Contract of one kernel (`KernelWork`): `flops` is the dense-equivalent operation count (a
MAC counts 2); `weight_bytes` are the weights' bytes in dense layout at `weight_bits`;
`sparse_pattern` names how the weights are stored and which compute the hardware can skip.

    time = max(compute_time, memory_time) + kernel launch overhead
    compute_time = work the kernel executes / (applicable peak x efficiency)
    memory_time  = bytes moved / (peak DRAM bandwidth x bandwidth efficiency)

Modelling choices, each stated where it is made:
- Matrix ops (linear, attention) run at the dtype's peak: tensor cores on GPUs, FMA or VNNI
  on CPUs; INT4 without an INT4 path runs at the INT8 peak; CPUs up-convert FP16/BF16 to FP32.
- 2:4 weights on a GPU with sparse tensor cores run at peak x sparse_2to4_speedup; elsewhere
  (V100S) tensor cores gain nothing. Unstructured sparsity never speeds up tensor cores.
  Block-sparse GPU kernels, and every sparse CPU kernel, skip zero weights at the device's
  `sparse_compute_efficiency`. A runtime picks the faster of the sparse and dense kernel.
- Sparse weights are stored compressed (`stored_weight_bytes`), cutting memory traffic. A
  kernel built from a graph carries its weights' bytes as deployed (`weight_storage_bytes` of
  their type: the one count the report's `weight_bytes` sums too); a kernel described only by
  its pattern uses the per-pattern formats below.
- Norms, element-wise ops and embeddings run on vector units at the FP32 peak.
- Every byte crosses DRAM once: no L2/LLC reuse between kernels (pessimistic for small
  layers whose weights fit in cache).
The time never beats the roofline floor: executed work / peak and bytes / peak bandwidth.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from enum import StrEnum

from sparseflow.hw_models.schema import CpuModel, GpuModel, HardwareModel
from sparseflow.ir import types as ir_types
from sparseflow.ir.dims import eval_dim
from sparseflow.ir.dtypes import DType as IrDType
from sparseflow.ir.errors import InputError
from sparseflow.ir.ops import storage_bytes
from sparseflow.simulator.energy import EnergyEvents, EnergyLedger, energy_of


class OpClass(StrEnum):
    """Kernel families the analytical model distinguishes."""

    LINEAR = "linear"
    ATTENTION = "attention"
    NORM = "norm"
    ELEMENTWISE = "elementwise"
    EMBEDDING = "embedding"


class Dtype(StrEnum):
    """Compute data types."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"
    INT4 = "int4"


class SparsePattern(StrEnum):
    """Weight sparsity patterns; each names a compressed storage format."""

    NM_2_4 = "2:4"
    UNSTRUCTURED = "unstructured"
    BLOCK = "block"


AMOUNT_FIELDS = ("flops", "weight_bytes", "activation_bytes_read", "bytes_written", "kv_bytes_read")
MATRIX_OPS = frozenset({OpClass.LINEAR, OpClass.ATTENTION})
DTYPE_BITS = {Dtype.FP32: 32, Dtype.FP16: 16, Dtype.BF16: 16, Dtype.INT8: 8, Dtype.INT4: 4}
# Unstructured weights: a 1-bit-per-element bitmap plus the kept values (an assumption; CSR
# with 16-bit indices costs more above ~6% density).
BITMAP_BITS_PER_ELEMENT = 1
# Block-sparse weights (BSR): one 32-bit column index per kept block.
BLOCK_INDEX_BYTES = 4


@dataclass(frozen=True)
class KernelWork:
    """Describe one kernel's work; validate it on construction (InputError names the field).

    flops: dense-equivalent operations (a MAC counts 2). weight_bytes: dense layout at
    weight_bits (default: the dtype's bits). sparse_pattern: None (dense) or how the weights
    are stored; density: fraction of weights kept (exactly 0.5 for 2:4, 1 when dense).
    block_size: elements per block for the block pattern. packed_weight_bytes: the weights'
    bytes as deployed, when their type is known (`weight_storage_bytes`); None models them
    from the pattern.
    """

    name: str
    op_class: OpClass
    flops: float
    weight_bytes: float = 0.0
    activation_bytes_read: float = 0.0
    bytes_written: float = 0.0
    kv_bytes_read: float = 0.0
    dtype: Dtype = Dtype.FP16
    weight_bits: int | None = None
    sparse_pattern: SparsePattern | None = None
    density: float = 1.0
    block_size: int = 4
    packed_weight_bytes: int | None = None

    def __post_init__(self) -> None:
        set_field = object.__setattr__
        set_field(self, "op_class", self.as_enum(OpClass, "op_class"))
        set_field(self, "dtype", self.as_enum(Dtype, "dtype"))
        if self.sparse_pattern is not None:
            set_field(self, "sparse_pattern", self.as_enum(SparsePattern, "sparse_pattern"))
        for f in fields(self):
            if f.name in AMOUNT_FIELDS:
                value = getattr(self, f.name)
                if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                    self.fail(f.name, f"must be a finite number >= 0, got {value!r}")
        packed = self.packed_weight_bytes
        if packed is not None and not (isinstance(packed, int) and packed >= 0):
            self.fail("packed_weight_bytes", f"must be an integer >= 0 or None, got {packed!r}")
        self.check_sparsity()

    def as_enum(self, enum: type[StrEnum], name: str) -> StrEnum:
        """Return field `name` as a member of `enum` or fail naming the allowed values."""
        value = getattr(self, name)
        if not isinstance(value, str) or value not in [m.value for m in enum]:
            self.fail(name, f"expected one of {[m.value for m in enum]}, got {value!r}")
        return enum(value)

    def check_sparsity(self) -> None:
        """Check density, pattern, op class and bit widths agree."""
        if not 0 < self.density <= 1:
            self.fail("density", f"must lie in (0, 1], got {self.density}")
        if self.sparse_pattern is None and self.density != 1:
            self.fail("density", "a density below 1 needs a sparse_pattern")
        if self.sparse_pattern is not None and self.op_class not in MATRIX_OPS:
            self.fail("sparse_pattern", "only linear and attention kernels take sparse weights")
        if self.sparse_pattern is SparsePattern.NM_2_4 and self.density != 0.5:
            self.fail("density", "2:4 keeps exactly half the weights: density must be 0.5")
        if self.weight_bits is not None and self.weight_bits not in (2, 3, 4, 8, 16, 32):
            self.fail("weight_bits", f"expected 2, 3, 4, 8, 16 or 32, got {self.weight_bits}")
        if not (isinstance(self.block_size, int) and self.block_size > 0):
            self.fail("block_size", f"must be a positive integer, got {self.block_size!r}")

    def fail(self, name: str, problem: str) -> None:
        """Raise an InputError naming this kernel and field."""
        raise InputError(f"kernel '{self.name}': field '{name}': {problem}")

    @property
    def stored_weight_bits(self) -> int:
        """Return the bits per stored weight value."""
        return self.weight_bits if self.weight_bits is not None else DTYPE_BITS[self.dtype]


def nm_offset_bits(m: int) -> int:
    """Return the bits of a kept value's position within its group of `m` (2 for 2:4).

    Deployed N:M kernels bit-pack the positions (NVIDIA's 2:4 format keeps 2 bits per kept
    value), where the graph's packed layout (`storage_bytes`) keeps one byte per offset.
    """
    return math.ceil(math.log2(m))


def weight_storage_bytes(weight_type: ir_types.TensorType) -> int:
    """Return a weight's bytes as GPU/CPU kernels and the accelerator store it.

    The graph's packed layout (`storage_bytes`: kept values, indices, quant scales and zero
    points) with two deployment choices: unquantized float weights in fp16, and N:M offsets
    bit-packed at `nm_offset_bits` instead of a byte each.
    """
    if weight_type.dtype.is_float and weight_type.quant is None:
        weight_type = weight_type.with_(dtype=IrDType.F16)
    total = storage_bytes(weight_type)
    sparse = weight_type.sparse
    if sparse is not None and sparse.pattern is ir_types.SparsePattern.NM:
        rows, cols = (eval_dim(d) for d in weight_type.shape)
        offsets = rows * -(-cols // sparse.m) * sparse.n
        total -= offsets - math.ceil(offsets * nm_offset_bits(sparse.m) / 8)
    return total


def stored_weight_bytes(work: KernelWork) -> float:
    """Return the weights' bytes as stored: compressed values plus index metadata.

    A kernel from a graph has them from its weights' type (`packed_weight_bytes`). Otherwise
    they follow the pattern, and a format never costs more than the dense layout: a runtime
    would keep such weights dense.
    """
    if work.packed_weight_bytes is not None:
        return work.packed_weight_bytes
    dense = work.weight_bytes
    pattern = work.sparse_pattern
    if pattern is None:
        return dense
    elements = dense * 8 / work.stored_weight_bits
    kept_values = dense * work.density
    if pattern is SparsePattern.NM_2_4:
        metadata = elements * work.density * nm_offset_bits(4) / 8
    elif pattern is SparsePattern.UNSTRUCTURED:
        metadata = elements * BITMAP_BITS_PER_ELEMENT / 8
    else:
        metadata = elements * work.density / work.block_size * BLOCK_INDEX_BYTES
    return min(dense, kept_values + metadata)


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
    """Estimate each kernel of `works` on `hw`, in order."""
    return [estimate_kernel(hw, work) for work in works]


def estimate_kernel(hw: HardwareModel, work: KernelWork) -> KernelTiming:
    """Estimate one kernel's time, bound and energy on a GPU or CPU model."""
    if not isinstance(hw, GpuModel | CpuModel):
        raise InputError(
            f"{hw.source_file or hw.name}: field 'kind': the analytical model covers gpu and "
            f"cpu targets; '{hw.name}' is {hw.kind.value} (use the event simulator)"
        )
    plan = compute_plan(hw, work)
    bytes_moved = (
        stored_weight_bytes(work)
        + work.activation_bytes_read
        + work.bytes_written
        + work.kv_bytes_read
    )
    peak_bw = dram_bandwidth(hw)
    memory_time_s = bytes_moved / (peak_bw * hw.efficiency.memory_bandwidth_efficiency)
    compute_time_s = plan.time_s
    launch_s = hw.efficiency.kernel_launch_overhead_s
    time_s = max(compute_time_s, memory_time_s) + launch_s
    events = energy_events(hw, work, plan.flops_executed, bytes_moved)
    return KernelTiming(
        name=work.name,
        op_class=work.op_class.value,
        time_s=time_s,
        compute_time_s=compute_time_s,
        memory_time_s=memory_time_s,
        launch_overhead_s=launch_s,
        bound=bound_of(compute_time_s, memory_time_s, launch_s),
        flops_executed=plan.flops_executed,
        bytes_moved=bytes_moved,
        peak_ops_per_s=plan.peak_ops_per_s,
        peak_bandwidth_bytes_per_s=peak_bw,
        energy=energy_of(hw, events, time_s),
    )


def bound_of(compute_time_s: float, memory_time_s: float, launch_s: float) -> str:
    """Name what limits the kernel: 'compute', 'memory' or 'launch' overhead."""
    if launch_s > max(compute_time_s, memory_time_s):
        return "launch"
    return "compute" if compute_time_s >= memory_time_s else "memory"


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
    dense = ComputePlan(work.flops, matrix_peak(hw, work.dtype), eff.gemm_compute_efficiency)
    sparse = sparse_plan(hw, work, dense.peak_ops_per_s)
    return sparse if sparse is not None and sparse.time_s < dense.time_s else dense


def sparse_plan(hw: GpuModel | CpuModel, work: KernelWork, dense_peak: float) -> ComputePlan | None:
    """Return the sparse kernel's plan, or None where the device gains nothing from the pattern."""
    pattern = work.sparse_pattern
    kept_flops = work.flops * work.density
    sparse_eff = hw.efficiency.sparse_compute_efficiency
    if pattern is None:
        return None
    if isinstance(hw, CpuModel):
        return ComputePlan(kept_flops, dense_peak, sparse_eff)
    if pattern is SparsePattern.NM_2_4 and hw.peaks.sparse_2to4_speedup is not None:
        # Sparse tensor cores execute only the kept half at speedup x the dense rate.
        sparse_peak = dense_peak * hw.peaks.sparse_2to4_speedup * work.density
        return ComputePlan(kept_flops, sparse_peak, sparse_eff)
    if pattern is SparsePattern.BLOCK:
        return ComputePlan(kept_flops, dense_peak, sparse_eff)
    return None


def matrix_peak(hw: GpuModel | CpuModel, dtype: Dtype) -> float:
    """Return the dense peak of matrix ops in `dtype` (ops/s, a MAC counts 2)."""
    if isinstance(hw, CpuModel):
        if dtype in (Dtype.INT8, Dtype.INT4):
            return hw.compute.peak_int8_ops_per_s
        return hw.compute.peak_fp32_flops_per_s
    peaks = hw.peaks
    if dtype is Dtype.INT4 and peaks.int4_tensor_ops_per_s is not None:
        return peaks.int4_tensor_ops_per_s
    if dtype in (Dtype.INT8, Dtype.INT4):
        return peaks.int8_tensor_ops_per_s
    if dtype in (Dtype.FP16, Dtype.BF16):
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
    dtype = work.dtype if work.op_class in MATRIX_OPS else Dtype.FP32
    ops_field = {
        Dtype.FP32: "fp32_flops",
        Dtype.FP16: "fp16_flops",
        Dtype.BF16: "fp16_flops",
        Dtype.INT8: "int8_ops",
        Dtype.INT4: "int4_ops",
    }[dtype]
    bytes_field = "hbm_bytes" if isinstance(hw, GpuModel) else "ddr_bytes"
    return EnergyEvents(**{ops_field: flops_executed, bytes_field: bytes_moved})
