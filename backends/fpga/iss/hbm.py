"""The device's HBM as the program's layout cuts it: one byte array per region.

Every transfer must lie inside one region of the layout (`locate`); weights, constants and
tables are read-only (the host wrote them), while the KV cache and the host I/O regions are
tracked word by word (`memory.Tracked`): a program reads only what the host or an earlier
STORE wrote, and a STORE may not write bytes that another STORE of the same program wrote
(it would destroy data no one has read: the bug of two passes storing rows over each other).
"""

from __future__ import annotations

import numpy as np

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.iss.memory import Access, ExecutionError, Tracked
from sparseflow.backends.fpga.program import HbmLayout, HbmRegion

WORD = isa.HBM_WORD_BYTES
WRITABLE = ("kv", "io")  # region kinds a STORE may write


class HbmImage:
    """Bytes of every region of `layout`, with access tracking for `queues` queues."""

    def __init__(self, layout: HbmLayout, queues: int) -> None:
        self.layout = layout
        # keyed by region (tile parts on several channels share their tile's name)
        self.data = {r: np.zeros(r.nbytes, np.uint8) for r in layout.regions}
        self.tracked = {r: Tracked(f"HBM region {r.name}", r.words, queues)
                        for r in layout.regions if r.kind in WRITABLE}  # fmt: skip
        self.stored = {r: np.zeros(r.words, np.uint32) for r in self.tracked}
        self.by_channel: dict[int, tuple[np.ndarray, list[HbmRegion]]] = {}
        for channel in range(layout.channels):
            regions = sorted((r for r in layout.regions if r.channel == channel),
                             key=lambda r: r.addr)  # fmt: skip
            self.by_channel[channel] = (np.array([r.addr for r in regions]), regions)

    def region(self, name: str) -> HbmRegion:
        return self.layout.region(name)

    def region_at(self, channel: int, addr: int) -> HbmRegion | None:
        """Return the region holding word `addr` of `channel`, or None."""
        starts, regions = self.by_channel.get(channel, (np.zeros(0), []))
        i = int(np.searchsorted(starts, addr, side="right")) - 1
        return regions[i] if i >= 0 and addr < regions[i].end else None

    def locate(self, channel: int, addr: int, words: int, access: Access) -> HbmRegion:
        """Return the region holding words [addr, addr + words) of `channel`."""
        region = self.region_at(channel, addr)
        if region is None:
            raise access.error(f"HBM channel {channel} word {addr} lies in no region")
        if addr + words > region.end:
            raise access.error(f"{words} words at HBM channel {channel} word {addr} run past "
                               f"the end of region {region.name} (word {region.end})")  # fmt: skip
        return region

    def read(self, channel: int, addr: int, words: int, access: Access) -> np.ndarray:
        """Return the bytes of words [addr, addr + words) of `channel` (checked)."""
        region = self.locate(channel, addr, words, access)
        offset = addr - region.addr
        if region in self.tracked:
            self.tracked[region].read(np.arange(offset, offset + words), access)
        return self.data[region][offset * WORD : (offset + words) * WORD]

    def write(self, channel: int, addr: int, data: np.ndarray, first_byte: int,
              access: Access) -> None:  # fmt: skip
        """Write `data` (bytes) from byte `first_byte` of word `addr` of `channel`."""
        words = -(-(first_byte + len(data)) // WORD)
        region = self.locate(channel, addr, words, access)
        if region.kind not in WRITABLE:
            raise access.error(f"STORE writes into {region.kind} region {region.name}")
        offset = addr - region.addr
        index = np.arange(offset, offset + words)
        mask = _byte_mask(first_byte, len(data), words)
        clash = self.stored[region][index] & mask
        if clash.any():
            word = int(index[np.argmax(clash != 0)])
            raise access.error(f"overwrites bytes of region {region.name} word {word} that "
                               "another STORE of this program wrote (live data)")  # fmt: skip
        self.tracked[region].write(index, access)
        self.stored[region][index] |= mask
        start = offset * WORD + first_byte
        self.data[region][start : start + len(data)] = data

    def host_write(self, region: HbmRegion, byte_offset: int, data: np.ndarray) -> None:
        """Write `data` at `byte_offset` of `region` as the host (before a program)."""
        self.data[region][byte_offset : byte_offset + len(data)] = data
        if region in self.tracked:
            first, end = byte_offset // WORD, -(-(byte_offset + len(data)) // WORD)
            self.tracked[region].host_write(np.arange(first, end))

    def host_read(self, region: HbmRegion, byte_offset: int, nbytes: int) -> np.ndarray:
        """Return bytes of `region` the host reads; ExecutionError unless every word was
        written (by the host or a STORE)."""
        first, end = byte_offset // WORD, -(-(byte_offset + nbytes) // WORD)
        written = self.tracked[region].writer_t[first:end]
        if not written.all():
            word = first + int(np.argmin(written))
            raise ExecutionError(f"the host reads region {region.name} word {word}, which no "
                                 "instruction wrote")  # fmt: skip
        return self.data[region][byte_offset : byte_offset + nbytes]

    def end_program(self) -> None:
        """Hand every stored word to the host and forget this program's stores."""
        for region, tracked in self.tracked.items():
            tracked.settle()
            self.stored[region][:] = 0


def _byte_mask(first: int, count: int, words: int) -> np.ndarray:
    """Return per word the bit mask of bytes [first, first + count) of `words` words."""
    bits = np.zeros(words * WORD, bool)
    bits[first : first + count] = True
    weights = (1 << np.arange(WORD, dtype=np.uint64)).astype(np.uint64)
    return (bits.reshape(words, WORD) * weights).sum(axis=1).astype(np.uint32)
