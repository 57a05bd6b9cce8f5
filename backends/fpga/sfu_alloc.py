"""Allocate the device-wide SFU buffer to values by liveness.

The lowering asks for a span when a value is first written (`alloc`) and hands it back after
its last read (`release`). Every instruction touching a span is noted (`touch`), so that the
span's next tenant can be ordered after its last users:
- a span used by one core only in the current epoch (since the last barrier) can be taken
  again right away by a value that only that core writes; the new value's writes on that core
  wait for the span's last user there (`war`), a token of the core's own queues;
- a span used by several cores, or taken for a value several cores write, comes back only
  after the next barrier (cores are ordered by barriers alone).
Allocation is first fit over the free words, so a segment that starts from the same live
spans lowers to the same addresses: the compiler derives repeated layers from that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sparseflow.ir.errors import InputError


class SfuFull(InputError):
    """The values live at some point of a pass need more SFU words than the buffer holds."""


@dataclass
class Span:
    """Words [addr, addr + words) and, per core, the last instruction that used them."""

    addr: int
    words: int
    users: dict[int, int] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.addr + self.words

    def overlaps(self, addr: int, words: int) -> bool:
        return self.addr < addr + words and addr < self.end


class SfuAllocator:
    """Spans of the SFU buffer's `depth` words held by named values (see the module doc)."""

    def __init__(self, depth: int, live: Mapping[str, tuple[int, int]] | None = None) -> None:
        self.depth = depth
        self.live = {name: Span(addr, words) for name, (addr, words) in (live or {}).items()}
        self.retired: list[Span] = []
        self.waits: dict[tuple[str, int], int] = {}  # (value, core) -> instruction to wait for

    def __contains__(self, name: str) -> bool:
        return name in self.live

    def addr(self, name: str) -> int:
        """Return the first word of live value `name`."""
        try:
            return self.live[name].addr
        except KeyError:
            raise InputError(f"SFU value {name!r} is read before it is written") from None

    def alloc(self, name: str, words: int, cores: Sequence[int]) -> int | None:
        """Give `name` the first free span of `words` words that `cores` may write now;
        return its first word, or None when only a barrier would free enough words (spans
        that other cores used since the last one). InputError when live values leave too
        few words even after a barrier."""
        if name in self.live:
            return self.live[name].addr
        taken = list(self.live.values()) + [s for s in self.retired if not _free_for(s, cores)]
        addr = _first_fit(taken, words, self.depth)
        if addr is None:
            if _first_fit(list(self.live.values()), words, self.depth) is not None:
                return None
            used = sum(s.words for s in self.live.values())
            raise SfuFull(
                f"SFU buffer: value {name} needs {words} words, {used} of {self.depth} are "
                "held by live values (a smaller prefill chunk or model needs fewer)"
            )
        for span in self.retired:
            if span.overlaps(addr, words):
                for core, user in span.users.items():
                    key = (name, core)
                    self.waits[key] = max(self.waits.get(key, -1), user)
        self.live[name] = Span(addr, words)
        return addr

    def war(self, name: str, core: int) -> int | None:
        """Return the instruction of `core` that a write of `name` there must wait for."""
        return self.waits.get((name, core))

    def touch(self, name: str, core: int, index: int) -> None:
        """Note that instruction `index` of `core` reads or writes value `name`."""
        if name in self.live:
            self.live[name].users[core] = index

    def release(self, name: str) -> None:
        """Hand `name`'s span back (no-op for a value that holds none)."""
        span = self.live.pop(name, None)
        if span is not None:
            self.retired.append(span)
        for key in [k for k in self.waits if k[0] == name]:
            del self.waits[key]

    def barrier(self) -> None:
        """Forget every use before a barrier: retired spans are free for any core."""
        self.retired = []
        self.waits = {}
        for span in self.live.values():
            span.users = {}

    def spans(self, names: Sequence[str]) -> tuple[tuple[int, int], ...]:
        """Return (addr, words) of live values `names`, in that order."""
        return tuple((self.live[n].addr, self.live[n].words) for n in names)


def _free_for(span: Span, cores: Sequence[int]) -> bool:
    """Return whether a retired span may be written now by values that `cores` write."""
    users = set(span.users)
    return not users or (len(cores) == 1 and users <= set(cores))


def _first_fit(taken: list[Span], words: int, depth: int) -> int | None:
    """Return the lowest address with `words` words clear of every span in `taken`."""
    addr = 0
    for span in sorted(taken, key=lambda s: s.addr):
        if span.addr >= addr + words:
            break
        addr = max(addr, span.end)
    return addr if addr + words <= depth else None
