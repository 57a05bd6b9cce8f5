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


class SfuAllocator:
    """Spans of the SFU buffer's `depth` words held by named values (see the module doc).

    Retired spans are kept by (addr, end, core) -> users: `core` is the only core that used
    the span since the last barrier, None when several did, and spans retired again at the
    same key merge their users (the latest use per core: all that waits need); spans nobody
    used are free at once.
    """

    def __init__(self, depth: int, live: Mapping[str, tuple[int, int]] | None = None) -> None:
        self.depth = depth
        self.live = {name: Span(addr, words) for name, (addr, words) in (live or {}).items()}
        self.retired: dict[tuple[int, int, int | None], dict[int, int]] = {}
        self.waits: dict[str, dict[int, int]] = {}  # value -> core -> instruction to wait for

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
        held = [(s.addr, s.addr + s.words) for s in self.live.values()]
        # a retired span is free for a value that only the span's one user core writes
        sole = cores[0] if len(cores) == 1 else None
        busy = [(a, end) for a, end, core in self.retired if sole is None or core != sole]
        addr = _first_fit(held + busy, words, self.depth)
        if addr is None:
            if _first_fit(held, words, self.depth) is not None:
                return None
            used = sum(s.words for s in self.live.values())
            raise SfuFull(
                f"SFU buffer: value {name} needs {words} words, {used} of {self.depth} are "
                "held by live values (a smaller prefill chunk or model needs fewer)"
            )
        waits: dict[int, int] = {}
        for (a, end, _), users in self.retired.items():
            if a < addr + words and addr < end:
                for core, user in users.items():
                    if user > waits.get(core, -1):
                        waits[core] = user
        if waits:
            self.waits[name] = waits
        self.live[name] = Span(addr, words)
        return addr

    def war(self, name: str, core: int) -> int | None:
        """Return the instruction of `core` that a write of `name` there must wait for."""
        waits = self.waits.get(name)
        return None if waits is None else waits.get(core)

    def touch(self, name: str, core: int, index: int) -> None:
        """Note that instruction `index` of `core` reads or writes value `name`."""
        span = self.live.get(name)
        if span is not None:
            span.users[core] = index

    def release(self, name: str) -> None:
        """Hand `name`'s span back (no-op for a value that holds none)."""
        span = self.live.pop(name, None)
        if span is not None and span.users:
            only = next(iter(span.users)) if len(span.users) == 1 else None
            users = self.retired.setdefault((span.addr, span.end, only), {})
            for core, user in span.users.items():
                users[core] = max(users.get(core, -1), user)
        self.waits.pop(name, None)

    def barrier(self) -> None:
        """Forget every use before a barrier: retired spans are free for any core."""
        self.retired = {}
        self.waits = {}
        for span in self.live.values():
            span.users = {}

    def spans(self, names: Sequence[str]) -> tuple[tuple[int, int], ...]:
        """Return (addr, words) of live values `names`, in that order."""
        return tuple((self.live[n].addr, self.live[n].words) for n in names)


def _first_fit(taken: list[tuple[int, int]], words: int, depth: int) -> int | None:
    """Return the lowest address with `words` words clear of every [start, end) in `taken`."""
    addr = 0
    for start, end in sorted(taken):
        if start >= addr + words:
            break
        if end > addr:
            addr = end
    return addr if addr + words <= depth else None
