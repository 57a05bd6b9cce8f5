"""Time, bytes and energy of the collectives and transfers between devices (link model).

Ring algorithms over p devices (NCCL's ring all-reduce; DFX passes partial vectors around
its ring of cards the same way), with the link of the hardware model (`LinkSpec`): each
device sends B = ports x port bandwidth x efficiency bytes per second, and every step pays
the link latency a:
    all-reduce of n bytes:     2 (p - 1) steps, each device sends 2 (p - 1) / p x n bytes
                               time = 2 (p - 1) a + 2 (p - 1) / p x n / B
    all-gather to n bytes:     (p - 1) steps, each device sends (p - 1) / p x n bytes
    send of n bytes to the next pipeline stage: one step, time = a + n / B
The topology (switch or ring of cables) does not change these: in both, each device streams
its chunks to its ring neighbour over all its ports. A collective also starts like a kernel
(the device's launch overhead, on GPUs and CPUs). Link energy is the bytes every device
sends x `pj_per_byte`. Collectives do not overlap the kernels around them (tensor-parallel
inference waits for each sum before the next layer).
"""

from __future__ import annotations

from dataclasses import dataclass

from sparseflow.hw_models.schema import LinkSpec
from sparseflow.ir.dtypes import DType
from sparseflow.ir.graph import Graph
from sparseflow.ir.ops import Op, OpClass


@dataclass(frozen=True)
class CollectiveWork:
    """One collective of a device graph: its op, message bytes (the full result on each
    device) and group size."""

    name: str
    op: Op
    message_bytes: float
    devices: int

    def bytes_sent(self) -> float:
        """Return the bytes each device puts on its links."""
        share = (self.devices - 1) / self.devices
        return (2 if self.op is Op.ALL_REDUCE else 1) * share * self.message_bytes

    def steps(self) -> int:
        """Return the ring steps, each paying the link latency once."""
        return (2 if self.op is Op.ALL_REDUCE else 1) * (self.devices - 1)

    def time_s(self, link: LinkSpec, launch_s: float = 0.0) -> float:
        """Return the collective's time on `link` (module doc)."""
        latency_s = self.steps() * link.latency_s
        return launch_s + latency_s + self.bytes_sent() / link.bandwidth_bytes_per_s


def collective_works(graph: Graph, bindings: dict[str, int], dtype: DType) -> list[CollectiveWork]:
    """Return the collectives of a device graph with their messages held in `dtype`."""
    works = []
    for node in graph.nodes:
        if node.op.op_class is OpClass.COMMUNICATION:
            nbytes = node.type.numel(bindings) * dtype.bits / 8
            works.append(CollectiveWork(node.name, node.op, nbytes, int(node.attr("devices"))))
    return works


def send_time_s(link: LinkSpec, nbytes: float) -> float:
    """Return the time to send `nbytes` to the next pipeline stage."""
    return link.latency_s + nbytes / link.bandwidth_bytes_per_s


def link_energy_j(link: LinkSpec, nbytes: float) -> float:
    """Return the energy of `nbytes` crossing a link."""
    return nbytes * link.pj_per_byte * 1e-12
