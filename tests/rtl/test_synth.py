"""Open synthesis (Yosys from PyPI) of the generated RTL against the analytical model.

Marked `synth`: each Yosys run takes tens of seconds (the first also compiles Yosys's
WebAssembly module), so .ci/run runs these in their own step.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparseflow.backends.fpga.rtl.memories import Memory, RamStyle, map_memory
from sparseflow.backends.fpga.rtl.synth import run_yosys, synth_record
from sparseflow.cli import main
from sparseflow.hw_models.loader import load_hw

SHAPES = [  # (width, depth, read ports, style): one sync write port, like every RTL buffer
    (256, 32768, 1, RamStyle.ULTRA),
    (100, 5000, 1, RamStyle.ULTRA),
    (512, 300, 1, RamStyle.BLOCK),
    (40, 3000, 2, RamStyle.BLOCK),
    (1000, 48, 1, RamStyle.LUTRAM),
    (70, 200, 1, RamStyle.LUTRAM),
]


@pytest.mark.synth
def test_u280_small_synthesis_matches_the_analytical_model() -> None:
    hw = load_hw("u280-small")
    record = synth_record("u280-small", None)
    core, model = record["core"], record["model_core"]
    assert core["dsp"] == hw.core.dsp_chains * hw.core.dsps_per_chain == 16
    assert record["model_exact"] == {"dsp": True, "bram36": True, "uram": True}
    assert core["uram"] > 0 and core["bram36"] > 0 and core["lutram"] > 0  # every kind used
    for key in ("lut", "ff"):
        assert model[key] == pytest.approx(core[key], rel=0.15)
    chain = next(b for b in record["blocks"] if b["name"] == "dsp_chain")
    assert chain["instances"] == 2 and chain["dsp"] == 8  # the cascade stays in DSP slices
    assert record["origin"].startswith("u280-small.yaml sha256:")


@pytest.mark.synth
def test_memory_geometry_matches_yosys(tmp_path: Path) -> None:
    sources, script = {}, []
    for i, (width, depth, reads, style) in enumerate(SHAPES):
        sources[f"mem{i}"] = memory_module(f"mem{i}", width, depth, reads, style)
        script += [f"design -reset\nread_slang -j 1 mem{i}.sv --top mem{i}",
                   f"synth_xilinx -family xcup -uram -flatten -noiopad -top mem{i}",
                   f"tee -q -o stat{i}.json stat -json"]  # fmt: skip
    run_yosys(tmp_path, sources, "\n".join(script) + "\n")
    for i, (width, depth, reads, style) in enumerate(SHAPES):
        cells = json.loads((tmp_path / f"stat{i}.json").read_text())["design"]
        m = map_memory(Memory("m", width, depth, reads), style)
        assert cells["num_cells_by_type"].get(m.cell) == m.cells, (SHAPES[i], cells)


def memory_module(name: str, width: int, depth: int, reads: int, style: RamStyle) -> str:
    """Return a module holding one memory as the RTL writes its buffers."""
    ports = "".join(f", input logic [15:0] ra{r}, output logic [{width - 1}:0] rd{r}"
                    for r in range(reads))  # fmt: skip
    body = "".join(f"    rd{r} <= mem[ra{r}];\n" for r in range(reads))
    return (
        f"module {name} (input logic clk, input logic we, input logic [15:0] wa,\n"
        f"    input logic [{width - 1}:0] wd{ports});\n"
        f'  (* ram_style = "{style.value}" *) logic [{width - 1}:0] mem[{depth}];\n'
        f"  always_ff @(posedge clk) begin\n    if (we) mem[wa] <= wd;\n{body}  end\n"
        "endmodule\n"
    )


@pytest.mark.synth
def test_cli_synth_prints_json_and_rejects_a_missing_folder(tmp_path: Path, capsys) -> None:
    assert main(["rtl", "synth", "--target", "u280-small", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["core"]["dsp"] == 16 and record["device_total"]["dsp"] == 16
    assert main(["rtl", "synth", str(tmp_path)]) == 2
    assert "sf_dsp48.sv: missing" in capsys.readouterr().err
    assert main(["rtl", "synth"]) == 2
