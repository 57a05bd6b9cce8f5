"""The graph IR: types, ops, graphs, the reference interpreter, model builders and importers.

- `types`, `dtypes`, `dims`: tensor types (shape with symbolic dims, dtype incl. int4/fp4,
  sparse format, quantization) and their printed form.
- `ops` (+ `ops_tensor`, `ops_math`, `ops_linear`): the op registry. `Op` names every op;
  `OpClass` groups them for reports; each op has type inference, cost and a numpy reference.
  `storage_bytes` / `weight_storage_bytes` are the one count of a tensor's stored bytes.
- `node`, `graph`, `serialize`: immutable nodes, graphs, the text format (round-trips).
- `formats`, `weights`: packed compressed weight storage and the weight table.
- `interpreter`: the reference: runs any graph with the ops' references.
- `stats`: parameter, byte and FLOP counts; `models/`: configs, builders and importers.

Imports: numpy, networkx and the standard library only; nothing else of sparseflow.
"""
