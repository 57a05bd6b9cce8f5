"""Typed, immutable hardware models: one frozen dataclass per device kind.

The YAML files in this folder are the only place device numbers live; `loader.py` turns them
into these records. Every numeric field carries a `check` in its metadata (positive, fraction,
...) that the loader enforces; rules spanning several fields live in `validate_*` functions in
`loader.py`. Sections of a YAML file map onto the nested dataclasses here one to one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

POSITIVE = {"check": "positive"}
NON_NEGATIVE = {"check": "non_negative"}
FRACTION = {"check": "fraction"}
CLOCK = {"check": "clock"}  # 1 MHz .. 10 GHz: any real accelerator, GPU or CPU clock
UNIT_INTERVAL = {"check": "unit_interval"}


class Kind(StrEnum):
    """Device kinds; the kind selects the backend and the simulator."""

    FPGA = "fpga"
    GPU = "gpu"
    CPU = "cpu"


# The built-in recipes each kind's backend can run (a default recipe must be one of them):
# the FPGA engine multiplies INT8 activations by INT4/INT8 weights, so float recipes cannot run.
RECIPES_BY_KIND: dict[Kind, tuple[str, ...]] = {
    Kind.FPGA: ("flightllm",),
    Kind.GPU: ("int8", "2:4", "w4a16", "dense"),
    Kind.CPU: ("dense", "int8", "2:4", "w4a16"),
}


@dataclass(frozen=True, kw_only=True)
class HardwareModel:
    """Describe a device: the fields every kind shares.

    `sources` and `assumptions` map dotted field paths to their provenance notes, `ranges`
    to the (low, high) band of a figure that is not known exactly; they do not take part in
    equality, so two models with the same numbers compare equal.
    """

    name: str
    kind: Kind
    default_recipe: str
    description: str
    source_file: str = field(default="", compare=False)
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    assumptions: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict, compare=False, repr=False)

    def band(self, path: str, value: float) -> tuple[float, float]:
        """Return the (low, high) band of the figure at dotted `path` (value, value if none)."""
        return self.ranges.get(path, (value, value))


# ---------------------------------------------------------------------------------- FPGA


@dataclass(frozen=True, kw_only=True)
class Parallelism:
    """Describe an MPE mode's tiling parallelism pM x pK x pN (MACs per cycle = product)."""

    m: int = field(metadata=POSITIVE)
    k: int = field(metadata=POSITIVE)
    n: int = field(metadata=POSITIVE)

    @property
    def macs_per_cycle(self) -> int:
        """Return the MACs the mode issues per clock cycle."""
        return self.m * self.k * self.n


@dataclass(frozen=True, kw_only=True)
class FpgaBuffers:
    """Describe one core's on-chip buffers, capacities in bytes."""

    weight_buffer_bytes: int = field(metadata=POSITIVE)
    activation_buffer_bytes: int = field(metadata=POSITIVE)
    output_buffer_bytes: int = field(metadata=POSITIVE)
    sparse_meta_buffer_bytes: int = field(metadata=POSITIVE)
    bias_buffer_bytes: int = field(metadata=POSITIVE)
    double_buffering: bool

    @property
    def total_bytes(self) -> int:
        """Return the sum of all buffer capacities of the core."""
        return (
            self.weight_buffer_bytes
            + self.activation_buffer_bytes
            + self.output_buffer_bytes
            + self.sparse_meta_buffer_bytes
            + self.bias_buffer_bytes
        )


@dataclass(frozen=True, kw_only=True)
class SfuSpec:
    """Describe the special function unit: lanes, precision and passes per op family."""

    lanes: int = field(metadata=POSITIVE)
    precision: str
    elementwise_passes: int = field(metadata=POSITIVE)
    softmax_passes: int = field(metadata=POSITIVE)
    norm_passes: int = field(metadata=POSITIVE)


@dataclass(frozen=True, kw_only=True)
class FpgaCore:
    """Describe one computing core (MPE of CSD-chains, buffers, SFU)."""

    dsp_chains: int = field(metadata=POSITIVE)
    dsps_per_chain: int = field(metadata=POSITIVE)
    dsp_group_size: int = field(metadata=POSITIVE)
    int8_macs_per_dsp_per_cycle: int = field(metadata=POSITIVE)
    nm_block_m: int = field(metadata=POSITIVE)
    nm_supported_n: tuple[int, ...] = field(metadata=POSITIVE)
    mv_parallelism: Parallelism
    mm_parallelism: Parallelism
    buffers: FpgaBuffers
    sfu: SfuSpec

    @property
    def dsps(self) -> int:
        """Return the DSP slices the core's chains occupy."""
        return self.dsp_chains * self.dsps_per_chain

    @property
    def int8_macs_per_cycle(self) -> int:
        """Return the core's peak INT8 MACs per cycle with all chains busy."""
        return self.dsps * self.int8_macs_per_dsp_per_cycle


@dataclass(frozen=True, kw_only=True)
class HbmSpec:
    """Describe HBM: channels, capacity, bandwidth per channel, access efficiencies, ports.

    The accelerator reaches each channel through `ports_per_channel` AXI ports, each
    `port_bytes_per_cycle` wide and clocked at `port_clock_hz`; a channel's stream moves at
    most ports x width x clock bytes per second, whatever the channel's own bandwidth.
    """

    channels: int = field(metadata=POSITIVE)
    bytes_per_channel: int = field(metadata=POSITIVE)
    bandwidth_per_channel_bytes_per_s: float = field(metadata=POSITIVE)
    same_channel_efficiency: float = field(metadata=FRACTION)
    cross_channel_efficiency: float = field(metadata=FRACTION)
    port_bytes_per_cycle: int = field(metadata=POSITIVE)
    port_clock_hz: float = field(metadata=POSITIVE)
    ports_per_channel: int = field(metadata=POSITIVE)

    @property
    def port_bytes_per_s(self) -> float:
        """Return the most bytes per second the ports of one channel move."""
        return self.ports_per_channel * self.port_bytes_per_cycle * self.port_clock_hz

    @property
    def capacity_bytes(self) -> int:
        """Return the total HBM capacity."""
        return self.channels * self.bytes_per_channel

    @property
    def bandwidth_bytes_per_s(self) -> float:
        """Return the peak aggregate HBM bandwidth."""
        return self.channels * self.bandwidth_per_channel_bytes_per_s


@dataclass(frozen=True, kw_only=True)
class DdrSpec:
    """Describe the board DDR memory."""

    capacity_bytes: int = field(metadata=POSITIVE)
    bandwidth_bytes_per_s: float = field(metadata=POSITIVE)
    access_efficiency: float = field(metadata=FRACTION)


@dataclass(frozen=True, kw_only=True)
class FpgaFabric:
    """Give the device's programmable-logic totals, the budget a design must fit in."""

    luts: int = field(metadata=POSITIVE)
    flip_flops: int = field(metadata=POSITIVE)
    bram36: int = field(metadata=POSITIVE)
    uram288: int = field(metadata=NON_NEGATIVE)


@dataclass(frozen=True, kw_only=True)
class FpgaPower:
    """Describe the card's idle power, its budget and the fabric's power per resource.

    Per-resource figures hold at `reference_clock_hz` and, for logic, at
    `reference_toggle_rate`; `simulator.power` scales them to the design's clock and to the
    activity the event simulator measures (logic toggles at `busy_toggle_rate` while its unit
    is busy). Clock-tree power follows the clock and the flip-flop count, not the activity.
    """

    static_power_w: float = field(metadata=NON_NEGATIVE)
    board_power_budget_w: float = field(metadata=POSITIVE)
    reference_clock_hz: float = field(metadata=POSITIVE)
    reference_toggle_rate: float = field(metadata=FRACTION)
    busy_toggle_rate: float = field(metadata=FRACTION)
    uw_per_lut: float = field(metadata=NON_NEGATIVE)
    uw_routing_per_lut: float = field(metadata=NON_NEGATIVE)
    uw_per_lutram: float = field(metadata=NON_NEGATIVE)
    uw_per_ff: float = field(metadata=NON_NEGATIVE)
    uw_clock_per_ff: float = field(metadata=NON_NEGATIVE)
    mw_per_dsp: float = field(metadata=NON_NEGATIVE)
    mw_per_bram36: float = field(metadata=NON_NEGATIVE)
    mw_per_uram288: float = field(metadata=NON_NEGATIVE)
    hbm_controller_w: float = field(metadata=NON_NEGATIVE)
    io_w: float = field(metadata=NON_NEGATIVE)


@dataclass(frozen=True, kw_only=True)
class FpgaEnergy:
    """Give dynamic energy per event in picojoules: memory traffic and the SFU's operations.

    The fabric's own power (DSP chains, buffers, logic, clocks) comes from `FpgaPower`'s
    per-resource figures; the SFU has no resource model, so its operations are priced here.
    """

    pj_per_fp16_sfu_op: float = field(metadata=POSITIVE)
    pj_per_hbm_byte: float = field(metadata=POSITIVE)
    pj_per_ddr_byte: float = field(metadata=POSITIVE)


@dataclass(frozen=True, kw_only=True)
class FpgaModel(HardwareModel):
    """Describe a FlightLLM-style FPGA accelerator: cores of DSP chains, HBM, DDR, energy."""

    clock_hz: float = field(metadata=CLOCK)
    dsp_count: int = field(metadata=POSITIVE)
    cores: int = field(metadata=POSITIVE)
    fabric: FpgaFabric
    core: FpgaCore
    hbm: HbmSpec
    ddr: DdrSpec
    power: FpgaPower
    energy: FpgaEnergy

    @property
    def peak_int8_macs_per_s(self) -> float:
        """Return the device's peak INT8 MAC rate over all cores."""
        return self.cores * self.core.int8_macs_per_cycle * self.clock_hz


# ----------------------------------------------------------------------------------- GPU


@dataclass(frozen=True, kw_only=True)
class GpuPeaks:
    """Give dense peak throughput per dtype in operations per second (a MAC counts 2)."""

    fp32_flops_per_s: float = field(metadata=POSITIVE)
    fp16_tensor_flops_per_s: float = field(metadata=POSITIVE)
    int8_tensor_ops_per_s: float = field(metadata=POSITIVE)
    int4_tensor_ops_per_s: float | None = field(metadata=POSITIVE)
    sparse_2to4_speedup: float | None = field(metadata=POSITIVE)


@dataclass(frozen=True, kw_only=True)
class GpuMemory:
    """Describe device memory and the L2 cache."""

    capacity_bytes: int = field(metadata=POSITIVE)
    hbm_bandwidth_bytes_per_s: float = field(metadata=POSITIVE)
    l2_bytes: int = field(metadata=POSITIVE)


@dataclass(frozen=True, kw_only=True)
class ProcessorEfficiency:
    """Give achievable fractions of peak and fixed per-kernel overheads.

    `gemm_compute_efficiency` is the fraction of the float matrix peak (fp16/bf16 tensor
    cores on GPUs, fp32 FMA on CPUs) a large GEMM reaches, `int8_gemm_compute_efficiency`
    the same for the INT8 path (INT4 runs on it where the device has no INT4 path).
    `compute_memory_overlap` is the share of the shorter of a kernel's compute and memory
    times hidden under the longer: 1 is the ideal roofline, 0 runs them back to back.
    """

    gemm_compute_efficiency: float = field(metadata=FRACTION)
    int8_gemm_compute_efficiency: float = field(metadata=FRACTION)
    vector_compute_efficiency: float = field(metadata=FRACTION)
    sparse_compute_efficiency: float = field(metadata=FRACTION)
    memory_bandwidth_efficiency: float = field(metadata=FRACTION)
    compute_memory_overlap: float = field(metadata=UNIT_INTERVAL)
    kernel_launch_overhead_s: float = field(metadata=NON_NEGATIVE)


@dataclass(frozen=True, kw_only=True)
class ProcessorPower:
    """Describe the power limit, idle power and the power of a clocked, busy device.

    Board (GPU) or package (CPU) power = `static_power_w` (idle, always) + `busy_power_w`
    while kernels run (clocks, schedulers, caches and interconnect of a device at work,
    beyond its per-event energies) + energy per operation and per DRAM byte at their rates;
    the device never draws more than `tdp_w` (its power limit slows it down instead).
    """

    tdp_w: float = field(metadata=POSITIVE)
    static_power_w: float = field(metadata=NON_NEGATIVE)
    busy_power_w: float = field(metadata=NON_NEGATIVE)


@dataclass(frozen=True, kw_only=True)
class GpuEnergy:
    """Give dynamic energy per operation and per DRAM byte in picojoules."""

    pj_per_fp32_flop: float = field(metadata=POSITIVE)
    pj_per_fp16_flop: float = field(metadata=POSITIVE)
    pj_per_int8_op: float = field(metadata=POSITIVE)
    pj_per_int4_op: float | None = field(metadata=POSITIVE)
    pj_per_hbm_byte: float = field(metadata=POSITIVE)


@dataclass(frozen=True, kw_only=True)
class GpuModel(HardwareModel):
    """Describe a GPU for the analytical roofline model."""

    sm_count: int = field(metadata=POSITIVE)
    peaks: GpuPeaks
    memory: GpuMemory
    efficiency: ProcessorEfficiency
    power: ProcessorPower
    energy: GpuEnergy


# ----------------------------------------------------------------------------------- CPU


@dataclass(frozen=True, kw_only=True)
class CpuCompute:
    """Describe cores, clock, SIMD and the resulting peaks (ops per second, a MAC counts 2)."""

    cores: int = field(metadata=POSITIVE)
    clock_hz: float = field(metadata=CLOCK)
    simd_width_bits: int = field(metadata=POSITIVE)
    fma_units_per_core: int = field(metadata=POSITIVE)
    peak_fp32_flops_per_s: float = field(metadata=POSITIVE)
    peak_int8_ops_per_s: float = field(metadata=POSITIVE)


@dataclass(frozen=True, kw_only=True)
class CpuMemory:
    """Describe DRAM and the last-level cache."""

    capacity_bytes: int = field(metadata=POSITIVE)
    dram_bandwidth_bytes_per_s: float = field(metadata=POSITIVE)
    llc_bytes: int = field(metadata=POSITIVE)


@dataclass(frozen=True, kw_only=True)
class CpuEnergy:
    """Give dynamic energy per operation and per DRAM byte in picojoules."""

    pj_per_fp32_flop: float = field(metadata=POSITIVE)
    pj_per_int8_op: float = field(metadata=POSITIVE)
    pj_per_dram_byte: float = field(metadata=POSITIVE)


@dataclass(frozen=True, kw_only=True)
class SparseKernelEfficiency:
    """Give sparseflow's CPU sparse kernels' speed relative to dense BLAS on this machine.

    e = speedup over dense x density, per kernel family and phase (prefill: many tokens,
    decode: one); a sparse kernel beats dense BLAS when the density is below e.
    """

    bsr_col_prefill: float = field(metadata=POSITIVE)
    bsr_col_decode: float = field(metadata=POSITIVE)
    bsr_row_prefill: float = field(metadata=POSITIVE)
    bsr_row_decode: float = field(metadata=POSITIVE)
    bsr_generic_prefill: float = field(metadata=POSITIVE)
    bsr_generic_decode: float = field(metadata=POSITIVE)
    csr_prefill: float = field(metadata=POSITIVE)
    csr_decode: float = field(metadata=POSITIVE)
    nm_prefill: float = field(metadata=POSITIVE)
    nm_decode: float = field(metadata=POSITIVE)

    def of(self, family: str, phase: str) -> float:
        """Return e of kernel `family` (bsr_col, bsr_row, bsr_generic, csr, nm) in `phase`."""
        return getattr(self, f"{family}_{phase}")


@dataclass(frozen=True, kw_only=True)
class CpuModel(HardwareModel):
    """Describe a CPU for the analytical roofline model.

    `sparse_kernels` holds the measured speed of sparseflow's own CPU kernels where they were
    measured (the machine `run --target` cpu executes on); None elsewhere.
    """

    compute: CpuCompute
    memory: CpuMemory
    efficiency: ProcessorEfficiency
    power: ProcessorPower
    energy: CpuEnergy
    sparse_kernels: SparseKernelEfficiency | None


MODEL_CLASS_BY_KIND: dict[Kind, type[HardwareModel]] = {
    Kind.FPGA: FpgaModel,
    Kind.GPU: GpuModel,
    Kind.CPU: CpuModel,
}

META_FIELDS = ("source_file", "sources", "assumptions", "ranges")

# Every numeric field of a hardware model changes what the compiler, the simulators or the RTL
# generator do (tests/hw_models/test_live_fields.py perturbs each one), except the fields
# below, listed by dotted path (a path covers the fields under it) with the reason.
# Descriptive fields record published figures for reference and drive no model: a
# design-space sweep refuses them as axes.
DESCRIPTIVE_FIELDS: dict[Kind, dict[str, str]] = {
    Kind.FPGA: {
        "core.mv_parallelism": "the FlightLLM artifact's MV tiling, for comparison; the engine's "
        "tiling follows from dsp_chains x dsps_per_chain and the N:16 mode",
        "core.mm_parallelism": "the FlightLLM artifact's MM tiling, for comparison (as above)",
        "hbm.cross_channel_efficiency": "applies to a transfer on another core's channel; the "
        "compiler keeps every transfer on the issuing core's own channels",
        "core.int8_macs_per_dsp_per_cycle": "the DSP packing factor scales MAC counts and the "
        "peak alike (utilisation is their ratio); cycles follow the chain model and power the "
        "DSPs' resource count, so no estimate reads it",
    },
    Kind.GPU: {
        "sm_count": "the roofline model works from device-wide peaks",
        "memory.l2_bytes": "the roofline model has no cache level between HBM and the SMs",
    },
    Kind.CPU: {
        "memory.llc_bytes": "the roofline model has no cache level between DRAM and the cores",
        "sparse_kernels": "measured speed of the CPU kernels on this host: picks the kernels "
        "`run` executes (backends/cpu/dispatch.py), not an estimate input",
    },
}
# Limit fields only bound what fits: the loader or the estimate rejects a design beyond them.
LIMIT_FIELDS: dict[Kind, dict[str, str]] = {
    Kind.FPGA: {
        "dsp_count": "the cores' chains must fit it (loader)",
        "hbm.bytes_per_channel": "weights and KV cache must fit the HBM (estimate)",
        "ddr.capacity_bytes": "the instruction streams must fit the DDR (estimate)",
        "power.board_power_budget_w": "static power must stay below it (loader)",
    },
    Kind.GPU: {
        "memory.capacity_bytes": "weights and KV cache must fit it (estimate)",
        "power.tdp_w": "static power must stay below it (loader)",
    },
    Kind.CPU: {
        "memory.capacity_bytes": "weights and KV cache must fit it (estimate)",
        "power.tdp_w": "static power must stay below it (loader)",
        "compute.cores": "bounds compute.peak_fp32_flops_per_s with the fields below (loader)",
        "compute.clock_hz": "bounds compute.peak_fp32_flops_per_s (loader)",
        "compute.simd_width_bits": "bounds compute.peak_fp32_flops_per_s (loader)",
        "compute.fma_units_per_core": "bounds compute.peak_fp32_flops_per_s (loader)",
    },
}


def field_role(kind: Kind, dotted: str) -> str:
    """Return 'descriptive', 'limit' or 'model' for a field path of a `kind` hardware model."""
    for role, table in (("descriptive", DESCRIPTIVE_FIELDS), ("limit", LIMIT_FIELDS)):
        if any(dotted == p or dotted.startswith(p + ".") for p in table[kind]):
            return role
    return "model"


def field_check(metadata: Any) -> str | None:
    """Return the value check a dataclass field declares in its metadata, if any."""
    return metadata.get("check") if metadata else None
