"""The routing model: k experts per token exactly, the expected union of experts per batch."""

import pytest

from sparseflow.ir.models import BUILTINS, build_graph
from sparseflow.ir.routing import experts_touched, routed_tokens, routing_bindings


@pytest.mark.parametrize("experts, k", [(8, 2), (64, 6), (4, 1), (3, 3)])
@pytest.mark.parametrize("tokens", [1, 2, 5, 64, 4096])
def test_routed_rows_are_k_per_token_over_the_touched_experts(experts, k, tokens):
    rows = routed_tokens(experts, k, tokens)
    touched = sum(1 for r in rows if r)
    assert sum(rows) == tokens * k and len(rows) == experts
    assert touched == experts_touched(experts, k, tokens)
    assert k <= touched <= min(experts, tokens * k)
    assert max(rows) - min(r for r in rows if r) <= 1  # spread evenly over the touched
    assert max(rows) <= tokens  # an expert takes a token at most once


def test_one_token_touches_k_experts_a_long_prompt_all():
    assert routed_tokens(8, 2, 1) == [1, 1, 0, 0, 0, 0, 0, 0]
    assert experts_touched(8, 2, 128) == 8
    # two tokens: 8 (1 - (6/8)^2) = 3.5 experts expected, between k = 2 and n k = 4
    assert experts_touched(8, 2, 2) in (3, 4)
    counts = [experts_touched(64, 6, n) for n in range(1, 40)]
    assert counts == sorted(counts)


def test_bindings_cover_every_routed_dimension():
    config = BUILTINS["tiny-llama"].replace(num_experts=4, experts_per_token=2)
    graph = build_graph(config, "prefill", batch=3, seq="T")
    bindings = routing_bindings(graph, {"T": 5})
    assert sum(bindings[f"R{e}"] for e in range(4)) == 3 * 5 * 2
    dense = build_graph(BUILTINS["tiny-llama"], "prefill", batch=1, seq=4)
    assert routing_bindings(dense, {"T": 4}) == {"T": 4}
