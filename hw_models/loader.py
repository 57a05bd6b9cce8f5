"""Load, validate, list, export and vary hardware models.

Public API:
    load_hw(name_or_path) -> HardwareModel      a preset name (file stem here) or a YAML path
    list_hw() -> list[str]                      the preset names
    hw_from_dict(data, file_label) -> HardwareModel
    hw_to_dict(hw) -> dict                      plain data; hw_from_dict(hw_to_dict(hw)) == hw
    with_overrides(hw, {"dotted.field": value}) -> HardwareModel   re-validated copy

Any bad input raises `InputError` with the file and the dotted field named: malformed YAML,
duplicate keys, unknown/missing fields, wrong types, out-of-range values and inconsistent
combinations (more DSPs in chains than the device has, static power above TDP, ...).
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sparseflow.hw_models.build import (
    NOTE_KEYS,
    RANGE_KEY,
    BuildContext,
    build_section,
    to_plain,
)
from sparseflow.hw_models.schema import (
    MODEL_CLASS_BY_KIND,
    RECIPES_BY_KIND,
    CpuModel,
    FpgaCore,
    FpgaModel,
    GpuModel,
    HardwareModel,
    Kind,
)
from sparseflow.ir.errors import InputError
from sparseflow.ir.fileio import brief, parse_yaml, read_yaml

HW_DIR = Path(__file__).resolve().parent
EXAMPLES_DIR = HW_DIR.parent / "examples"  # example models of a source checkout (u280-small)
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
OVERRIDE_NOTE = "design-space override of the preset value"
MAX_HBM_CHANNELS = 32  # the instruction set's 5-bit channel field (backends/fpga/isa.py)


def list_hw() -> list[str]:
    """Return the names of the preset hardware models shipped with sparseflow."""
    return sorted(p.stem for p in HW_DIR.glob("*.yaml"))


def load_hw(name_or_path: str | Path) -> HardwareModel:
    """Load a preset by name or a hardware-model YAML file by path; validate it fully."""
    path = resolve_path(name_or_path)
    label = file_label(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputError(f"{label}: cannot read hardware model: {exc.strerror}") from None
    return hw_from_dict(parse_file(str(path), label, stat.st_mtime_ns, stat.st_size), label)


def file_label(path: Path) -> str:
    """Return how messages name a hardware-model file: a preset by its name, else its path."""
    preset = HW_DIR / path.name
    return f"{path.stem} (built-in)" if path.resolve() == preset.resolve() else str(path)


@functools.lru_cache(maxsize=64)
def parse_file(path: str, label: str, mtime_ns: int, size: int) -> Any:
    """Parse a YAML file once per (path, modification time, size); sweeps reload cheaply.

    Callers must not mutate the result: `hw_from_dict` only reads it.
    """
    del mtime_ns, size  # part of the cache key only
    return read_yaml(Path(path), label, "hardware model")


def resolve_path(name_or_path: str | Path) -> Path:
    """Return the YAML file a preset name, an example model's name (examples/NAME.yaml in a
    source checkout) or a path refers to, or raise naming the presets."""
    text = str(name_or_path)
    if text in list_hw():
        return HW_DIR / f"{text}.yaml"
    example = EXAMPLES_DIR / f"{text}.yaml"
    if NAME_PATTERN.match(text) and example.is_file():
        return example
    looks_like_path = isinstance(name_or_path, Path) or "/" in text or text.endswith(".yaml")
    if looks_like_path:
        if not Path(text).is_file():
            raise InputError(f"{text}: no such hardware-model file")
        return Path(text)
    known = ", ".join(list_hw())
    raise InputError(f"unknown hardware model '{text}' (known: {known}; or a path to a .yaml)")


def hw_from_text(text: str, file_label: str) -> HardwareModel:
    """Parse YAML text of one hardware model and validate it."""
    return hw_from_dict(parse_yaml(text, file_label), file_label)


def hw_from_dict(data: Any, file_label: str = "<dict>") -> HardwareModel:
    """Build and validate a hardware model from plain data (as `hw_to_dict` returns)."""
    ctx = BuildContext(file_label)
    if not isinstance(data, Mapping):
        raise ctx.error("", f"expected a mapping of fields, got {type(data).__name__}")
    kind_value = data.get("kind")
    if kind_value not in [k.value for k in Kind]:
        kinds = [k.value for k in Kind]
        raise ctx.error("kind", f"expected one of {kinds}, got {brief(kind_value)}")
    cls = MODEL_CLASS_BY_KIND[Kind(kind_value)]
    kwargs = build_section(cls, data, "", ctx)
    hw = cls(
        **kwargs,
        source_file=file_label,
        sources=ctx.notes["source"],
        assumptions=ctx.notes["assumption"],
        ranges=ctx.ranges,
    )
    validate(hw, ctx)
    return hw


def hw_to_dict(hw: HardwareModel) -> dict[str, Any]:
    """Return the model as plain, JSON- and YAML-ready data including its provenance notes."""
    notes = {"source": hw.sources, "assumption": hw.assumptions, RANGE_KEY: hw.ranges}
    return to_plain(hw, "", notes)


def with_overrides(hw: HardwareModel, overrides: Mapping[str, Any]) -> HardwareModel:
    """Return a copy of `hw` with dotted fields replaced, validated like a file.

    An overridden field loses its source note and range and is marked as a design-space
    override.
    """
    data = copy.deepcopy(hw_to_dict(hw))
    label = f"{hw.source_file or hw.name} (overrides)"
    for dotted, value in overrides.items():
        set_dotted(data, dotted, value, label)
    return hw_from_dict(data, label)


def set_dotted(data: dict[str, Any], dotted: str, value: Any, label: str) -> None:
    """Set `data[a][b][c] = value` for `dotted` = "a.b.c"; the field must already exist."""
    *sections, leaf = dotted.split(".")
    node: Any = data
    for part in sections:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or leaf not in node or leaf in (*NOTE_KEYS, RANGE_KEY):
        raise InputError(f"{label}: field '{dotted}': no such field to override")
    node[leaf] = value
    node.get("source", {}).pop(leaf, None)
    node.get(RANGE_KEY, {}).pop(leaf, None)
    node.setdefault("assumption", {})[leaf] = OVERRIDE_NOTE


def validate(hw: HardwareModel, ctx: BuildContext) -> None:
    """Check the rules that span several fields; raise naming the field at fault."""
    if not NAME_PATTERN.match(hw.name):
        allowed = "lower-case letters, digits, '.', '_' or '-'"
        raise ctx.error("name", f"use {allowed}, not {brief(hw.name)}")
    recipes = RECIPES_BY_KIND[hw.kind]
    if hw.default_recipe not in recipes:
        raise ctx.error("default_recipe", f"expected one of {list(recipes)} for {hw.kind.value}")
    validate_parallel(hw, ctx)
    if isinstance(hw, FpgaModel):
        validate_fpga(hw, ctx)
    elif isinstance(hw, GpuModel):
        validate_gpu(hw, ctx)
    elif isinstance(hw, CpuModel):
        validate_cpu(hw, ctx)


def validate_parallel(hw: HardwareModel, ctx: BuildContext) -> None:
    """Check that a mapping onto several devices names tp x pp devices that a link joins."""
    par = hw.parallel
    if par.devices is not None and par.devices != par.device_count:
        raise ctx.error(
            "parallel.devices", f"{par.devices} devices (--devices) != tp {par.tp} x pp {par.pp}"
        )
    if par.device_count == 1:
        return
    if hw.link is None:
        raise ctx.error(
            "link", f"{par.device_count} devices (--tp x --pp) need a link section (none given)"
        )
    if par.device_count > hw.link.max_devices:
        raise ctx.error(
            "link.max_devices",
            f"{par.device_count} devices (--tp x --pp) exceed the {hw.link.max_devices} one "
            "fabric joins",
        )


def validate_fpga(hw: FpgaModel, ctx: BuildContext) -> None:
    """Check that the cores fit the device and the modes fit the cores."""
    core = hw.core
    if hw.hbm.channels > MAX_HBM_CHANNELS:
        raise ctx.error(
            "hbm.channels",
            f"{hw.hbm.channels} exceeds the {MAX_HBM_CHANNELS} the ISA's channel field addresses",
        )
    if hw.cores * core.dsps > hw.dsp_count:
        raise ctx.error(
            "core.dsp_chains",
            f"{hw.cores} cores x {core.dsps} DSPs exceed dsp_count {hw.dsp_count}",
        )
    validate_chain(core, ctx)
    if hw.hbm.channels < hw.cores:
        raise ctx.error("hbm.channels", f"each of the {hw.cores} cores needs a channel of its own")
    if core.sfu.precision not in ("fp16", "fp32"):
        raise ctx.error("core.sfu.precision", "expected 'fp16' or 'fp32'")
    if hw.hbm.cross_channel_efficiency > hw.hbm.same_channel_efficiency:
        raise ctx.error("hbm.cross_channel_efficiency", "must not exceed same_channel_efficiency")
    if hw.power.static_power_w >= hw.power.board_power_budget_w:
        raise ctx.error("power.static_power_w", "must be below power.board_power_budget_w")


# What the ISA and the generated RTL fix (`backends.fpga.isa`, `rtl/templates`): N:M blocks of
# M = 16 (the MM/MV `n` field encodes N in 2, 4, 8, 16), DSP groups of two slices, and a chain
# that runs every N:16 mode from its smallest one up to dense.
NM_BLOCK_M = 16
DSP_GROUP_SIZE = 2
NM_MODES = (2, 4, 8, 16)


def validate_chain(core: FpgaCore, ctx: BuildContext) -> None:
    """Check the DSP chain fields against what the ISA and the RTL can build."""
    if core.nm_block_m != NM_BLOCK_M:
        raise ctx.error("core.nm_block_m", f"the ISA encodes N:M blocks of M = {NM_BLOCK_M} only")
    if core.dsp_group_size != DSP_GROUP_SIZE:
        raise ctx.error(
            "core.dsp_group_size", f"the generated DSP chain groups {DSP_GROUP_SIZE} slices only"
        )
    suffixes = [list(NM_MODES[i:]) for i in range(len(NM_MODES))]
    if list(core.nm_supported_n) not in suffixes:
        raise ctx.error(
            "core.nm_supported_n",
            f"a chain runs every N:16 mode from its smallest up: one of {suffixes}",
        )
    for n in (n for n in core.nm_supported_n if n != NM_BLOCK_M):
        if core.dsps_per_chain % n:
            raise ctx.error("core.dsps_per_chain", f"must be a multiple of N = {n} (N:16 mode)")
    if core.dsps_per_chain % core.dsp_group_size:
        raise ctx.error("core.dsps_per_chain", "must be a multiple of core.dsp_group_size")


def validate_gpu(hw: GpuModel, ctx: BuildContext) -> None:
    """Check that optional int4 fields come together and power figures are ordered."""
    if (hw.peaks.int4_tensor_ops_per_s is None) != (hw.energy.pj_per_int4_op is None):
        raise ctx.error(
            "energy.pj_per_int4_op", "set exactly when peaks.int4_tensor_ops_per_s is set"
        )
    validate_power(hw, ctx)


def validate_cpu(hw: CpuModel, ctx: BuildContext) -> None:
    """Check that the stated fp32 peak does not exceed what cores x SIMD x FMA allow."""
    c = hw.compute
    ceiling = c.cores * c.clock_hz * c.fma_units_per_core * (c.simd_width_bits // 32) * 2
    if c.peak_fp32_flops_per_s > ceiling * (1 + 1e-9):
        raise ctx.error(
            "compute.peak_fp32_flops_per_s",
            f"{c.peak_fp32_flops_per_s:.4g} exceeds cores x clock x FMA x lanes x 2 = "
            f"{ceiling:.4g}",
        )
    validate_power(hw, ctx)


def validate_power(hw: GpuModel | CpuModel, ctx: BuildContext) -> None:
    """Check that idle power, and idle plus busy power, lie below the power limit."""
    power = hw.power
    if power.static_power_w >= power.tdp_w:
        raise ctx.error("power.static_power_w", "must be below power.tdp_w")
    if power.static_power_w + power.busy_power_w >= power.tdp_w:
        raise ctx.error("power.busy_power_w", "static_power_w + busy_power_w must be below tdp_w")
