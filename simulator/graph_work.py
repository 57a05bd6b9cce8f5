"""Turn a graph's nodes into analytical kernel works (GPU and CPU targets).

Every node with work is a kernel (views such as reshape and repeat_kv cost nothing and are
skipped; collectives between devices are timed by `simulator.collectives`). Numbers come
from the op registry's cost functions at the given symbol bindings:
FLOPs, bytes per input and bytes written. Inputs are split into weights (their types, which
the kernel reads as deployed: `weight_storage_bytes`, the count the report's weight bytes sum
too; an embedding reads only its ids' rows of the table), KV-cache bytes (cache values, read
through kv_append and repeat_kv) and activation bytes.
Float tensors run, and cross memory, at `float_dtype` (fp16 on GPUs, fp32 on CPUs), whatever
the graph's own float type; a linear whose input is quantized runs on the int8 path, or
on the int4 path when input and weights are both 4-bit.

With `fuse` (GPU targets: the serving frameworks the GPU models are calibrated against,
TensorRT-LLM, vLLM, LMDeploy, run fused kernels) nodes are grouped into kernels the way
those frameworks run them:
- attention: scores = q @ k^T -> scale / causal mask -> softmax -> probs @ v is one kernel
  (FlashAttention, Dao et al., NeurIPS 2022) whose bytes are only what enters and leaves
  the chain, never the score matrix;
- epilogues: an element-wise or data-movement op (and a KV-cache append) joins the kernel
  that produces its input when that value has no other reader: bias, activation, gating,
  RoPE, head transposes, residual adds and cache writes ride on the GEMM, norm or attention
  before them.
A group's FLOPs are its nodes'; it reads what enters it from outside and writes the values
read outside it (and graph outputs). It is named after its first node.
"""

from __future__ import annotations

from dataclasses import replace

from sparseflow.ir.dims import eval_dim
from sparseflow.ir.dtypes import DType
from sparseflow.ir.graph import Graph
from sparseflow.ir.node import Node
from sparseflow.ir.ops import Op, OpClass
from sparseflow.ir.routing import routing_bindings
from sparseflow.ir.types import TensorType
from sparseflow.simulator.analytical import KernelWork

VIEW_OPS = (Op.RESHAPE, Op.REPEAT_KV)  # their registered cost is free: nothing materialises
SCORE_OPS = (Op.SCALE, Op.CAUSAL_MASK, Op.SLIDING_WINDOW_MASK)  # between q @ k^T and softmax
EPILOGUE_CLASSES = (OpClass.ELEMENTWISE, OpClass.DATA)


def kv_values(graph: Graph) -> set[str]:
    """Return the values that hold the KV cache (kv_append results and their GQA views)."""
    kv: set[str] = set()
    for node in graph.nodes:
        if node.op is Op.KV_APPEND or (node.op is Op.REPEAT_KV and node.inputs[0] in kv):
            kv.add(node.name)
    return kv


def attention_chains(graph: Graph) -> list[tuple[Node, ...]]:
    """Return each attention chain: scores matmul, scale / mask ops, softmax, context matmul.

    A chain qualifies when every value inside it has exactly one reader (the next node).
    """
    users = graph.users()
    readers: dict[str, list[Node]] = {}
    for node in graph.nodes:
        for name in node.inputs:
            readers.setdefault(name, []).append(node)
    chains = []
    for softmax in graph.nodes_of(Op.SOFTMAX):
        chain = [softmax]
        while (head := graph.node(chain[0].inputs[0])).op in SCORE_OPS and users[head.name] == 1:
            chain.insert(0, head)
        after = readers.get(softmax.name, [])
        single = users[head.name] == 1 and users[softmax.name] == 1 and len(after) == 1
        if head.op is Op.MATMUL and single and after[0].op is Op.MATMUL:
            chains.append((head, *chain, after[0]))
    return chains


def kernel_groups(graph: Graph, fuse: bool) -> list[tuple[Node, ...]]:
    """Return the nodes each kernel runs, in graph order: one node each, or fused groups."""
    group_of: dict[str, list[Node]] = {}
    groups: list[list[Node]] = []
    for chain in attention_chains(graph) if fuse else []:
        groups.append(list(chain))
        group_of.update({n.name: groups[-1] for n in chain})
    users = graph.users()
    for node in graph.nodes:
        if node.op.is_source or node.op in VIEW_OPS or node.name in group_of:
            continue
        if node.op.op_class is OpClass.COMMUNICATION:  # timed by the link model
            continue
        producers = [_sole_producer(graph, users, name) for name in node.inputs]
        joinable = [group_of[p] for p in producers if p in group_of]
        epilogue = node.op.op_class in EPILOGUE_CLASSES or node.op is Op.KV_APPEND
        if fuse and epilogue and joinable:
            joinable[0].append(node)
            group_of[node.name] = joinable[0]
        else:
            groups.append([node])
            group_of[node.name] = groups[-1]
    position = {n.name: i for i, n in enumerate(graph.nodes)}
    return sorted((tuple(g) for g in groups), key=lambda g: position[g[0].name])


def _sole_producer(graph: Graph, users: dict[str, int], name: str) -> str | None:
    """Return the node computing `name` through views if every value on the way has one reader."""
    while graph.node(name).op in VIEW_OPS and users[name] == 1:
        name = graph.node(name).inputs[0]
    node = graph.node(name)
    return None if node.op.is_source or node.op in VIEW_OPS or users[name] != 1 else name


def graph_works(
    graph: Graph,
    bindings: dict[str, int],
    float_dtype: DType,
    fuse: bool = False,
) -> list[KernelWork]:
    """Return one KernelWork per kernel of `graph` that does work (`kernel_groups`).

    Routed experts get the rows `sparseflow.ir.routing` assigns them; an expert no token
    reaches does no work, so its kernels (and weight reads) drop out.
    """
    bindings = routing_bindings(graph, bindings)
    kv = kv_values(graph)
    users = graph.users()
    works = []
    for group in kernel_groups(graph, fuse):
        work = _kernel(graph, group, users, kv, bindings, float_dtype)
        if work.flops or work.activation_bytes_read or work.kv_bytes_read or work.bytes_written:
            works.append(work)
    return works


def _kernel(
    graph: Graph,
    group: tuple[Node, ...],
    users: dict[str, int],
    kv: set[str],
    bindings: dict[str, int],
    float_dtype: DType,
) -> KernelWork:
    """Return the work of the nodes of one kernel (usually a single node)."""
    members = {n.name for n in group}
    flops = kv_bytes = activation_bytes = written = 0.0
    weights = []
    for node in group:
        ins = [graph.node(i).type for i in node.inputs]
        cost = node.op.cost(ins, node.type, node.attr_dict, bindings)
        flops += cost.flops
        inner_readers = sum(1 for n in group for i in n.inputs if _origin(graph, i) == node.name)
        if users[node.name] > inner_readers:
            written += _deployed(cost.bytes_written, node.type, float_dtype)
        for name, tensor_type, read in zip(node.inputs, ins, cost.bytes_read, strict=True):
            if _origin(graph, name) in members:
                continue
            if graph.node(name).op is Op.WEIGHT:
                weights.append(tensor_type)
            elif name in kv:
                kv_bytes += _deployed(read, tensor_type, float_dtype)
            else:
                activation_bytes += _deployed(read, tensor_type, float_dtype)
    head = group[0]
    first_input = graph.node(head.inputs[0]).type if head.inputs else None
    quant = first_input.quant if first_input is not None else None
    input_bits = quant.bits if quant is not None else None
    int4 = input_bits == 4 and weights and all(w.quant and w.quant.bits == 4 for w in weights)
    work = KernelWork(
        name=head.name,
        # Data movement runs as an element-wise kernel on GPUs and CPUs.
        op_class=OpClass.ELEMENTWISE if head.op.op_class is OpClass.DATA else head.op.op_class,
        flops=flops,
        activation_bytes_read=activation_bytes,
        bytes_written=written,
        kv_bytes_read=kv_bytes,
        dtype=DType.I4 if int4 else DType.I8 if input_bits in (4, 8) else float_dtype,
        weights=tuple(weights),
        # A lookup reads only the rows of its ids, a linear its whole weight.
        weight_fraction=_rows_read(head, [graph.node(i).type for i in head.inputs], bindings),
    )
    return replace(work, flops=flops / work.density)


def _deployed(nbytes: float, tensor_type: TensorType, float_dtype: DType) -> float:
    """Return the bytes of a float activation or cache value held at `float_dtype` instead."""
    if not tensor_type.dtype.is_float or tensor_type.quant is not None:
        return nbytes
    return nbytes * float_dtype.bits / tensor_type.dtype.bits


def _origin(graph: Graph, name: str) -> str:
    """Return the node whose result `name` is, looking through views."""
    while graph.node(name).op in VIEW_OPS:
        name = graph.node(name).inputs[0]
    return name


def _rows_read(node: Node, ins: list[TensorType], bindings: dict[str, int]) -> float:
    """Return the fraction of its weight a node reads: an embedding's looked-up rows."""
    if node.op is not Op.EMBEDDING:
        return 1.0
    ids, table = ins
    return min(1.0, ids.numel(bindings) / eval_dim(table.shape[0], bindings))
