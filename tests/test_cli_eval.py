"""`sparseflow eval`: the report on a trained checkpoint, and one-line exit-2 errors that name
the file for bad model folders and bad text."""

from __future__ import annotations

import json
import shutil

import pytest

from sparseflow.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_report_of_the_trained_decoder(capsys, tiny_decoder_folder):
    argv = ["eval", str(tiny_decoder_folder), "--quant", "int8", "--max-tokens", "300"]
    code, out, _ = run(capsys, *argv, "--json")
    report = json.loads(out)
    assert code == 0 and report["recipe"] == "int8" and report["target"] == "reference"
    assert report["scored_tokens"] == 299 and report["text"] == "corpus:evaluation"
    assert {"perplexity", "perplexity_dense", "top1_agreement", "layer_errors"} <= set(report)
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "perplexity" in out and "top-1 agreement" in out


def test_text_file_and_encoder_report(capsys, minilm_folder, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(
        "The cat sat on the warm mat. A dog slept under the old table.\n\n"
        "Stock prices fell sharply this morning. Markets in Asia closed lower today.\n"
    )
    code, out, _ = run(capsys, "eval", str(minilm_folder), "--quant", "int8", "--text", str(text))
    assert code == 0 and "embedding cosine" in out and "sentences             4" in out


@pytest.fixture
def broken_folder(tiny_decoder_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_decoder_folder, folder)
    return folder


def text_file(tmp_path, content: bytes):
    path = tmp_path / "text.txt"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("no tokenizer", "no tokenizer.json"),
        ("foreign tokenizer", "tokenizer.json: token id 30521 is beyond"),
        ("empty text", "text.txt: empty"),
        ("latin-1 text", "text.txt: not UTF-8"),
        ("short text", "text.txt: 3 tokens, fewer than one window of 128"),
        ("missing text", "text.txt: cannot read"),
        ("built-in model", "eval needs a checkpoint folder"),
    ],
)
def test_bad_input_exits_2_naming_the_file(
    capsys, broken_folder, minilm_folder, tmp_path, case, message
):
    model, extra = str(broken_folder), []
    if case == "no tokenizer":
        (broken_folder / "tokenizer.json").unlink()
    elif case == "foreign tokenizer":
        shutil.copy(minilm_folder / "tokenizer.json", broken_folder / "tokenizer.json")
    elif case == "built-in model":
        model = "tiny-llama"
    elif case == "missing text":
        extra = ["--text", str(tmp_path / "text.txt")]
    else:
        content = {"empty text": b"", "latin-1 text": "caf\xe9".encode("latin-1"),
                   "short text": b"a b c"}[case]  # fmt: skip
        extra = ["--text", str(text_file(tmp_path, content))]
    code, _, err = run(capsys, "eval", model, "--quant", "int8", *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_encoder_text_without_two_sentences_exits_2(capsys, minilm_folder, tmp_path):
    path = text_file(tmp_path, b"Only one sentence is in this file.")
    code, _, err = run(capsys, "eval", str(minilm_folder), "--text", str(path))
    assert code == 2 and "text.txt: 1 sentences, need at least 2" in err


def test_explicit_group_that_cannot_apply_exits_2(capsys, tiny_decoder_folder):
    code, _, err = run(capsys, "eval", str(tiny_decoder_folder), "--quant", "int4:g256")
    assert code == 2 and "group_size' 256 does not divide K = 128" in err
