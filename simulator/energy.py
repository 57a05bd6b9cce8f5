"""Energy accounting: dynamic energy per event plus static (and busy) power x time.

Energy of a span of work = sum over events of (count x the device's pJ per event) + the
device's static power x the span's time; GPUs and CPUs add their busy power (a clocked
device running kernels, `ProcessorPower.busy_power_w`) over the time kernels run. Events
are counted in `EnergyEvents`; results are `EnergyLedger` records, split by where the energy
goes, that add up across kernels, instructions or layers. Both the analytical GPU/CPU model
and the FPGA event simulator use these two records, so reports sum energy the same way on
every target.

Which events a device kind prices (from its YAML `energy:` table):
- fpga: FP16 SFU ops, HBM bytes, DDR bytes. MACs and on-chip bytes are counted but cost
  nothing here: the DSP chains, buffers and logic that do them draw per-resource power for
  as long as their unit is busy (`simulator.power`).
- gpu: FP32, FP16/BF16, INT8 and INT4 operations (a MAC counts 2), HBM bytes. INT4 work
  on a GPU without an INT4 path is priced at the INT8 entry (it runs on that path).
- cpu: FP32 and INT8 operations, DRAM bytes (counted as `ddr_bytes`). FP16 work is priced
  at FP32 (up-converted) and INT4 at INT8 (unpacked), as the CPU kernels run them.
Events a kind does not price raise ValueError: that is a bug in the caller, not bad input.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass

from sparseflow.hw_models.schema import CpuModel, FpgaModel, GpuModel, HardwareModel

PJ = 1e-12


@dataclass(frozen=True)
class EnergyEvents:
    """Count the energy-relevant events of one span of work (all counts >= 0)."""

    int8_macs: float = 0.0
    int4_macs: float = 0.0
    fp16_sfu_ops: float = 0.0
    fp32_flops: float = 0.0
    fp16_flops: float = 0.0
    int8_ops: float = 0.0
    int4_ops: float = 0.0
    onchip_bytes: float = 0.0
    hbm_bytes: float = 0.0
    ddr_bytes: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            count = getattr(self, f.name)
            if not (isinstance(count, int | float) and math.isfinite(count) and count >= 0):
                raise ValueError(f"energy event '{f.name}' must be a finite count >= 0")

    def nonzero(self) -> set[str]:
        """Return the names of the events that occurred."""
        return {f.name for f in dataclasses.fields(self) if getattr(self, f.name)}


@dataclass(frozen=True)
class EnergyLedger:
    """Hold energy in joules split by destination; ledgers add with `+`."""

    compute_j: float = 0.0
    sfu_j: float = 0.0
    onchip_j: float = 0.0
    hbm_j: float = 0.0
    ddr_j: float = 0.0
    static_j: float = 0.0
    busy_j: float = 0.0

    @property
    def dynamic_j(self) -> float:
        """Return the energy spent by events (everything but static)."""
        return self.compute_j + self.sfu_j + self.onchip_j + self.hbm_j + self.ddr_j

    @property
    def total_j(self) -> float:
        """Return dynamic plus static plus busy energy."""
        return self.dynamic_j + self.static_j + self.busy_j

    def __add__(self, other: EnergyLedger) -> EnergyLedger:
        names = [f.name for f in dataclasses.fields(self)]
        return EnergyLedger(**{n: getattr(self, n) + getattr(other, n) for n in names})

    def to_dict(self) -> dict[str, float]:
        """Return the ledger as a JSON-ready dict including `total_j`."""
        return {**dataclasses.asdict(self), "total_j": self.total_j}


def sum_ledgers(ledgers: Iterable[EnergyLedger]) -> EnergyLedger:
    """Return the sum of `ledgers` (an empty ledger for none)."""
    total = EnergyLedger()
    for ledger in ledgers:
        total = total + ledger
    return total


def static_power_w(hw: HardwareModel) -> float:
    """Return the device's static power in watts."""
    if isinstance(hw, FpgaModel | GpuModel | CpuModel):
        return hw.power.static_power_w
    raise ValueError(f"no power model for {type(hw).__name__}")


def static_energy(hw: HardwareModel, time_s: float) -> EnergyLedger:
    """Return the static energy the device spends over `time_s` seconds."""
    if not (math.isfinite(time_s) and time_s >= 0):
        raise ValueError("time_s must be a finite duration >= 0")
    return EnergyLedger(static_j=static_power_w(hw) * time_s)


def dynamic_energy(hw: HardwareModel, events: EnergyEvents) -> EnergyLedger:
    """Price `events` with the device's energy table; no static share."""
    if isinstance(hw, FpgaModel):
        return fpga_dynamic_energy(hw, events)
    if isinstance(hw, GpuModel):
        return gpu_dynamic_energy(hw, events)
    if isinstance(hw, CpuModel):
        return cpu_dynamic_energy(hw, events)
    raise ValueError(f"no energy table for {type(hw).__name__}")


def busy_energy(hw: GpuModel | CpuModel, time_s: float) -> EnergyLedger:
    """Return the busy energy of a GPU or CPU running kernels for `time_s` seconds."""
    return EnergyLedger(busy_j=hw.power.busy_power_w * time_s)


def energy_of(hw: HardwareModel, events: EnergyEvents, time_s: float) -> EnergyLedger:
    """Return dynamic energy of `events` plus static (and, on GPUs and CPUs, busy) energy."""
    ledger = dynamic_energy(hw, events) + static_energy(hw, time_s)
    if isinstance(hw, GpuModel | CpuModel):
        ledger = ledger + busy_energy(hw, time_s)
    return ledger


def require_only(events: EnergyEvents, allowed: set[str], kind: str) -> None:
    """Raise if `events` holds an event the device kind has no price for."""
    unpriced = events.nonzero() - allowed
    if unpriced:
        raise ValueError(f"{kind} devices price no {sorted(unpriced)} events")


def fpga_dynamic_energy(hw: FpgaModel, events: EnergyEvents) -> EnergyLedger:
    """Price SFU ops and memory traffic on a FlightLLM-style FPGA (see the module docstring)."""
    allowed = {"int8_macs", "int4_macs", "fp16_sfu_ops", "onchip_bytes", "hbm_bytes", "ddr_bytes"}
    require_only(events, allowed, "fpga")
    table = hw.energy
    return EnergyLedger(
        sfu_j=PJ * events.fp16_sfu_ops * table.pj_per_fp16_sfu_op,
        hbm_j=PJ * events.hbm_bytes * table.pj_per_hbm_byte,
        ddr_j=PJ * events.ddr_bytes * table.pj_per_ddr_byte,
    )


def gpu_dynamic_energy(hw: GpuModel, events: EnergyEvents) -> EnergyLedger:
    """Price operations by dtype and HBM bytes on a GPU."""
    allowed = {"fp32_flops", "fp16_flops", "int8_ops", "int4_ops", "hbm_bytes"}
    require_only(events, allowed, "gpu")
    table = hw.energy
    pj_int4 = table.pj_per_int4_op if table.pj_per_int4_op is not None else table.pj_per_int8_op
    compute_pj = (
        events.fp32_flops * table.pj_per_fp32_flop
        + events.fp16_flops * table.pj_per_fp16_flop
        + events.int8_ops * table.pj_per_int8_op
        + events.int4_ops * pj_int4
    )
    return EnergyLedger(
        compute_j=PJ * compute_pj, hbm_j=PJ * events.hbm_bytes * table.pj_per_hbm_byte
    )


def cpu_dynamic_energy(hw: CpuModel, events: EnergyEvents) -> EnergyLedger:
    """Price operations and DRAM bytes on a CPU."""
    allowed = {"fp32_flops", "fp16_flops", "int8_ops", "int4_ops", "ddr_bytes"}
    require_only(events, allowed, "cpu")
    table = hw.energy
    float_ops = events.fp32_flops + events.fp16_flops
    int_ops = events.int8_ops + events.int4_ops
    compute_pj = float_ops * table.pj_per_fp32_flop + int_ops * table.pj_per_int8_op
    return EnergyLedger(
        compute_j=PJ * compute_pj, ddr_j=PJ * events.ddr_bytes * table.pj_per_dram_byte
    )
