"""How many tokens each expert receives: the bindings of the routed dimensions `R{e}`.

The rows an expert gets (`ops_moe`) are known only when the router runs on real tokens.
Costs without data use this routing model: every token picks its k experts uniformly at
random, independently of the other tokens (Mixtral's authors find no topic structure in the
assignments, Jiang et al. 2024, "Mixtral of Experts", section 5). A batch of n tokens then
touches E (1 - (1 - k/E)^n) distinct experts on average, at least k (one token's own choice)
and at most min(E, n k); that expectation, rounded to a whole expert, gets the n k routed
rows spread as evenly as they go, and the other experts get none. So FLOPs count exactly k
experts per token, and weight traffic counts the experts the batch is expected to touch:
k for one decoded token, all E for a long prompt.
"""

from __future__ import annotations

from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.ops import Op
from sparseflow.ir.ops_moe import routed_dim


def experts_touched(experts: int, k: int, tokens: int) -> int:
    """Return the expected number of distinct experts `tokens` tokens reach, rounded."""
    expected = experts * (1 - (1 - k / experts) ** tokens)
    return max(k, min(experts, tokens * k, round(expected)))


def routed_tokens(experts: int, k: int, tokens: int) -> list[int]:
    """Return the rows each expert receives under the routing model of this module."""
    touched = experts_touched(experts, k, tokens)
    base, extra = divmod(tokens * k, touched)
    return [base + (e < extra) if e < touched else 0 for e in range(experts)]


def routing_bindings(graph: Graph, bindings: dict[str, int]) -> dict[str, int]:
    """Return `bindings` plus each routed dimension `R{e}` of the graph's experts.

    Every top-k gate of the graph must route over the same experts with the same k (the
    layers of one model do); the token count is that of the gates under `bindings`.
    """
    gates = graph.nodes_of(Op.TOPK_GATE)
    if not gates:
        return bindings
    shapes = {(int(g.type.shape[-1]), int(g.attr("k"))) for g in gates}
    if len(shapes) > 1:
        raise InputError(f"graph {graph.name!r} routes over differing experts: {sorted(shapes)}")
    ((experts, k),) = shapes
    tokens = gates[0].type.numel(bindings) // experts
    rows = routed_tokens(experts, k, tokens)
    return {**bindings, **{routed_dim(e): n for e, n in enumerate(rows)}}
