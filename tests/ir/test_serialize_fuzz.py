"""Fuzz the graph text parser with mutated printed graphs: it returns a verified Graph or
raises InputError with a one-line message, never anything else."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.models import BUILTINS, build_graph
from sparseflow.ir.serialize import parse_graph

PRINTED = str(build_graph(BUILTINS["tiny-llama"].replace(num_layers=1), "decode"))
LINES = PRINTED.splitlines()
TOKENS = ["%", ":", "=", "(", ")", "{", "}", "[", "]", ",", "#", '"', "f32", "i4", "L", "-1",
          "nm=2:4", "q=int4:group:g0", "linear", "reshape", "1e999", "\\", "\n", " ",
          "Infinity", "NaN", "[" * 3000, "(" * 300, "1+" * 3000]  # fmt: skip


def parse_or_input_error(text: str) -> None:
    try:
        graph = parse_graph(text, source="fuzz.graph")
    except InputError as err:
        assert str(err).startswith("fuzz.graph") and "\n" not in str(err)
    else:
        assert isinstance(graph, Graph)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(PRINTED)), st.integers(0, 6),
                          st.sampled_from(TOKENS) | st.text(max_size=4)), max_size=4))  # fmt: skip
def test_fuzz_character_edits(edits):
    text = PRINTED
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut :]
    parse_or_input_error(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(LINES) - 1), st.integers(0, len(LINES) - 1)),
                max_size=3), st.sets(st.integers(0, len(LINES) - 1), max_size=3))  # fmt: skip
def test_fuzz_line_swaps_and_deletions(swaps, deleted):
    lines = list(LINES)
    for a, b in swaps:
        lines[a], lines[b] = lines[b], lines[a]
    parse_or_input_error("\n".join(line for i, line in enumerate(lines) if i not in deleted))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text(text):
    parse_or_input_error(text)


NODE = "graph g {{}} {{\n %x : f32[2,3] = input()\n %y : f32[2,3] = {}\n return %y\n}}"
REGRESSIONS = [
    NODE.format('softmax(%x) {"axis": Infinity}'),  # int(inf) in type inference
    NODE.format('repeat_kv(%x) {"n_rep": 1e999}'),
    NODE.format('softmax(%x) {"a": ' + "[" * 5000 + "]" * 5000 + "}"),  # JSON nesting
    'graph g {"a": ' + "[" * 5000 + "]" * 5000 + "} {\n return %x\n}",
    NODE.format("input()").replace("f32[2,3] = input", "f32[2," + "1+" * 50000 + "1] = input"),
]


def test_regressions_found_by_fuzzing():
    for text in REGRESSIONS:
        parse_or_input_error(text)


def test_unmodified_text_parses():
    assert str(parse_graph(PRINTED)) == PRINTED
