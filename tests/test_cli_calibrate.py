"""`sparseflow calibrate`: bad measurement files exit 2 naming line and column; a run writes a
hardware model that loads, and prints every row's held-out error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sparseflow.cli import main
from sparseflow.hw_models.loader import load_hw
from tests.ir.hf_configs import PUBLIC_CONFIGS

HEADER = "model,recipe,batch,prompt,gen,decode_tokens_per_s,ttft_s,role"
GOOD = "llama2-7b,dense,1,128,16,90.0,,fit"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([HEADER, GOOD, "llama9-7b,dense,1,128,16,90.0,,fit"], "line 3, column 'model'"),
        ([HEADER, GOOD, "llama2-7b,dense,1,128,16,,-0.5,fit"], "line 3, column 'ttft_s'"),
        ([HEADER, "llama2-7b,dense,1,128,16,abc,,fit"], "line 2, column 'decode_tokens_per_s'"),
        ([HEADER, "llama2-7b,dense,0,128,16,90.0,,fit"], "line 2, column 'batch'"),
        ([HEADER, "llama2-7b,nope,1,128,16,90.0,,fit"], "line 2, column 'recipe'"),
        ([HEADER, "llama2-7b,dense,1,128,16,90.0,,maybe"], "line 2, column 'role'"),
        ([HEADER, "llama2-7b,dense,1,128,16,,,fit"], "line 2, column 'decode_tokens_per_s'"),
        (["# comment", HEADER.replace(",gen", ""), GOOD], "line 2, column 'gen': missing"),
        ([HEADER + ",speed", GOOD + ",1"], "line 1, column 'speed': unknown column"),
        ([HEADER, "llama2-7b,dense,1,128,16,90.0,fit"], "line 2: 7 cells, the header has 8"),
        ([HEADER], "no measurement rows"),
        ([HEADER, "llama2-7b,dense,256,4096,4096,90.0,,fit"], "line 2: .*memory.capacity_bytes"),
    ],
)
def test_bad_measurements_exit_2_naming_line_and_column(capsys, tmp_path, lines, message):
    csv = tmp_path / "runs.csv"
    csv.write_text("\n".join(lines) + "\n")
    code, out, err = run(capsys, "calibrate", "a100", str(csv), "-o", str(tmp_path / "x.yaml"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and str(csv) in err
    assert re.search(message, err), err
    assert not (tmp_path / "x.yaml").exists()


def test_calibrate_writes_a_loadable_model_and_prints_held_out_errors(capsys, tmp_path: Path):
    config = tmp_path / "four-layers.json"
    config.write_text(json.dumps({**PUBLIC_CONFIGS["llama2-7b"], "num_hidden_layers": 4}))
    csv = tmp_path / "runs.csv"
    csv.write_text(
        "# two decode measurements of one device\n"
        "model,recipe,batch,prompt,gen,decode_tokens_per_s,framework\n"
        "four-layers.json,dense,1,128,16,900.0,demo\n"
        "four-layers.json,dense,1,1024,16,850.0,demo\n"
    )
    out_yaml = tmp_path / "my-a100.yaml"
    argv = ["calibrate", "a100", str(csv), "-o", str(out_yaml)]
    code, out, _ = run(capsys, *argv, "--fit", "efficiency.memory_bandwidth_efficiency")
    assert code == 0
    hw = load_hw(out_yaml)
    assert hw.name == "my-a100" and hw.kind.value == "gpu"
    assert "runs.csv lines 3, 4" in hw.sources["efficiency.memory_bandwidth_efficiency"]
    assert f"calibrated from {csv} by\n#   sparseflow calibrate a100" in out_yaml.read_text()
    rows = [line for line in out.splitlines() if "four-layers b1" in line]
    assert len(rows) == 2 and all(line.rstrip().endswith("%") for line in rows)
    code, out, _ = run(capsys, *argv, "--fit", "efficiency.memory_bandwidth_efficiency", "--json")
    record = json.loads(out)
    assert [r["line"] for r in record["rows"]] == [3, 4]
    assert all(r["held_out_error"] is not None for r in record["rows"])
