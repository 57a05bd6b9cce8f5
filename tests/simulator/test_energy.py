"""Tests for energy accounting: event pricing per kind, static energy, ledgers."""

from __future__ import annotations

import pytest

from sparseflow.hw_models.loader import list_hw, load_hw, with_overrides
from sparseflow.ir.types import parse_type
from sparseflow.simulator.analytical import KernelWork, estimate_kernel
from sparseflow.simulator.energy import (
    EnergyEvents,
    EnergyLedger,
    dynamic_energy,
    energy_of,
    static_energy,
    sum_ledgers,
)


def test_fpga_prices_sfu_ops_and_traffic_from_its_table() -> None:
    hw = load_hw("u280")
    events = EnergyEvents(
        int8_macs=1e12,
        int4_macs=2e12,
        fp16_sfu_ops=1e9,
        onchip_bytes=1e10,
        hbm_bytes=1e9,
        ddr_bytes=1e6,
    )
    ledger = dynamic_energy(hw, events)
    # MACs and on-chip bytes: per-resource power of the busy units (simulator.power).
    assert ledger.compute_j == 0 and ledger.onchip_j == 0
    assert ledger.sfu_j == pytest.approx(1e9 * 4.0e-12)
    assert ledger.hbm_j == pytest.approx(1e9 * 31.76e-12)
    assert ledger.ddr_j == pytest.approx(1e6 * 80.0e-12)
    assert ledger.static_j == 0


def test_static_energy_is_power_times_time() -> None:
    assert static_energy(load_hw("u280"), 2.0).static_j == pytest.approx(50.0)
    with pytest.raises(ValueError, match="time_s"):
        static_energy(load_hw("u280"), -1.0)


# Device figures fixed here, so the arithmetic below does not move when a YAML is recalibrated.
A100_FIGURES = {
    "energy.pj_per_fp16_flop": 0.9,
    "energy.pj_per_int4_op": 0.225,
    "power.static_power_w": 55.0,
    "power.busy_power_w": 100.0,
}


def test_energy_of_adds_dynamic_static_and_busy() -> None:
    hw = with_overrides(load_hw("a100"), A100_FIGURES)
    ledger = energy_of(hw, EnergyEvents(fp16_flops=1e12, hbm_bytes=1e9), 0.01)
    assert ledger.compute_j == pytest.approx(0.9)
    assert ledger.hbm_j == pytest.approx(0.0312)
    assert ledger.static_j == pytest.approx(0.55)
    assert ledger.busy_j == pytest.approx(1.0)
    assert ledger.total_j == pytest.approx(0.9 + 0.0312 + 0.55 + 1.0)


def test_fpga_energy_has_no_busy_share() -> None:
    assert energy_of(load_hw("u280"), EnergyEvents(hbm_bytes=1e9), 0.01).busy_j == 0


def test_int4_without_an_int4_path_is_priced_at_int8() -> None:
    hw = load_hw("h100")
    int4 = dynamic_energy(hw, EnergyEvents(int4_ops=1e12)).compute_j
    assert int4 == dynamic_energy(hw, EnergyEvents(int8_ops=1e12)).compute_j
    a100 = with_overrides(load_hw("a100"), A100_FIGURES)
    assert dynamic_energy(a100, EnergyEvents(int4_ops=1e12)).compute_j == pytest.approx(0.225)


def test_cpu_prices_fp16_as_fp32_and_dram_as_ddr() -> None:
    hw = load_hw("xeon-8380")
    ledger = dynamic_energy(hw, EnergyEvents(fp16_flops=1e9, ddr_bytes=1e9))
    assert ledger.compute_j == pytest.approx(1e9 * 38.4e-12)
    assert ledger.ddr_j == pytest.approx(1e9 * 80e-12) and ledger.hbm_j == 0


@pytest.mark.parametrize(
    ("name", "events"),
    [
        ("u280", EnergyEvents(fp32_flops=1.0)),
        ("a100", EnergyEvents(int8_macs=1.0)),
        ("a100", EnergyEvents(ddr_bytes=1.0)),
        ("host-cpu", EnergyEvents(hbm_bytes=1.0)),
    ],
)
def test_unpriced_events_are_a_caller_bug(name: str, events: EnergyEvents) -> None:
    with pytest.raises(ValueError, match="price no"):
        dynamic_energy(load_hw(name), events)


def test_negative_or_infinite_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="hbm_bytes"):
        EnergyEvents(hbm_bytes=-1.0)
    with pytest.raises(ValueError, match="int8_macs"):
        EnergyEvents(int8_macs=float("inf"))


def test_ledgers_add_and_serialise() -> None:
    a = EnergyLedger(compute_j=1.0, static_j=2.0)
    b = EnergyLedger(hbm_j=0.5, sfu_j=0.25)
    total = sum_ledgers([a, b, EnergyLedger()])
    assert total == a + b
    assert total.total_j == pytest.approx(3.75) and total.dynamic_j == pytest.approx(1.75)
    assert total.to_dict()["total_j"] == pytest.approx(3.75)
    assert sum_ledgers([]) == EnergyLedger()


@pytest.mark.parametrize("name", [n for n in list_hw() if load_hw(n).kind.value == "gpu"])
def test_gpu_energy_per_op_stays_within_the_power_budget(name: str) -> None:
    """No path at its dense peak with HBM at full bandwidth spends more than TDP above idle."""
    hw = load_hw(name)
    peaks = {
        "fp16_flops": hw.peaks.fp16_tensor_flops_per_s,
        "fp32_flops": hw.peaks.fp32_flops_per_s,
        "int8_ops": hw.peaks.int8_tensor_ops_per_s,
    }
    for event, rate in peaks.items():
        events = EnergyEvents(**{event: rate, "hbm_bytes": hw.memory.hbm_bandwidth_bytes_per_s})
        power_w = (dynamic_energy(hw, events) + static_energy(hw, 1.0)).total_j
        assert power_w <= hw.power.tdp_w * (1 + 1e-9)


@pytest.mark.parametrize("name", ["host-cpu", "xeon-8380"])
def test_cpu_energy_per_op_stays_within_the_power_budget(name: str) -> None:
    hw = load_hw(name)
    for event, rate in (
        ("fp32_flops", hw.compute.peak_fp32_flops_per_s),
        ("int8_ops", hw.compute.peak_int8_ops_per_s),
    ):
        events = EnergyEvents(**{event: rate, "ddr_bytes": hw.memory.dram_bandwidth_bytes_per_s})
        power_w = (dynamic_energy(hw, events) + static_energy(hw, 1.0)).total_j
        assert power_w <= hw.power.tdp_w * (1 + 1e-9)


def test_kernel_energy_counts_executed_work_and_moved_bytes() -> None:
    hw = with_overrides(load_hw("a100"), A100_FIGURES)
    matrix = parse_type("f16[1000,1000000]")
    work = KernelWork("gemv", "linear", flops=2e9, weights=(matrix,))
    timing = estimate_kernel(hw, work)
    expected = 2e9 * 0.90e-12 + timing.bytes_moved * 31.2e-12 + (55.0 + 100.0) * timing.time_s
    assert timing.energy_j == pytest.approx(expected)
    sparse = KernelWork("gemv", "linear", flops=2e9, weights=(parse_type(f"{matrix} nm=2:4"),))
    assert estimate_kernel(hw, sparse).energy.compute_j == pytest.approx(1e9 * 0.90e-12)
