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
