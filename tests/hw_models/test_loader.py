"""Tests for the hardware-model loader: presets, round trips, overrides, every error class."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from sparseflow.hw_models.build import data_fields
from sparseflow.hw_models.loader import (
    hw_from_dict,
    hw_from_text,
    hw_to_dict,
    list_hw,
    load_hw,
    with_overrides,
)
from sparseflow.hw_models.schema import CpuModel, FpgaModel, GpuModel, HardwareModel
from sparseflow.ir.errors import InputError

PRESETS = ["a100", "a100-40gb", "h100", "host-cpu", "u280", "v100s", "vhk158", "xeon-8380"]


def leaf_paths(obj: object, prefix: str = "") -> list[str]:
    """Return the dotted paths of every scalar field of a model."""
    paths = []
    for f in data_fields(type(obj)):
        value = getattr(obj, f.name)
        path = f"{prefix}.{f.name}" if prefix else f.name
        paths += leaf_paths(value, path) if dataclasses.is_dataclass(value) else [path]
    return paths


def test_list_hw_names_every_preset() -> None:
    assert list_hw() == PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_with_matching_name_and_round_trips(name: str) -> None:
    hw = load_hw(name)
    assert hw.name == name
    assert hw_from_dict(hw_to_dict(hw), "roundtrip") == hw
    again = hw_from_text(yaml.safe_dump(hw_to_dict(hw)), "dumped.yaml")
    assert again == hw and again.sources == hw.sources and again.assumptions == hw.assumptions


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_figure_has_a_source_or_an_assumption(name: str) -> None:
    hw = load_hw(name)
    noted = set(hw.sources) | set(hw.assumptions)
    identity = ("name", "kind", "description", "default_recipe", "link.technology")
    # `parallel` maps a model onto devices (a deployment choice, not a figure); `link` is
    # absent (None) on devices without modelled links
    chosen = [p for p in leaf_paths(hw) if p.startswith("parallel.") or p == "link"]
    unexplained = [p for p in leaf_paths(hw) if p not in noted and p not in identity]
    assert [p for p in unexplained if p not in chosen] == []


def test_kinds_map_to_their_dataclasses() -> None:
    assert isinstance(load_hw("u280"), FpgaModel)
    assert isinstance(load_hw("a100"), GpuModel)
    assert isinstance(load_hw("xeon-8380"), CpuModel)
    assert all(isinstance(load_hw(n), HardwareModel) for n in PRESETS)


def test_u280_facts_from_the_refs() -> None:
    hw = load_hw("u280")
    assert hw.clock_hz == 225e6 and hw.dsp_count == 9024 and hw.cores == 3
    assert hw.hbm.bandwidth_bytes_per_s == pytest.approx(460e9)
    assert hw.hbm.capacity_bytes == 8 * 2**30
    assert hw.core.nm_supported_n == (2, 4, 8, 16) and hw.core.dsp_group_size == 2
    assert hw.core.mv_parallelism.macs_per_cycle == 1024
    # The artifact's MM parallelism (2x16x128) halved with the chains the device fits.
    assert hw.core.mm_parallelism.macs_per_cycle == 2048 == hw.core.int8_macs_per_cycle
    assert hw.fabric.luts == 1_304_000 and hw.fabric.bram36 == 2016 and hw.fabric.uram288 == 960
    assert hw.default_recipe == "flightllm"


def test_default_recipes() -> None:
    expected = {"u280": "flightllm", "vhk158": "flightllm", "v100s": "dense", "host-cpu": "dense"}
    for name, recipe in expected.items():
        assert load_hw(name).default_recipe == recipe
    assert load_hw("a100").default_recipe in ("int8", "2:4", "w4a16", "dense")


def test_load_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(hw_to_dict(load_hw("a100"))))
    assert load_hw(path) == load_hw("a100")
    assert load_hw(str(path)).source_file == str(path)


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(InputError, match="unknown hardware model 'tpu'.*a100.*u280"):
        load_hw("tpu")


def test_missing_file_is_named() -> None:
    with pytest.raises(InputError, match="nowhere/x.yaml: no such"):
        load_hw("nowhere/x.yaml")


def test_with_overrides_changes_one_field_and_revalidates() -> None:
    hw = load_hw("u280")
    faster = with_overrides(hw, {"clock_hz": 300e6, "hbm.channels": 16})
    assert faster.clock_hz == 300e6 and faster.hbm.channels == 16
    assert faster.core == hw.core and hw.clock_hz == 225e6
    assert "hbm.channels" not in faster.sources and "hbm.channels" in faster.assumptions
    with pytest.raises(InputError, match=r"field 'clock_hz': must lie in 1e6..1e10 Hz"):
        with_overrides(hw, {"clock_hz": 0})
    with pytest.raises(InputError, match=r"field 'hbm.nope': no such field"):
        with_overrides(hw, {"hbm.nope": 1})


def test_models_are_frozen_and_hashable() -> None:
    hw = load_hw("a100")
    with pytest.raises(dataclasses.FrozenInstanceError):
        hw.sm_count = 1  # type: ignore[misc]
    assert hash(hw) == hash(load_hw("a100"))


def bad(mutate, name: str = "u280") -> str:
    """Return the InputError message after applying `mutate` to a preset's dict."""
    data = copy.deepcopy(hw_to_dict(load_hw(name)))
    mutate(data)
    with pytest.raises(InputError) as info:
        hw_from_dict(data, "bad.yaml")
    return str(info.value)


def test_malformed_yaml_names_file_and_line() -> None:
    with pytest.raises(InputError, match=r"x.yaml: malformed YAML \(line 2\)"):
        hw_from_text("kind: fpga\n  clock_hz: [1,\n", "x.yaml")


def test_duplicate_key_is_rejected() -> None:
    with pytest.raises(InputError, match="duplicate key 'kind'"):
        hw_from_text("kind: fpga\nkind: gpu\n", "x.yaml")


def test_exponent_without_dot_reads_as_a_number() -> None:
    text = yaml.safe_dump(hw_to_dict(load_hw("u280"))).replace("225000000.0", "225e6")
    assert "225e6" in text
    assert hw_from_text(text, "x.yaml").clock_hz == 225e6


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(InputError, match="x.yaml: top level: expected a mapping"):
        hw_from_text("- 1\n- 2\n", "x.yaml")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("clock_hz"), "bad.yaml: field 'clock_hz': missing field"),
        (lambda d: d["hbm"].pop("channels"), "field 'hbm.channels': missing field"),
        (lambda d: d.update(clock_mhz=1), "field 'clock_mhz': unknown field"),
        (lambda d: d["core"]["sfu"].update(x=1), "field 'core.sfu.x': unknown field"),
        (lambda d: d.update(kind="tpu"), "field 'kind': expected one of"),
        (lambda d: d.update(clock_hz="fast"), "field 'clock_hz': expected a number"),
        (lambda d: d.update(cores=2.5), "field 'cores': expected an integer"),
        (lambda d: d.update(cores=True), "field 'cores': expected an integer"),
        (lambda d: d.update(hbm=3), "field 'hbm': expected a mapping"),
        (lambda d: d.update(clock_hz=-1.0), "field 'clock_hz': must lie in 1e6..1e10 Hz"),
        (lambda d: d.update(clock_hz=float("nan")), "field 'clock_hz': expected a finite"),
        (lambda d: d.update(clock_hz=10**400), "field 'clock_hz': expected a finite"),
        (
            lambda d: d["hbm"].update(bandwidth_per_channel_bytes_per_s=0),
            "field 'hbm.bandwidth_per_channel_bytes_per_s': must be > 0",
        ),
        (
            lambda d: d["hbm"].update(same_channel_efficiency=1.2),
            "field 'hbm.same_channel_efficiency': must lie in",
        ),
        (
            lambda d: d["hbm"].update(cross_channel_efficiency=0),
            "field 'hbm.cross_channel_efficiency': must lie in",
        ),
        (lambda d: d["core"].update(nm_supported_n=[]), "core.nm_supported_n': expected a non"),
        (lambda d: d["core"].update(nm_supported_n=[2, 3]), "core.nm_supported_n': a chain runs"),
        (lambda d: d["core"].update(nm_supported_n=[2, 8, 16]), r"one of \[\[2, 4, 8, 16\]"),
        (lambda d: d["core"].update(nm_block_m=32), "core.nm_block_m': the ISA encodes"),
        (lambda d: d["core"].update(dsps_per_chain=20), "core.dsps_per_chain': must be a multiple"),
        (lambda d: d["hbm"].update(channels=2), "field 'hbm.channels': each of the 3 cores"),
        (lambda d: d["core"].update(nm_supported_n=[2, -4]), r"nm_supported_n\[1\]': must be"),
        (lambda d: d["core"].update(dsp_chains=4096), "field 'core.dsp_chains': 3 cores"),
        (lambda d: d["core"].update(dsp_group_size=3), "field 'core.dsp_group_size'"),
        (lambda d: d["core"]["buffers"].update(double_buffering="yes"), "expected true/false"),
        (lambda d: d["core"]["sfu"].update(precision="int3"), "field 'core.sfu.precision'"),
        (lambda d: d.update(default_recipe="2:4"), "field 'default_recipe': expected one of"),
        (lambda d: d.update(name="U 280"), "field 'name': use lower-case"),
        (lambda d: d.update(name=""), "field 'name': expected a text"),
        (
            lambda d: (d["power"].update(static_power_w=500.0), d["power"].pop("range")),
            "field 'power.static_power_w'",
        ),
        (lambda d: d["hbm"]["source"].update(bogus="x"), "field 'hbm.source.bogus': note for"),
        (lambda d: d["hbm"]["source"].update(channels=""), "'hbm.source.channels': note must"),
        (lambda d: d["hbm"].update(source=[1]), "field 'hbm.source': expected a mapping"),
        (lambda d: d["hbm"].update(ports_per_channel=0), "field 'hbm.ports_per_channel'"),
        (lambda d: d["hbm"].pop("port_clock_hz"), "field 'hbm.port_clock_hz': missing"),
    ],
)
def test_fpga_bad_fields_are_named(mutate, message: str) -> None:
    assert re.search(message, bad(mutate))


@pytest.mark.parametrize(
    ("name", "mutate", "message"),
    [
        ("a100", lambda d: d["peaks"].update(int4_tensor_ops_per_s=None), "pj_per_int4_op"),
        ("a100", lambda d: d["efficiency"].update(gemm_compute_efficiency=0.0), "must lie in"),
        ("a100", lambda d: d["efficiency"].update(kernel_launch_overhead_s=-1e-6), ">= 0"),
        ("a100", lambda d: d["power"].update(static_power_w=400.0), "power.static_power_w"),
        ("a100", lambda d: d["power"].update(busy_power_w=390.0), "power.busy_power_w': static"),
        ("a100", lambda d: d["efficiency"].update(compute_memory_overlap=1.5), r"in \[0, 1\]"),
        ("a100-40gb", lambda d: d["power"].update(busy_power_w=-1.0), ">= 0"),
        ("v100s", lambda d: d["peaks"].update(sparse_2to4_speedup=0), "must be > 0"),
        (
            "host-cpu",
            lambda d: d["compute"].update(peak_fp32_flops_per_s=1e12),
            "compute.peak_fp32_flops_per_s': 1e\\+12 exceeds",
        ),
        ("host-cpu", lambda d: d["memory"].update(dram_bandwidth_bytes_per_s=0), "must be > 0"),
        ("xeon-8380", lambda d: d.update(default_recipe="flightllm"), "default_recipe"),
    ],
)
def test_gpu_and_cpu_bad_fields_are_named(name: str, mutate, message: str) -> None:
    assert re.search(message, bad(mutate, name))


def test_reloading_an_edited_file_sees_the_edit(tmp_path: Path) -> None:
    path = tmp_path / "edit.yaml"
    data = hw_to_dict(load_hw("v100s"))
    path.write_text(yaml.safe_dump(data))
    assert load_hw(path).sm_count == 80
    data["sm_count"] = 81
    path.write_text(yaml.safe_dump(data) + "\n# edited\n")
    assert load_hw(path).sm_count == 81


def test_ranges_load_round_trip_and_bound_their_value() -> None:
    hw = load_hw("u280")
    assert hw.band("power.static_power_w", hw.power.static_power_w) == (20.0, 30.0)
    assert hw.band("power.uw_per_lut", 2.6) == (2.6, 2.6)  # sourced: no band
    again = hw_from_text(yaml.safe_dump(hw_to_dict(hw)), "dumped.yaml")
    assert again.ranges == hw.ranges


@pytest.mark.parametrize(
    ("band", "message"),
    [
        ([30.0, 40.0], r"power.range.static_power_w': \[30.0, 40.0\] must contain the value 25"),
        ([20.0], "expected \\[low, high\\]"),
        (["low", 30.0], "expected a number"),
        ([True, 30.0], "expected a number"),
        ([20.0, float("inf")], "expected a finite"),
    ],
)
def test_bad_ranges_are_named(band: list, message: str) -> None:
    assert re.search(message, bad(lambda d: d["power"]["range"].update(static_power_w=band)))


def test_range_must_name_a_number_of_its_section() -> None:
    message = bad(lambda d: d["power"]["range"].update(nothing=[1, 2]))
    assert "field 'power.range.nothing': range for a field that is not a number" in message
    assert "expected a mapping" in bad(lambda d: d["power"].update(range=[1, 2]))


def test_an_override_drops_the_overridden_band() -> None:
    hw = with_overrides(load_hw("u280"), {"power.static_power_w": 27.0})
    assert "power.static_power_w" not in hw.ranges
    assert "power.mw_per_dsp" in hw.ranges


@pytest.mark.parametrize("name", ["u280", "vhk158", "u280-small"])
def test_every_unverified_power_coefficient_has_a_band(name: str) -> None:
    hw = load_hw(name)
    paths = [p for p in leaf_paths(hw) if p.split(".")[0] in ("power", "energy")]
    conditions = ("power.board_power_budget_w", "power.reference_clock_hz",
                  "power.reference_toggle_rate")  # fmt: skip
    unverified = [
        p for p in paths
        if p not in conditions and "[U]" in hw.sources.get(p, "") + hw.assumptions.get(p, "")
    ]  # fmt: skip
    assert unverified and all(p in hw.ranges for p in unverified)


def test_example_models_load_by_name() -> None:
    hw = load_hw("u280-small")
    assert hw.name == "u280-small" and hw.source_file.endswith("examples/u280-small.yaml")
    assert "u280-small" not in list_hw()
