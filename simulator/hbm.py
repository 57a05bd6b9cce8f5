"""HBM pseudo-channels shared by every core's load and store units.

Model (FlightLLM-style accelerator on an HBM FPGA):
- The device has `channels` pseudo-channels of `bandwidth_per_channel_bytes_per_s` peak each.
- Each core owns some channels (its local channels, wired to its own AXI ports: the ones the
  compiler places that core's weights on, `backends.fpga.layout.core_channels`). An access
  to a local channel runs at `same_channel_efficiency` of the peak, an access to another
  core's channel crosses the HBM switch at `cross_channel_efficiency` (both from the
  FlightLLM artifact's simulator).
- A channel serves its active transfers by fair sharing: with n transfers in flight each gets
  1/n of the channel's time (per-channel contention), at its own access efficiency.
- A transfer never exceeds the AXI ports of its channel: ports per channel x port width x
  port clock (`HbmSpec.port_bytes_per_s`; one 256-bit port per channel on the U280, two
  256-bit NoC ports on the Versal VHK158, each clocked at `port_clock_hz`).
Rates change only when a transfer starts or ends on the same channel, so each transfer keeps
its bytes left as of its channel's last change (`since`) and its finish time is
`since + remaining / rate`: events elsewhere never touch its arithmetic, and a core alone
on its channels computes bit for bit what it computes beside other cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class HbmParams:
    """Describe the HBM as the engine needs it (see the module docstring)."""

    channels: int
    owners: tuple[int, ...]  # the core owning each channel
    channel_bytes_per_s: float
    same_channel_efficiency: float
    cross_channel_efficiency: float
    port_bytes_per_s: float

    def owner(self, channel: int) -> int:
        """Return the core whose AXI ports are wired to `channel`."""
        return self.owners[channel]

    def solo_rate(self, core: int, channel: int) -> float:
        """Return the bytes/s one transfer of `core` gets from an otherwise idle channel."""
        return self.shared_rate(core, channel, 1)

    def shared_rate(self, core: int, channel: int, sharers: int) -> float:
        """Return the bytes/s of one of `sharers` transfers on `channel` issued by `core`."""
        same = self.owner(channel) == core
        efficiency = self.same_channel_efficiency if same else self.cross_channel_efficiency
        return min(self.port_bytes_per_s, self.channel_bytes_per_s * efficiency / sharers)


@dataclass
class Transfer:
    """One load or store in flight: bytes left at time `since`, its rate since, its issuer."""

    core: int
    channel: int
    remaining_bytes: float
    rate: float = 0.0
    since: float = 0.0
    token: object = field(default=None, compare=False)

    def finish_time(self) -> float:
        """Return when the transfer ends if its rate stays as it is."""
        return self.since + self.remaining_bytes / self.rate


class HbmState:
    """Track transfers in flight per channel and keep their fair-share rates current."""

    def __init__(self, params: HbmParams) -> None:
        self.params = params
        self.active: list[Transfer] = []
        self.per_channel: dict[int, int] = {}

    def start(self, transfer: Transfer, now: float) -> None:
        """Add a transfer at time `now` and update the rates of its channel."""
        transfer.since = now
        self.active.append(transfer)
        self.per_channel[transfer.channel] = self.per_channel.get(transfer.channel, 0) + 1
        self._rerate(transfer.channel, now)

    def finish(self, transfer: Transfer, now: float) -> None:
        """Remove a transfer finished at `now` and update the rates of its channel."""
        self.active.remove(transfer)
        self.per_channel[transfer.channel] -= 1
        self._rerate(transfer.channel, now)

    def next_finish(self) -> tuple[float, Transfer | None]:
        """Return the earliest finish time among transfers in flight and its transfer."""
        best, first = float("inf"), None
        for t in self.active:
            end = t.finish_time()
            if end < best:
                best, first = end, t
        return best, first

    def _rerate(self, channel: int, now: float) -> None:
        """Bring the channel's transfers to `now` at their old rates, then share it anew."""
        sharers = self.per_channel[channel]
        for t in self.active:
            if t.channel == channel:
                t.remaining_bytes -= t.rate * (now - t.since)
                t.since = now
                t.rate = self.params.shared_rate(t.core, channel, sharers)
