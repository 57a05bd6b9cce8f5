"""The examples the README quotes run as written."""

import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_compress_and_compare_prints_every_recipe(capsys):
    runpy.run_path(str(EXAMPLES / "compress_and_compare.py"))["main"]("tiny-llama")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7 and lines[1].startswith("int8")
    errors = {line.split()[0]: float(line.split()[-1]) for line in lines[1:]}
    assert 0 < errors["int8"] < errors["int4:channel"]


def test_the_readme_api_example_runs(capsys):
    readme = (EXAMPLES.parent / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [int(r[0]) for r in rows] == [200, 225, 250]
    assert float(rows[0][1]) < float(rows[2][1])  # a faster clock decodes faster
    assert all(float(r[1]) > 0 and float(r[2]) > 0 for r in rows)


def test_validate_gpus_prints_every_row_of_a_target(capsys):
    example = runpy.run_path(str(EXAMPLES / "validate_gpus.py"))
    assert example["validate"]("v100s", False) == []  # its one row is a fit row
    example["gemm_curve"]("v100s")
    out = capsys.readouterr().out
    assert "decode_tokens_per_s" in out and "avg_power_w" in out and "M=16384" in out
