"""Event-driven execution of accelerator instruction streams (one stream per core).

Machine (see `isa` for the token rules and `fpga_costs` for what each instruction costs):
- Each core has a dispatcher and four in-order unit queues (load, store, matrix, SFU). The
  dispatcher reads its stream in order, spending words + fetch + execute cycles per
  instruction (the RTL controller's count), and appends each instruction to its unit's queue.
  SYS BARRIER is device-wide (`program` docstring): dispatch resumes once every core has
  reached the barrier and retired everything before it. SYS END ends a core's stream.
- A queue's head starts when it has been dispatched, its unit is free and every token of
  its wait mask is available (`sem[src][dst] > 0`, consumed on start); when it retires it
  releases the tokens of its release mask.
- Matrix and SFU units run one instruction at a time for its fixed cycle count.
- Load and store units issue in order but keep one transfer in flight per HBM channel (one
  AXI port per channel, `hbm`), so transfers on different channels overlap; they retire in
  issue order, so a release token means every older transfer of the queue has landed.
  Bandwidth per transfer comes from `hbm.HbmState` (efficiency, contention, port limit).
- Cores run in parallel and share the HBM channels.
Time advances from event to event (an instruction becomes ready, a unit finishes, a transfer
lands), never tick by tick.

Reuse (`ReuseCache`): instructions are priced once per distinct row of cost columns. Streams
split at their barriers into epochs that start with every queue empty. When no HBM channel
is used by two cores, cores interact only at barriers, so each core's epoch is simulated on
its own; otherwise all cores' epochs together. An epoch's timing depends only on its
instructions' costs, their channels relative to the core's own, and the tokens left on
entry, so each distinct epoch is simulated once, across cores and length buckets.
`simulate_streams(..., reuse=False)` runs every epoch of all cores in one event loop (an
epoch's loop starts at the barrier that opens it, all queues and transfers drained, so this is
the whole program's run); tests check that both give the same result.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sparseflow.backends.fpga import isa
from sparseflow.backends.fpga.program import Stream
from sparseflow.ir.errors import InputError
from sparseflow.simulator.energy import EnergyEvents
from sparseflow.simulator.fpga_costs import (
    TIMING_COLUMNS,
    FpgaMachine,
    InstructionCost,
    instruction_cost,
)
from sparseflow.simulator.hbm import HbmParams, HbmState, Transfer

N_UNITS = len(isa.Queue)
MASK_BITS = [tuple(j for j in range(N_UNITS) if mask >> j & 1) for mask in range(1 << N_UNITS)]
TRANSFER_UNITS = (isa.Queue.LOAD, isa.Queue.STORE)
FIXED_UNITS = (isa.Queue.MATRIX, isa.Queue.SFU)
NO_TOKENS = (0,) * (N_UNITS * N_UNITS)
SYS_UNIT = -1


@dataclass(frozen=True, eq=False)
class PricedStream:
    """A stream as the engine runs it: cost id and HBM channel of every instruction."""

    ids: np.ndarray  # int64 index into ReuseCache.costs
    channels: np.ndarray  # int64 HBM channel (LOAD/STORE), -1 otherwise

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Timeline:
    """One core's result: per-instruction start and end (seconds) and unit busy time."""

    start_s: np.ndarray
    end_s: np.ndarray
    busy_s: np.ndarray  # [N_UNITS] seconds each unit had work in flight
    retire_s: float  # last retirement
    resume_s: float  # when dispatch resumed after the last barrier passed


@dataclass
class SimResult:
    """A program's simulated execution: time, timelines per core, traffic and events."""

    time_s: float
    streams: list[PricedStream]
    cores: list[Timeline]
    units: list[np.ndarray]  # per core: isa.Queue per instruction, SYS_UNIT for SYS
    channel_bytes: np.ndarray  # bytes moved per HBM channel
    events: EnergyEvents
    # per epoch: (start offset, (first, end) row of each core, each core's epoch timeline)
    epochs: list[tuple[float, list[tuple[int, int]], list[Timeline]]]

    @property
    def busy_s(self) -> np.ndarray:
        """Return [cores, N_UNITS] busy seconds per unit."""
        return np.array([c.busy_s for c in self.cores])


class ReuseCache:
    """Hold what simulations on one machine share: instruction costs and epoch results.

    Pass one cache to several `simulate_streams` calls (a program's length buckets) to share
    epochs between them; results equal those without reuse.
    """

    def __init__(self, machine: FpgaMachine) -> None:
        self.machine = machine
        self.ids: dict[tuple[int, ...], int] = {}
        self.costs: list[InstructionCost] = []
        self.epochs: dict[tuple, tuple[list[Timeline], list[tuple]]] = {}

    def price(self, stream: Stream) -> PricedStream:
        """Return the stream's cost ids and channels (one cost per distinct column row)."""
        return self.price_table(stream.table())

    def price_table(self, table: Mapping[str, np.ndarray]) -> PricedStream:
        """Return the cost ids and channels of the instructions in a `Stream.table()`."""
        if not len(table["opcode"]):
            return PricedStream(np.zeros(0, np.int64), np.zeros(0, np.int64))
        cols = np.stack([table[c] for c in TIMING_COLUMNS], axis=1)
        rows, inverse = _unique_rows(cols)
        ids = np.array([self._id(tuple(row)) for row in rows.tolist()], np.int64)
        opcode = table["opcode"]
        transfer = (opcode == isa.Opcode.LOAD) | (opcode == isa.Opcode.STORE)
        channels = np.where(transfer, table["channel"], -1)
        bad = channels >= self.machine.hbm.channels
        if bad.any():
            raise InputError(
                f"program: instruction {int(np.argmax(bad))} uses HBM channel "
                f"{int(channels[bad][0])}; the device has {self.machine.hbm.channels}"
            )
        return PricedStream(ids[inverse], channels)

    def _id(self, row: tuple[int, ...]) -> int:
        found = self.ids.get(row)
        if found is None:
            found = self.ids[row] = len(self.costs)
            fields = dict(zip(TIMING_COLUMNS, row, strict=True))
            self.costs.append(instruction_cost(fields, self.machine))
        return found


def _unique_rows(cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (distinct rows, index of each row's distinct row), like np.unique(axis=0).

    Rows are hashed to one int64 (random odd multipliers, wrapping) and the hash is checked
    to be exact; on a collision the slower row-wise np.unique answers.
    """
    multipliers = np.random.default_rng(0).integers(1, 1 << 62, cols.shape[1]) | 1
    with np.errstate(over="ignore"):
        hashed = (cols * multipliers).sum(axis=1)
    _, first, inverse = np.unique(hashed, return_index=True, return_inverse=True)
    rows = cols[first]
    if not np.array_equal(rows[inverse], cols):
        rows, inverse = np.unique(cols, axis=0, return_inverse=True)
    return rows, inverse.reshape(-1)


def simulate_streams(
    streams: list[Stream],
    machine: FpgaMachine,
    reuse: bool = True,
    cache: ReuseCache | None = None,
) -> SimResult:
    """Execute one instruction stream per core on `machine`; return times, traffic, events."""
    if not 1 <= len(streams) <= machine.cores:
        raise InputError(f"program: {len(streams)} streams for a device of {machine.cores} cores")
    cache = cache or ReuseCache(machine)
    priced = [cache.price(s) for s in streams]
    runner = _EpochRunner(cache, priced, reuse)
    return _result(cache, priced, runner.run(), runner.records)


def _result(
    cache: ReuseCache, priced: list[PricedStream], timelines: list[Timeline], epochs: list
) -> SimResult:
    machine, costs = cache.machine, cache.costs
    unit_of = np.array([SYS_UNIT if c.unit is None else int(c.unit) for c in costs], np.int64)
    channel_bytes = np.zeros(machine.hbm.channels)
    hbm_bytes = np.array([c.hbm_bytes for c in costs], np.float64)
    counts = np.zeros(len(costs))
    for s in priced:
        moves = s.channels >= 0
        np.add.at(channel_bytes, s.channels[moves], hbm_bytes[s.ids[moves]])
        counts += np.bincount(s.ids, minlength=len(costs))
    return SimResult(
        time_s=max([t.retire_s for t in timelines] + [0.0]),
        streams=priced,
        cores=timelines,
        units=[unit_of[s.ids] for s in priced],
        channel_bytes=channel_bytes,
        events=events_of(costs, counts),
        epochs=epochs,
    )


def events_of(costs: list[InstructionCost], counts: np.ndarray) -> EnergyEvents:
    """Return the energy events of `counts[i]` executions of each instruction `costs[i]`."""
    totals = dict.fromkeys(EnergyEvents.__dataclass_fields__, 0.0)
    for cost, n in zip(costs, counts, strict=True):
        for name in cost.events.nonzero() if n else ():
            totals[name] += n * getattr(cost.events, name)
    return EnergyEvents(**totals)


class _EpochRunner:
    """Run a program epoch by epoch (see the module docstring); with `reuse`, each distinct
    epoch once and independent cores apart, else every epoch of all cores in one event loop.
    `records` gets each epoch's (offset, rows of each core, local timelines of each core)."""

    def __init__(self, cache: ReuseCache, priced: list[PricedStream], reuse: bool) -> None:
        self.cache, self.priced, self.reuse = cache, priced, reuse
        hbm = cache.machine.hbm
        self.relative = [relative_channels(hbm, core, s.channels) for core, s in enumerate(priced)]
        used = [set(np.unique(s.channels[s.channels >= 0]).tolist()) for s in priced]
        self.groups = core_groups(used) if reuse else [list(range(len(priced)))]
        self.records: list[tuple[float, list[tuple[int, int]], list[Timeline]]] = []

    def run(self) -> list[Timeline]:
        barrier = np.array([c.barrier for c in self.cache.costs], bool)
        end = np.array([c.end for c in self.cache.costs], bool)
        bounds = [_epoch_ends(barrier[s.ids], end[s.ids]) for s in self.priced]
        epochs = max(len(b) for b in bounds)
        # A core with fewer barriers has ended; it takes no part in the later ones.
        bounds = [b + [b[-1]] * (epochs - len(b)) for b in bounds]
        n = [len(s) for s in self.priced]
        start = [np.zeros(k) for k in n]
        end = [np.zeros(k) for k in n]
        busy = [np.zeros(N_UNITS) for _ in n]
        sems = [NO_TOKENS] * len(n)
        lo = [0] * len(n)
        offset, retire, resume = 0.0, [0.0] * len(n), [0.0] * len(n)
        for k in range(epochs):
            epoch_resume = 0.0
            local: list[Timeline | None] = [None] * len(n)
            for group in self.groups:
                spans = [(lo[c], bounds[c][k]) for c in group]
                timelines, sems_out = self._epoch(group, spans, [sems[c] for c in group])
                for c, (a, b), t, sem in zip(group, spans, timelines, sems_out, strict=True):
                    local[c] = t
                    start[c][a:b] = offset + t.start_s
                    end[c][a:b] = offset + t.end_s
                    busy[c] += t.busy_s
                    retire[c] = max(retire[c], offset + t.retire_s)
                    sems[c] = sem
                    epoch_resume = max(epoch_resume, t.resume_s, t.retire_s)
            self.records.append((offset, [(lo[c], bounds[c][k]) for c in range(len(n))], local))
            offset += epoch_resume
            resume = [offset] * len(n)
            lo = [bounds[c][k] for c in range(len(n))]
        return [Timeline(start[c], end[c], busy[c], retire[c], resume[c]) for c in range(len(n))]

    def _epoch(self, group: list[int], spans: list[tuple[int, int]], sems: list[tuple]):
        if not self.reuse:
            sliced = [
                PricedStream(self.priced[c].ids[a:b], self.priced[c].channels[a:b])
                for c, (a, b) in zip(group, spans, strict=True)
            ]
            return simulate_epoch(self.cache, sliced, group, sems)
        key = tuple(
            (
                self.priced[c].ids[a:b].tobytes(),
                self.relative[c][:, a:b].tobytes(),
                sem,
            )
            for c, (a, b), sem in zip(group, spans, sems, strict=True)
        )
        hit = self.cache.epochs.get(key)
        if hit is None:
            sliced = [
                PricedStream(self.priced[c].ids[a:b], self.priced[c].channels[a:b])
                for c, (a, b) in zip(group, spans, strict=True)
            ]
            hit = self.cache.epochs[key] = simulate_epoch(self.cache, sliced, group, sems)
        return hit


def relative_channels(hbm: HbmParams, core: int, channels: np.ndarray) -> np.ndarray:
    """Return [2, n]: each channel relative to the core's first one (-1 for none) and whether
    the core owns it; epochs alike in these (and in costs and tokens) time alike."""
    base = min(ch for ch in range(hbm.channels) if hbm.owner(ch) == core)
    owners = np.array(hbm.owners)
    moves = channels >= 0
    local = np.where(moves, owners[np.where(moves, channels, 0)] == core, False)
    rel = np.where(moves, channels - base, -1)
    return np.stack([rel, local]).astype(np.int64)


def core_groups(used: list[set[int]]) -> list[list[int]]:
    """Return the groups of cores to simulate together: each core alone when no HBM channel
    of `used` (per core) is shared, else all cores at once."""
    independent = all(not (a & b) for i, a in enumerate(used) for b in used[i + 1 :])
    cores = list(range(len(used)))
    return [[c] for c in cores] if independent else [cores]


def simulate_epoch(
    cache: ReuseCache, streams: list[PricedStream], core_ids: list[int], sems: list[tuple]
) -> tuple[list[Timeline], list[tuple]]:
    """Run one epoch (every queue empty on entry) of cores `core_ids` with tokens `sems`;
    return their timelines (from the epoch's start) and the tokens they leave."""
    loop = _EventLoop(cache.machine, cache.costs, streams, core_ids, sems)
    return loop.run(), [tuple(c.sem) for c in loop.cores]


def _epoch_ends(is_barrier: np.ndarray, is_end: np.ndarray) -> list[int]:
    """Return the exclusive end index of each epoch: after each barrier, up to SYS END."""
    ends = np.flatnonzero(is_end)
    stop = int(ends[0]) + 1 if len(ends) else len(is_barrier)
    bounds = (np.flatnonzero(is_barrier[:stop]) + 1).tolist()
    if not bounds or bounds[-1] != stop:
        bounds.append(stop)
    return bounds


class _Core:
    """Dispatcher, queues, units and token counters of one core during an event loop."""

    def __init__(
        self, core: int, stream: PricedStream, costs: list[InstructionCost], sem: tuple,
        clock_hz: float,
    ) -> None:  # fmt: skip
        self.core = core
        self.costs = [costs[i] for i in stream.ids.tolist()]
        self.channels = stream.channels.tolist()
        self.period = 1.0 / clock_hz
        self.sem = list(sem)
        self.pos = 0  # next instruction to dispatch
        self.dispatch_s = 0.0  # when the dispatcher is free
        self.barrier_s: float | None = None  # fetch time of the barrier being waited on
        self.ended = False
        self.pending = 0  # dispatched, not retired
        self.queues: list[deque[int]] = [deque() for _ in range(N_UNITS)]
        self.ready_s: dict[int, float] = {}
        self.fixed_end: list[tuple[float, int] | None] = [None] * N_UNITS
        self.inflight: list[deque[list]] = [deque() for _ in range(N_UNITS)]  # [idx, landed]
        self.ports: list[set[int]] = [set() for _ in range(N_UNITS)]
        self.busy_since = [0.0] * N_UNITS
        self.busy_s = np.zeros(N_UNITS)
        self.start_s = np.zeros(len(self.costs))
        self.end_s = np.zeros(len(self.costs))
        self.retire_s = 0.0
        self.resume_s = 0.0

    def dispatch(self) -> None:
        """Dispatch in order up to the next barrier (or END, or the end of the stream)."""
        costs = self.costs
        while self.barrier_s is None and not self.ended and self.pos < len(costs):
            cost = costs[self.pos]
            self.dispatch_s += cost.dispatch_cycles * self.period
            if cost.unit is None:
                self.start_s[self.pos] = self.end_s[self.pos] = self.dispatch_s
                if cost.barrier:
                    self.barrier_s = self.dispatch_s
                    return
                self.ended = cost.end
                self.pos += 1
                continue
            self.ready_s[self.pos] = self.dispatch_s
            self.queues[cost.unit].append(self.pos)
            self.pending += 1
            self.pos += 1

    def pass_barrier(self, resume_s: float) -> None:
        """Leave the barrier at `resume_s` (every core has reached and drained it)."""
        self.end_s[self.pos] = self.dispatch_s = self.resume_s = resume_s
        self.barrier_s = None
        self.pos += 1

    def can_take_tokens(self, wait: int, unit: int) -> bool:
        sem = self.sem
        for j in MASK_BITS[wait]:  # noqa: SIM110  (a loop: all() of a generator is slower here)
            if sem[j * N_UNITS + unit] <= 0:
                return False
        return True

    def take_tokens(self, wait: int, unit: int) -> None:
        for j in MASK_BITS[wait]:
            self.sem[j * N_UNITS + unit] -= 1

    def retire(self, idx: int, unit: int, now: float) -> None:
        for j in MASK_BITS[self.costs[idx].release]:
            self.sem[unit * N_UNITS + j] += 1
        self.pending -= 1
        self.retire_s = max(self.retire_s, now)

    @property
    def finished(self) -> bool:
        return self.pending == 0 and (self.ended or self.pos == len(self.costs))


class _EventLoop:
    """Run cores in parallel over shared HBM from event to event."""

    def __init__(
        self,
        machine: FpgaMachine,
        costs: list[InstructionCost],
        streams: list[PricedStream],
        core_ids: list[int] | None = None,
        sems: list[tuple] | None = None,
    ) -> None:
        ids = core_ids or list(range(len(streams)))
        sems = sems or [NO_TOKENS] * len(streams)
        self.cores = [
            _Core(i, s, costs, sem, machine.clock_hz)
            for i, s, sem in zip(ids, streams, sems, strict=True)
        ]
        self.hbm = HbmState(machine.hbm)
        self.now = 0.0

    def run(self) -> list[Timeline]:
        """Run to completion; return each core's timeline."""
        while True:
            self._start_all()
            t_next, what = self._next_event()
            if what is None:
                break
            self.now = t_next
            self._complete(what)
        stuck = [c for c in self.cores if not c.finished]
        if stuck:
            raise InputError(_deadlock_message(stuck[0]))
        return [Timeline(c.start_s, c.end_s, c.busy_s, c.retire_s, c.resume_s) for c in self.cores]

    def _start_all(self) -> None:
        progressed = True
        while progressed:
            progressed = False
            for core in self.cores:
                core.dispatch()
                queues = core.queues
                for unit in range(N_UNITS):
                    while queues[unit] and self._try_start(core, unit):
                        progressed = True
            progressed |= self._barrier()

    def _barrier(self) -> bool:
        """Pass the device-wide barrier once every running core waits at it, drained."""
        running = []
        for c in self.cores:
            if c.barrier_s is None:
                if not c.finished:
                    return False  # still running, not at the barrier
            elif c.pending:
                return False  # at the barrier, not drained
            else:
                running.append(c)
        if not running:
            return False
        resume = max([self.now] + [c.barrier_s for c in running])
        for core in running:
            core.pass_barrier(resume)
        return True

    def _try_start(self, core: _Core, unit: int) -> bool:
        """Start the head of a non-empty queue if it is ready, has its tokens and a unit."""
        queue = core.queues[unit]
        idx = queue[0]
        cost = core.costs[idx]
        if core.ready_s[idx] > self.now or not core.can_take_tokens(cost.wait, unit):
            return False
        if unit in FIXED_UNITS:
            if core.fixed_end[unit] is not None:
                return False
            end = self.now + cost.cycles * core.period
            core.fixed_end[unit] = (end, idx)
            core.busy_s[unit] += end - self.now
        else:
            channel = core.channels[idx]
            if channel in core.ports[unit]:
                return False
            core.ports[unit].add(channel)
            if not core.inflight[unit]:
                core.busy_since[unit] = self.now
            entry = [idx, False]
            core.inflight[unit].append(entry)
            transfer = Transfer(core.core, channel, cost.hbm_bytes, token=(core, entry))
            self.hbm.start(transfer, self.now)
        core.take_tokens(cost.wait, unit)
        queue.popleft()
        del core.ready_s[idx]
        core.start_s[idx] = self.now
        return True

    def _next_event(self) -> tuple[float, object]:
        best, what = self.hbm.next_finish()
        now = self.now
        for core in self.cores:
            fixed_end, queues, ready_s = core.fixed_end, core.queues, core.ready_s
            for unit in FIXED_UNITS:
                pair = fixed_end[unit]
                if pair is not None and pair[0] < best:
                    best, what = pair[0], (core, unit)
            for queue in queues:
                if queue:
                    ready = ready_s[queue[0]]
                    if now < ready < best:
                        best, what = ready, "ready"
            if core.barrier_s is not None and now < core.barrier_s < best:
                best, what = core.barrier_s, "ready"
        return best, what

    def _complete(self, what: object) -> None:
        if isinstance(what, Transfer):
            self._land(what)
        elif isinstance(what, tuple):
            core, unit = what
            idx = core.fixed_end[unit][1]
            core.fixed_end[unit] = None
            core.end_s[idx] = self.now
            core.retire(idx, unit, self.now)
        # "ready": nothing completes; the next _start_all starts what became ready

    def _land(self, transfer: Transfer) -> None:
        core, entry = transfer.token
        idx = entry[0]
        unit = int(core.costs[idx].unit)
        self.hbm.finish(transfer, self.now)
        core.ports[unit].discard(transfer.channel)
        entry[1] = True
        core.end_s[idx] = self.now
        inflight = core.inflight[unit]
        while inflight and inflight[0][1]:
            core.retire(inflight.popleft()[0], unit, self.now)
        if not inflight:
            core.busy_s[unit] += self.now - core.busy_since[unit]


def _deadlock_message(core: _Core) -> str:
    heads = [
        f"{isa.QUEUE_LETTERS[u]} waits {isa.mask_letters(core.costs[q[0]].wait)}"
        for u, q in enumerate(core.queues)
        if q
    ]
    return (
        f"program: core {core.core} deadlocks at instruction {core.pos}: "
        f"{', '.join(heads) or 'a barrier never clears'} (tokens never released)"
    )
