"""Hostile but realistic input, class by class: each case ends in exit 2 with one line and no
traceback, or in a correct result. Bad paths, non-UTF-8 files, NaN/inf, recipes with and
without weights, huge sizes, interrupts, symlinked and foreign output folders, requests
beyond the model or the device."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from sparseflow.cli import main
from sparseflow.hw_models.loader import resolve_path
from sparseflow.ir.graph import shape_only
from sparseflow.ir.models.zoo import load_model
from sparseflow.passes.recipe import recipe_from_dict

ROOT = Path(__file__).resolve().parents[1]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, *argv: str, match: str = "") -> str:
    """Run the CLI; assert exit 2 with one error line (containing `match`); return it."""
    code, _, err = cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("sparseflow: error: "), err
    assert "Traceback" not in err and match in lines[0], lines[0]
    return lines[0]


def variant(tmp_path: Path, preset: str, changes: dict, name: str = "hw.yaml") -> Path:
    """Write a copy of a preset hardware YAML with dotted fields changed."""
    data = yaml.safe_load(resolve_path(preset).read_text())
    for dotted, value in changes.items():
        *sections, leaf = dotted.split(".")
        node = data
        for section in sections:
            node = node[section]
        node[leaf] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def recipe_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text("name: hostile\npasses:\n" + text)
    return path


# ----------------------------------------------------------------------------- output paths


def test_output_paths_that_cannot_be_written(capsys, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    compile_ = ("compile", "tiny-llama", "--target", "host-cpu", "--prompt", "8", "--gen", "2")
    refused(capsys, *compile_, "-o", a_file, match="exists and is not a folder")
    refused(capsys, *compile_, "-o", a_file / "out", match=str(a_file / "out"))
    refused(capsys, *compile_, "-o", "/proc/sparseflow-out", match="cannot write there")
    estimate = ("estimate", "tiny-llama", "--target", "a100", "--prompt", "8", "--gen", "2")
    refused(capsys, *estimate, "--plot", tmp_path / "x.txt", match="--plot")
    refused(capsys, *estimate, "--plot", tmp_path / "no" / "x.png", match="does not exist")
    refused(capsys, *estimate, "--trace", tmp_path / "t.json", match="FPGA event simulator")
    fpga = ("estimate", "tiny-llama", "--target", "u280", "--prompt", "8", "--gen", "2")
    refused(capsys, *fpga, "--trace", tmp_path / "t.txt", match="--trace")
    refused(capsys, "rtl", "generate", "-o", a_file, match="exists and is not a folder")
    refused(capsys, "rtl", "generate", "-o", tmp_path, match="--force")  # holds other files
    assert cli(capsys, "rtl", "generate", "-o", tmp_path / "rtl")[0] == 0
    assert cli(capsys, "rtl", "generate", "-o", tmp_path / "rtl", "--wbits", "4")[0] == 0


def test_compile_refuses_a_foreign_folder_and_leaves_it_untouched(capsys, tmp_path):
    out = tmp_path / "out"
    base = ("compile", "tiny-llama", "--prompt", "8", "--gen", "2", "-o", out)
    assert cli(capsys, *base, "--target", "u280")[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    refused(capsys, *base, "--target", "host-cpu", match="--force")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert cli(capsys, *base, "--target", "u280")[0] == 0  # its own output: replaced
    assert cli(capsys, *base, "--target", "host-cpu", "--force")[0] == 0
    assert not (out / "rtl").exists() and not (out / "program.lst").exists()  # replaced whole
    assert json.loads((out / "report.json").read_text())["target"] == "host-cpu"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left


def test_compile_never_follows_a_link_in_the_output_folder(capsys, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").symlink_to(outside)
    base = ("compile", "tiny-llama", "--target", "host-cpu", "--prompt", "8", "--gen", "2")
    refused(capsys, *base, "-o", out, match="--force")
    assert cli(capsys, *base, "-o", out, "--force")[0] == 0
    assert outside.read_text() == "keep me" and not (out / "report.json").is_symlink()
    link = tmp_path / "link"
    link.symlink_to(out)
    refused(capsys, *base, "-o", link, match="symbolic link")


# ----------------------------------------------------------------------------- bad files


def test_non_utf8_inputs(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: \xff\xfe\n")
    refused(capsys, "estimate", "tiny-llama", "--target", bad, match="not UTF-8")
    refused(capsys, "estimate", "tiny-llama", "--target", "a100", "--recipe", bad, match="UTF-8")
    graph = tmp_path / "model.graph"
    graph.write_bytes(b"graph \xff {")
    refused(capsys, "show", graph, match="cannot read graph file")


def test_an_anchor_bomb_is_refused_quickly(capsys, tmp_path):
    """A string field holding 9**9 strings through anchors is named, never expanded."""
    levels = ["&a0 [" + ", ".join(["lol"] * 9) + "]"]
    levels += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    text = resolve_path("a100").read_text()
    bomb = text.replace("\ndescription:", "\ndescription: [" + ", ".join(levels) + "]\nx:", 1)
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb.replace("\nx:", "\nx_description:", 1))
    start = time.perf_counter()
    refused(capsys, "estimate", "tiny-llama", "--target", path, match="bomb.yaml")
    assert time.perf_counter() - start < 10


def test_graph_files_with_bad_dimensions(capsys, tmp_path):
    text = str(load_model("tiny-llama", "decode"))
    for dim, message in (("-5", "not negative"), ("10" * 30, "2**40")):
        path = tmp_path / "g.graph"
        path.write_text(text.replace("f32[64,64]", f"f32[{dim},64]", 1))
        refused(capsys, "show", path, match=message)


# ----------------------------------------------------------------------------- NaN and inf


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """Return a function writing a tiny LLaMA checkpoint whose first weight is `value`."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    def make(value: float) -> Path:
        folder = tmp_path_factory.mktemp("ckpt")
        config = transformers.LlamaConfig(
            vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        )  # fmt: skip
        torch.manual_seed(0)
        model = transformers.LlamaForCausalLM(config)
        with torch.no_grad():
            model.model.layers[0].self_attn.q_proj.weight[0, 0] = value
        model.save_pretrained(folder, safe_serialization=True)
        return folder

    return make


def test_non_finite_weights_are_named(capsys, checkpoint, tmp_path):
    folder = checkpoint(float("nan"))
    capsys.readouterr()  # the checkpoint writer's own progress output
    run = ("run", folder, "--target", "host-cpu", "--prompt", "4", "--gen", "2")
    refused(capsys, *run, match="weight 'layers.0.attn.q_proj' holds nan")
    compile_ = ("compile", folder, "--target", "host-cpu", "--prompt", "4", "--gen", "2")
    refused(capsys, *compile_, "-o", tmp_path / "out", match="layers.0.attn.q_proj")
    assert not (tmp_path / "out").exists()


def test_overflowing_weights_never_give_nan_output(capsys, checkpoint, tmp_path):
    folder = checkpoint(1e38)
    capsys.readouterr()
    code, out, err = cli(capsys, "run", folder, "--target", "host-cpu", "--prompt", "4",
                         "--gen", "2", "--json")  # fmt: skip
    if code == 0:
        record = json.loads(out, parse_constant=pytest.fail)
        assert all(np.isfinite(v) for v in record.values() if isinstance(v, float))
    else:
        assert code == 2 and "not finite" in err and "Traceback" not in err
    out_dir = tmp_path / "out"
    code, _, err = cli(capsys, "compile", folder, "--target", "host-cpu", "--quant", "int8",
                       "--prompt", "4", "--gen", "2", "-o", out_dir)  # fmt: skip
    if code == 0:
        json.loads((out_dir / "report.json").read_text(), parse_constant=pytest.fail)
    else:
        assert code == 2 and "Traceback" not in err


def test_hardware_values_out_of_physical_range(capsys, tmp_path):
    slow = variant(tmp_path, "u280", {"clock_hz": 1e-300})
    refused(capsys, "estimate", "tiny-llama", "--target", slow, match="clock_hz")
    many = variant(tmp_path, "u280", {"cores": 10**6}, "many.yaml")
    refused(capsys, "estimate", "llama2-7b", "--target", many, match="many.yaml")
    huge = variant(tmp_path, "u280", {"core.dsp_chains": 10**20}, "huge.yaml")
    refused(capsys, "estimate", "llama2-7b", "--target", huge, match="core.dsp_chains")
    cores = variant(tmp_path, "u280", {"cores": 40, "dsp_count": 10**6}, "cores.yaml")
    refused(capsys, "estimate", "tiny-llama", "--target", cores, match="'hbm.channels'")


def test_json_output_is_strict(capsys):
    code, out, _ = cli(capsys, "estimate", "tiny-llama", "--target", "u280", "--prompt", "8",
                       "--gen", "2", "--json")  # fmt: skip
    assert code == 0 and json.loads(out, parse_constant=pytest.fail)["decode_tokens_per_s"] > 0


# ----------------------------------------------------------------------------- recipes


HOSTILE_RECIPES = [
    ("  - pass: quantize_int4\n    options: {group_size: channel}\n"
     "  - pass: sparsify_nm\n    options: {n: 2, m: 4}\n", "already quantized"),
    ("  - pass: sparsify_nm\n    options: {n: 2, m: 4}\n"
     "  - pass: sparsify_unstructured\n    options: {sparsity: 0.5}\n", "already sparse"),
    ("  - pass: sparsify_nm\n    options: {n: 2.5, m: 4}\n", "option 'n' must be an integer"),
    ("  - pass: sparsify_nm\n    options: {m: 4}\n", "option 'n' is required"),
    ("  - pass: quantize_activations\n  - pass: quantize_activations\n", "already quantized"),
    ("  - pass: sparsify_nm\n    pass: quantize_int8\n", "duplicate key 'pass'"),
    ("  - pass: quantize_int4\n    options: {symmetric: 1}\n", "true or false"),
]  # fmt: skip


@pytest.mark.parametrize(("steps", "message"), HOSTILE_RECIPES)
@pytest.mark.parametrize("model", ["tiny-llama", "llama2-7b"])  # with and without weights
def test_a_recipe_is_refused_the_same_with_and_without_weights(
    capsys, tmp_path, steps, message, model
):
    path = recipe_file(tmp_path, steps)
    refused(capsys, "estimate", model, "--target", "a100", "--recipe", path, "--prompt", "8",
            "--gen", "2", match=message)  # fmt: skip


@pytest.mark.parametrize(
    "steps",
    [
        [{"pass": "sparsify_nm", "options": {"n": 2, "m": 4}}, {"pass": "quantize_int4",
         "options": {"group_size": "channel"}}],
        [{"pass": "sparsify_flightllm", "options": {"density": 0.5}},
         {"pass": "quantize_int4", "options": {"group_size": "channel", "symmetric": True}}],
        [{"pass": "sparsify_block", "options": {"block": [4, 1], "sparsity": 0.5}},
         {"pass": "quantize_int8"}, {"pass": "quantize_activations"}],
        [{"pass": "sparsify_unstructured", "options": {"sparsity": 0.7}}],
    ],
)  # fmt: skip
def test_a_recipe_gives_the_same_storage_with_and_without_weights(steps):
    recipe = recipe_from_dict({"passes": steps}, "test")
    graph = load_model("tiny-llama", "prefill", 1, 8)
    with_values, types_only = recipe.apply(graph), recipe.apply(shape_only(graph))
    for a, b in zip(with_values.nodes, types_only.nodes, strict=True):
        assert (a.name, a.type.dtype, a.type.quant) == (b.name, b.type.dtype, b.type.quant)
        if a.type.sparse is not None:
            assert (a.type.sparse.pattern, a.type.sparse.n) == (
                b.type.sparse.pattern,
                b.type.sparse.n,
            )
            assert abs(a.type.sparse.density - b.type.sparse.density) < 0.05


# ----------------------------------------------------------------------------- requests


def test_fpga_batch_is_refused_not_ignored(capsys):
    refused(capsys, "estimate", "llama2-7b", "--target", "u280", "--batch", "4",
            match="--batch 4")  # fmt: skip


def test_requests_beyond_the_model_and_the_device(capsys, tmp_path):
    refused(capsys, "estimate", "tiny-llama", "--target", "a100", "--prompt", "200", "--gen",
            "100", match="--prompt 200 + --gen 100")  # fmt: skip
    refused(capsys, "run", "tiny-llama", "--target", "host-cpu", "--prompt", "250", "--gen",
            "10", match="max_position_embeddings")  # fmt: skip
    tiny_gpu = variant(tmp_path, "a100", {"memory.capacity_bytes": 1000})
    refused(capsys, "compile", "llama2-7b", "--target", tiny_gpu, "-o", tmp_path / "o",
            match="memory.capacity_bytes")  # fmt: skip
    refused(capsys, "run", "llama2-7b", "--target", "host-cpu", match="GB of memory")
    dense_only = variant(tmp_path, "u280", {"core.nm_supported_n": [16]}, "dense.yaml")
    refused(capsys, "estimate", "llama2-7b", "--target", dense_only, "--prompt", "8", "--gen",
            "2", match="nm_supported_n")  # fmt: skip


def test_run_without_generated_tokens_reports_no_decode_rate(capsys):
    code, out, _ = cli(capsys, "run", "tiny-llama", "--target", "host-cpu", "--prompt", "8",
                       "--gen", "0", "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["tokens_per_s"] is None


def test_huge_model_configs_are_bounded(capsys, tmp_path):
    base = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 172, "vocab_size": 256,
            "max_position_embeddings": 256}  # fmt: skip
    for field, value in (("num_hidden_layers", 10**6), ("hidden_size", 2**30)):
        path = tmp_path / f"{field}.json"
        path.write_text(json.dumps({**base, field: value}))
        start = time.perf_counter()
        refused(capsys, "estimate", path, "--target", "a100", match=field.split("_")[-1])
        assert time.perf_counter() - start < 10


def test_a_compiled_folder_reads_back(capsys, tmp_path):
    out = tmp_path / "out"
    assert cli(capsys, "compile", "tiny-llama", "--target", "host-cpu", "-o", out)[0] == 0
    code, text, _ = cli(capsys, "show", out / "graph", "--json")
    assert code == 0 and json.loads(text)["params"] > 0
    code, text, _ = cli(capsys, "estimate", out, "--target", "a100", "--json")
    assert code == 0 and json.loads(text)["decode_tokens_per_s"] > 0
    fixed = tmp_path / "fixed.graph"  # a prefill graph written for 16 prompt tokens
    fixed.write_text(
        f"{load_model('tiny-llama', 'prefill', 1, 16)}\n{load_model('tiny-llama', 'decode')}\n"
    )
    refused(capsys, "estimate", fixed, "--target", "a100", "--prompt", "8", match="--prompt 16")


# ----------------------------------------------------------------------------- interrupts


def _interrupt(args: list[str], after_s: float, cwd: Path) -> tuple[int, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sparseflow", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT.parent)},
    )
    time.sleep(after_s)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


@pytest.mark.parametrize("after_s", [0.3, 1.0, 3.0])
def test_an_interrupt_prints_one_line_and_leaves_no_partial_folder(tmp_path, after_s):
    args = ["compile", "llama2-7b", "--target", "u280", "-o", str(tmp_path / "out")]
    code, err = _interrupt(args, after_s, tmp_path)
    if code == 0:
        pytest.skip("the compile finished before the interrupt")
    assert code == 130 and err.strip() == "sparseflow: interrupted", err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_gpu_run_without_a_gpu_is_short_and_says_so():
    from sparseflow.backends.gpu import using_simulator

    if not using_simulator():
        pytest.skip("a GPU is present: the full request runs there")
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "sparseflow", "run", "tiny-llama", "--target", "a100",
         "--sparsity", "2:4", "--quant", "int8", "--json"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT.parent)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "CUDA simulator" in result.stderr and time.perf_counter() - start < 300
    record = json.loads(result.stdout)
    assert record["program"]["cuda_simulator"] is True
    assert record["logits_rel_error_vs_reference"] < 1e-3
