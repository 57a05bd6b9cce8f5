"""FPGA power model (simulator/power.py) against hand-computed watts on a small design."""

from __future__ import annotations

import pytest

from sparseflow.backends.fpga.resources import Block, ResourceReport, estimate_resources
from sparseflow.hw_models.loader import load_hw, with_overrides
from sparseflow.simulator.energy import EnergyEvents
from sparseflow.simulator.power import COMPONENTS, coefficients, fabric_power, run_power

HW = load_hw("u280")
DEVICE = {"lut": 1e6, "ff": 2e6, "dsp": 9024, "bram36": 2016, "uram": 960}


def design(cores: int = 2) -> ResourceReport:
    blocks = [
        Block("dsp_chain", 4, lut=1000, ff=500, dsp=16, units=(("matrix", 1.0),)),
        Block(
            "act_buffer",
            1,
            lut=80,
            lutram=80,
            uram=3,
            units=(("matrix", 1.0), ("bytes:act", 1 / 32)),
        ),
        Block("out_buffer", 1, bram36=2.5, units=(("matrix", 1.0), ("bytes:out", 1 / 64))),
        Block("controller", 1, lut=50, ff=160, bram36=1, units=(("dispatch", 1.0),)),
    ]
    return ResourceReport(blocks, cores, DEVICE)


def test_watts_by_component_match_a_hand_computation() -> None:
    activity = {"matrix": 0.5, "bytes:act": 8.0, "bytes:out": 22.4, "dispatch": 1.0}
    w = fabric_power(HW, design(), activity, "nominal")
    clock = 225e6 / 180e6  # U280 clock over the reference report's
    # act: busy half the time + 8 B/cycle into 32-B words; out: 22.4 B/cycle of 64-B words.
    chain, act, out = 0.5 * clock * 4 * 2, 0.75 * clock * 2, (0.5 + 0.35) * clock * 2
    ctrl = 1.0 * clock * 2
    assert w["logic"] == pytest.approx((chain * 1000 + ctrl * 50) * (2.6 + 6.6) * 1e-6)
    assert w["ff"] == pytest.approx((chain * 500 + ctrl * 160) * 0.21e-6)
    assert w["dsp"] == pytest.approx(chain * 16 * 0.25e-3)
    assert w["lutram"] == pytest.approx(act * 80 * 49e-6)
    assert w["uram"] == pytest.approx(act * 3 * 7.4e-3)
    assert w["bram"] == pytest.approx((out * 2.5 + ctrl * 1) * 3.7e-3)
    assert w["clocks"] == pytest.approx((4 * 500 + 160) * 2 * 3.7e-6 * clock)
    assert (w["static"], w["hbm_controller"], w["io"]) == (25.0, 3.47, 0.54)


def test_idle_units_draw_no_dynamic_power_but_the_clock_runs() -> None:
    w = fabric_power(HW, design(), {"dispatch": 1.0}, "nominal")
    assert w["dsp"] == w["uram"] == w["lutram"] == 0
    assert w["clocks"] > 0 and w["bram"] > 0  # the controller's memory runs with dispatch


def test_dynamic_power_scales_with_clock_and_toggle_rate() -> None:
    activity = {"matrix": 0.4, "bytes:act": 3.2, "bytes:out": 6.4}
    base = fabric_power(HW, design(), activity, "nominal")
    fast = fabric_power(with_overrides(HW, {"clock_hz": 450e6}), design(), activity, "nominal")
    busy = with_overrides(HW, {"power.busy_toggle_rate": 0.25})
    toggled = fabric_power(busy, design(), activity, "nominal")
    for key in ("logic", "ff", "dsp", "lutram", "bram", "uram", "clocks"):
        assert fast[key] == pytest.approx(2 * base[key])
    for key in ("logic", "ff", "dsp"):
        assert toggled[key] == pytest.approx(2 * base[key])
    for key in ("lutram", "bram", "uram", "clocks"):  # accesses and clocks, not bit toggles
        assert toggled[key] == pytest.approx(base[key])


def test_run_power_adds_traffic_and_corners_bound_the_nominal() -> None:
    events = EnergyEvents(hbm_bytes=3e9, ddr_bytes=1e6, fp16_sfu_ops=2e9, int8_macs=1e12)
    busy = {"matrix": 0.5, "load": 0.8, "store": 0.1, "sfu": 0.2}
    moved = {"bytes:act": 1e9, "bytes:out": 1e8}
    watts = {
        c: run_power(HW, design(), busy, moved, events, 1.0, c) for c in ("low", "nominal", "high")
    }
    assert set(watts["nominal"]) == set(COMPONENTS)
    assert watts["nominal"]["hbm"] == pytest.approx(3e9 * 31.76e-12)
    assert watts["high"]["hbm"] == pytest.approx(3e9 * 48e-12)
    assert watts["nominal"]["sfu"] == pytest.approx(2e9 * 4e-12)
    total = {c: sum(w.values()) for c, w in watts.items()}
    assert total["low"] < total["nominal"] < total["high"]
    for key in COMPONENTS:
        assert watts["low"][key] <= watts["nominal"][key] <= watts["high"][key]


def test_activity_is_busy_time_over_cores_and_run_time() -> None:
    one = run_power(HW, design(cores=2), {"matrix": 1.0}, {}, EnergyEvents(), 1.0)
    same = run_power(HW, design(cores=2), {"matrix": 2.0}, {}, EnergyEvents(), 2.0)
    assert one == pytest.approx(same)
    full = run_power(HW, design(cores=2), {"matrix": 2.0}, {}, EnergyEvents(), 1.0)
    assert full["dsp"] == pytest.approx(2 * one["dsp"])


def test_transferred_bytes_drive_a_buffer_per_word_and_cycle() -> None:
    # 2 cores x 1 s x 225 MHz x 16 B per cycle into 32-B words: half the act buffer's cycles.
    bytes_act = 2 * 225e6 * 16
    w = run_power(HW, design(cores=2), {}, {"bytes:act": bytes_act}, EnergyEvents(), 1.0)
    clock = 225e6 / 180e6
    assert w["uram"] == pytest.approx(0.5 * clock * 2 * 3 * 7.4e-3)


def test_coefficient_corners_read_the_bands() -> None:
    assert coefficients(HW, "low")["static_power_w"] == 20.0
    assert coefficients(HW, "high")["mw_per_uram288"] == 14.8
    assert coefficients(HW, "high")["uw_per_lut"] == 2.6  # sourced: no band
    with pytest.raises(ValueError, match="corner"):
        coefficients(HW, "typical")


def test_the_u280_design_power_is_dominated_by_the_card_and_hbm() -> None:
    # Decode-like activity: weights streaming (load busy), chains busy a quarter of the time.
    resources = estimate_resources(HW)
    events = EnergyEvents(hbm_bytes=200e9)
    busy = {"load": 0.9 * 3, "matrix": 0.25 * 3, "store": 0.01 * 3, "sfu": 0.1 * 3}
    w = run_power(HW, resources, busy, {"bytes:weight": 200e9}, events, 1.0)
    assert w["static"] + w["hbm"] + w["hbm_controller"] > 0.5 * sum(w.values())
