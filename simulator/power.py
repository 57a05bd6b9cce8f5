"""FPGA average power from the design's resources, its clock and its measured activity.

Structure of a vendor power report (Vivado report_power: static + per-resource dynamic at a
clock and toggle rate + I/O), with the activity the event simulator measures:

    P = static (the card idle with its shell)
      + clock tree: every flip-flop x uw_clock_per_ff x f / f_ref          (always)
      + per block b of `backends.fpga.resources`, busy a fraction a_b of the run:
          a_b x f / f_ref x [ (LUT - LUT RAM) x (uw_per_lut + uw_routing_per_lut) x t
                              + FF x uw_per_ff x t + DSP x mw_per_dsp x t
                              + LUT RAM x uw_per_lutram + BRAM36 x mw_per_bram36
                              + URAM x mw_per_uram288 ]
        with t = busy_toggle_rate / reference_toggle_rate (memories follow accesses, not bits)
      + HBM controllers and PHY + I/O                                        (always)
      + HBM and DDR bytes x pJ per byte + SFU operations x pJ per operation  (events)

a_b = min(1, sum of the block's activities x their shares): the chains and the engine's
logic follow the matrix unit's busy fraction (busy time summed over cores / (cores x run
time)); a buffer is read or written a whole word per busy cycle of its unit (matrix or SFU),
plus the bytes LOAD/STORE move through it per cycle / its word bytes; the controller and its
instruction memory (`dispatch`) run always.
Every coefficient comes from the hardware model; one with a `range:` band is taken at its
low or high end for the `low` and `high` corners, which bound the power (it is monotonic in
every coefficient).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields

from sparseflow.backends.fpga.resources import ResourceReport
from sparseflow.hw_models.schema import FpgaEnergy, FpgaModel, FpgaPower
from sparseflow.simulator.energy import PJ, EnergyEvents

CORNERS = ("nominal", "low", "high")
UW, MW = 1e-6, 1e-3
COMPONENTS = ("static", "clocks", "logic", "ff", "lutram", "dsp", "bram", "uram",
              "hbm_controller", "io", "hbm", "ddr", "sfu")  # fmt: skip


def coefficients(hw: FpgaModel, corner: str = "nominal") -> dict[str, float]:
    """Return every power and energy coefficient of `hw` at `corner` (nominal, low or high)."""
    if corner not in CORNERS:
        raise ValueError(f"corner {corner!r}: one of {CORNERS}")
    out = {}
    for section, cls in (("power", FpgaPower), ("energy", FpgaEnergy)):
        for f in fields(cls):
            value = getattr(getattr(hw, section), f.name)
            low, high = hw.band(f"{section}.{f.name}", value)
            out[f.name] = {"nominal": value, "low": low, "high": high}[corner]
    return out


def block_activity(units: tuple[tuple[str, float], ...], activity: Mapping[str, float]) -> float:
    """Return a block's busy fraction from its units' busy fractions and shares (at most 1)."""
    return min(1.0, sum(activity.get(u, 0.0) * share for u, share in units))


def fabric_power(
    hw: FpgaModel, resources: ResourceReport, activity: Mapping[str, float], corner: str
) -> dict[str, float]:
    """Return the fabric's power in watts by component (static to I/O, no traffic)."""
    c = coefficients(hw, corner)
    clock = hw.clock_hz / c["reference_clock_hz"]
    toggle = c["busy_toggle_rate"] / c["reference_toggle_rate"]
    watts = dict.fromkeys(COMPONENTS[:-3], 0.0)
    for b in resources.blocks:
        a = block_activity(b.units, activity) * clock * b.instances * resources.cores
        logic_uw = (b.lut - b.lutram) * (c["uw_per_lut"] + c["uw_routing_per_lut"])
        watts["logic"] += a * toggle * logic_uw * UW
        watts["ff"] += a * toggle * b.ff * c["uw_per_ff"] * UW
        watts["dsp"] += a * toggle * b.dsp * c["mw_per_dsp"] * MW
        watts["lutram"] += a * b.lutram * c["uw_per_lutram"] * UW
        watts["bram"] += a * b.bram36 * c["mw_per_bram36"] * MW
        watts["uram"] += a * b.uram * c["mw_per_uram288"] * MW
    watts["clocks"] = resources.total()["ff"] * c["uw_clock_per_ff"] * UW * clock
    watts["static"] = c["static_power_w"]
    watts["hbm_controller"] = c["hbm_controller_w"]
    watts["io"] = c["io_w"]
    return watts


def traffic_energy_j(hw: FpgaModel, events: EnergyEvents, corner: str) -> dict[str, float]:
    """Return the energy of memory traffic and SFU operations in joules at `corner`."""
    c = coefficients(hw, corner)
    return {
        "hbm": PJ * events.hbm_bytes * c["pj_per_hbm_byte"],
        "ddr": PJ * events.ddr_bytes * c["pj_per_ddr_byte"],
        "sfu": PJ * events.fp16_sfu_ops * c["pj_per_fp16_sfu_op"],
    }


def run_power(
    hw: FpgaModel,
    resources: ResourceReport,
    unit_busy_s: Mapping[str, float],
    buffer_bytes: Mapping[str, float],
    events: EnergyEvents,
    time_s: float,
    corner: str = "nominal",
) -> dict[str, float]:
    """Return the average power in watts by component of a run of `time_s` seconds.

    `unit_busy_s`: each unit's busy seconds summed over cores; `buffer_bytes`: bytes
    LOAD/STORE moved per buffer (`resources.transfer_key`) over all cores; `events`: the run's.
    """
    core_s = resources.cores * time_s
    activity = {u: s / core_s for u, s in unit_busy_s.items()}
    activity.update({k: b / (core_s * hw.clock_hz) for k, b in buffer_bytes.items()})
    activity["dispatch"] = 1.0
    watts = fabric_power(hw, resources, activity, corner)
    traffic = traffic_energy_j(hw, events, corner)
    return {**watts, **{k: j / time_s for k, j in traffic.items()}}
