"""Graph building, verification, printing, the text round-trip and the interpreter."""

import numpy as np
import pytest

from sparseflow.ir.dims import add_dims, eval_dim, parse_dim
from sparseflow.ir.dtypes import DType
from sparseflow.ir.errors import GraphError, InputError
from sparseflow.ir.graph import Graph, GraphBuilder
from sparseflow.ir.interpreter import run_reference
from sparseflow.ir.node import Node
from sparseflow.ir.ops import Op
from sparseflow.ir.serialize import parse_graph
from sparseflow.ir.types import (
    QuantParams,
    QuantScheme,
    SparseFormat,
    SparsePattern,
    TensorType,
    parse_type,
)

F32 = DType.F32


def small_attention_graph(seed=0):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("attn", {"family": "test"})
    x = b.input("x", TensorType((1, "T", 8), F32))
    b.input("pos", TensorType(("T",), DType.I64))
    past = b.input("past", TensorType((1, 1, "L", 8), F32))
    w = b.weight("w.q", TensorType((8, 8), F32), "linear", rng.standard_normal((8, 8)))
    q = b.add(Op.LINEAR, [x, w], name="q")
    q4 = b.add(Op.TRANSPOSE, [b.add(Op.RESHAPE, [q], shape=[1, "T", 1, 8])], perm=[0, 2, 1, 3])
    k = b.add(Op.KV_APPEND, [past, q4], name="k")
    s = b.add(Op.MATMUL, [q4, k], transpose_b=True)
    p = b.add(Op.SOFTMAX, [b.add(Op.SCALE, [s], factor=0.5)])
    return b.build([p, k])


GOLDEN = """graph attn {"family": "test"} {
  %x : f32[1,T,8] = input()  # users=1
  %pos : i64[T] = input()  # users=0
  %past : f32[1,1,L,8] = input()  # users=1
  %w.q : f32[8,8] = weight() {"role": "linear"}  # users=1
  %q : f32[1,T,8] = linear(%x, %w.q)  # users=1
  %reshape : f32[1,T,1,8] = reshape(%q) {"shape": [1, "T", 1, 8]}  # users=1
  %transpose : f32[1,1,T,8] = transpose(%reshape) {"perm": [0, 2, 1, 3]}  # users=2
  %k : f32[1,1,L+T,8] = kv_append(%past, %transpose)  # users=2
  %matmul : f32[1,1,T,L+T] = matmul(%transpose, %k) {"transpose_b": true}  # users=1
  %scale : f32[1,1,T,L+T] = scale(%matmul) {"factor": 0.5}  # users=1
  %softmax : f32[1,1,T,L+T] = softmax(%scale)  # users=1
  return %softmax, %k
}"""


def test_printed_graph_is_golden_and_round_trips():
    graph = small_attention_graph()
    assert str(graph) == GOLDEN
    again = parse_graph(str(graph))
    assert again.nodes == graph.nodes and again.outputs == graph.outputs
    assert str(again) == GOLDEN


def test_interpreter_binds_symbolic_lengths():
    graph = small_attention_graph()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 3, 8)).astype(np.float32)
    past = rng.standard_normal((1, 1, 5, 8)).astype(np.float32)
    out = run_reference(graph, {"x": x, "pos": np.arange(5, 8), "past": past})
    w = graph.weights.dense("w.q")
    q = x[0] @ w.T
    keys = np.concatenate([past[0, 0], q])
    scores = q @ keys.T * 0.5
    expect = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    np.testing.assert_allclose(out["softmax"][0, 0], expect, rtol=1e-5)
    assert out["k"].shape == (1, 1, 8, 8)


def test_interpreter_rejects_wrong_input_shapes():
    graph = small_attention_graph()
    x = np.zeros((1, 3, 8), np.float32)
    with pytest.raises(InputError, match="%past"):
        run_reference(graph, {"x": x, "pos": np.arange(3), "past": np.zeros((1, 1, 5, 7))})
    with pytest.raises(InputError, match="needs input %pos"):
        run_reference(graph, {"x": x, "past": np.zeros((1, 1, 5, 8))})


def test_verify_names_the_broken_node():
    graph = small_attention_graph()
    nodes = list(graph.nodes)
    q = graph.node("q")
    nodes[nodes.index(q)] = Node("q", q.op, q.inputs, TensorType((1, "T", 9), F32))
    with pytest.raises(GraphError, match="node %q: type"):
        graph.with_nodes(nodes).verify()
    with pytest.raises(GraphError, match="defined twice"):
        graph.with_nodes([*graph.nodes, graph.nodes[0]]).verify()
    with pytest.raises(GraphError, match="reads %x, not defined"):
        graph.with_nodes(graph.nodes[1:]).verify()
    with pytest.raises(GraphError, match="output %nope"):
        Graph("g", graph.nodes, ("nope",)).verify()


def test_networkx_view_has_dataflow_edges():
    dag = small_attention_graph().to_networkx()
    assert dag.has_edge("q", "reshape") and dag.nodes["k"]["op"] == "kv_append"
    assert len(dag) == len(small_attention_graph().nodes)


@pytest.mark.parametrize(
    "text",
    [
        "f32[1,L+1,64]",
        "i4[4096,4096] nm=2:4 q=int4:group:g128:asym",
        "f32[64,64] block=4x1@0.1 q=int8:channel",
        "i8[16,16] nmblock=16x16:16@0.375 q=olive4:channel",
        "f32[8,8] unstructured@0.25 q=fp4:channel",
        "i8[3,3] q=llm.int8:channel",
    ],
)
def test_types_round_trip(text):
    assert str(parse_type(text)) == text


@pytest.mark.parametrize(
    "text", ["f32", "f99[3]", "f32[3] nm=5:4", "f32[3] q=int4:group", "f32[x y]", "f32[3] zz=1"]
)
def test_bad_types_raise_input_error(text):
    with pytest.raises(InputError):
        parse_type(text)


def test_dims():
    assert eval_dim(parse_dim("L+1"), {"L": 7}) == 8
    assert add_dims(3, 4) == 7 and add_dims("L", 0) == "L"
    with pytest.raises(InputError, match="symbol 'L'"):
        eval_dim("L+1", {})
    with pytest.raises(InputError):
        parse_dim("__import__('os')")


def test_sparse_and_quant_params_validate():
    with pytest.raises(InputError, match="N:M"):
        SparseFormat(SparsePattern.NM, 0.5, n=5, m=4)
    with pytest.raises(InputError, match="group size"):
        QuantParams(QuantScheme.INT, 4, "group", 0)


def test_parse_errors_name_the_source():
    bad = GOLDEN.replace("= linear(", "= linear_x(")
    with pytest.raises(InputError, match="model.graph: unknown op 'linear_x'"):
        parse_graph(bad, source="model.graph")
    with pytest.raises(InputError, match="model.graph: .*%q"):
        parse_graph(GOLDEN.replace("%q : f32[1,T,8]", "%q : f32[1,T,9]"), source="model.graph")


def test_sources_are_not_computed():
    with pytest.raises(Exception, match="source"):
        Op.INPUT.reference([], {})
