"""Graph runners that execute a compiled program's bytes on the instruction-set simulator.

`device_runners` returns the (prefill, decode) pair `sparseflow run` drives: both share one
`Device` (HBM image and machine), so the KV cache the prefill program stores is what the
decode programs read. A call runs its length bucket's program once on every core: prefill
pads the prompt to the bucket (token 0 at the padded positions, whose logits the host
drops), a decode step runs the bucket of its KV length moved to its position
(`host.relocate`). Every program is decoded from the bytes `compile` writes
(`Stream.to_bytes`), or from a DIR/program file (`streams_from_file`, `split_program`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.iss.host import (
    build_image,
    read_logits,
    relocate,
    write_embeddings,
)
from sparseflow.backends.fpga.iss.machine import UNITS, Machine, Probe
from sparseflow.backends.fpga.program import Bucket, Program
from sparseflow.ir.errors import InputError
from sparseflow.ir.graph import Graph
from sparseflow.ir.ops import Op


def split_program(data: bytes, program: Program) -> dict[tuple[str, int], list[bytes]]:
    """Return {bucket key: per-core bytes} of DIR/program (every bucket's streams back to
    back, in the program's order)."""
    out, offset = {}, 0
    for bucket in program.buckets:
        out[bucket.key] = []
        for stream in bucket.streams:
            out[bucket.key].append(data[offset : offset + stream.nbytes])
            offset += stream.nbytes
    if offset != len(data):
        raise InputError(f"program: {len(data)} bytes, the buckets hold {offset}")
    return out


def streams_from_file(data: bytes, program: Program) -> dict[tuple[str, int], list]:
    """Return {bucket key: per-core instructions} decoded from DIR/program's bytes."""
    split = split_program(data, program).items()
    return {key: [isa.decode(part) for part in parts] for key, parts in split}


class Device:
    """One accelerator running `program`: its HBM image, machine and decoded programs
    (`probe`: see `machine.Machine`)."""

    def __init__(self, program: Program, graph: Graph, seed: int = 0,
                 programs: Mapping[tuple[str, int], list] | None = None,
                 probe: Probe | None = None) -> None:  # fmt: skip
        if str(program.meta.get("sfu_precision", "fp16")) != "fp16":
            raise InputError("the instruction-set simulator runs FP16 SFU words")
        self.program, self.graph, self.seed = program, graph, seed
        self.image = build_image(program, graph, program.cores * UNITS)
        self.machine = Machine(program, self.image, probe)
        self.programs = dict(programs or {})
        self.executed = 0
        self.runs = 0
        head = [n for n in graph.nodes_of(Op.LINEAR)][-1]
        self.output = program.layout.weight(head.inputs[1])

    def streams(self, bucket: Bucket) -> list[list[isa.Instruction]]:
        """Return the bucket's per-core instructions, decoded from its bytes once."""
        if bucket.key not in self.programs:
            self.programs[bucket.key] = [isa.decode(s.to_bytes()) for s in bucket.streams]
        return self.programs[bucket.key]

    def execute(self, streams: list[list[isa.Instruction]]) -> None:
        """Run one program on the machine, with this run's interleaving seed."""
        self.executed += self.machine.run(streams, self.seed + self.runs)
        self.runs += 1

    def prefill(self, graph: Graph, ids: np.ndarray) -> np.ndarray:
        """Run the prompt `ids` [1, P]; return the logits [1, P, vocab]."""
        prompt = ids.shape[1]
        bucket = self.program.bucket_for("prefill", prompt)
        padded = np.zeros((1, bucket.length), np.int64)
        padded[:, :prompt] = ids
        write_embeddings(self.image, graph, {"ids": padded, "pos": np.arange(bucket.length)})
        self.execute(self.streams(bucket))
        return read_logits(self.image, self.program, self.output, range(prompt))[None]

    def decode(self, graph: Graph, ids: np.ndarray, position: int) -> np.ndarray:
        """Run one decode step of token `ids` [1, 1] at `position`; return [1, 1, vocab]."""
        bucket = self.program.bucket_for("decode", position + 1)
        write_embeddings(self.image, graph, {"ids": ids, "pos": np.array([position])})
        moved = relocate(self.streams(bucket), self.image, position + 1 - bucket.length)
        self.execute(moved)
        return read_logits(self.image, self.program, self.output, range(1))[None]


class IssRunner:
    """Run `graph` (prefill or decode) on `device`: `run(inputs) -> {logits name: logits}`."""

    def __init__(self, device: Device, graph: Graph, phase: str) -> None:
        self.device, self.graph, self.phase = device, graph, phase
        self.head = graph.outputs[0]

    @property
    def instructions_executed(self) -> int:
        """Return the instructions the device has executed (all programs so far)."""
        return self.device.executed

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = np.asarray(inputs["ids"])
        if ids.shape[0] != 1:
            raise InputError(f"batch {ids.shape[0]}: the FPGA programs serve one sequence")
        if self.phase == "prefill":
            return {self.head: self.device.prefill(self.graph, ids)}
        position = int(np.asarray(inputs["pos"]).reshape(-1)[0])
        return {self.head: self.device.decode(self.graph, ids, position)}


def device_runners(
    program: Program, prefill: Graph, decode: Graph | None, seed: int = 0
) -> tuple[IssRunner, IssRunner | None]:
    """Return (prefill, decode) runners sharing one device (decode None for encoders)."""
    device = Device(program, prefill, seed)
    runner = IssRunner(device, prefill, "prefill")
    return runner, None if decode is None else IssRunner(device, decode, "decode")
