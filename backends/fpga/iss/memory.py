"""Word memories that remember who wrote and read each word, and the checks on every access.

Time is a vector clock per queue (one per unit of each core, plus the host): a queue's own
entry counts its executed instructions, and a token or a barrier carries the releaser's
clock to the waiter (`Clocks`). An access by queue q at its time t is ordered after an
earlier access by queue p at time s exactly when q's clock has seen p's time s. `Tracked`
keeps, per word, its last writer (queue, time, instruction) and its last reader per queue,
and raises `ExecutionError` for a read of a word never written (uninitialised), a read of a
word whose writer it is not ordered after, or a write not ordered after the word's last
writer and readers (a data race: some legal order of the queues gives another result).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sparseflow.ir.errors import InputError

HOST_TIME = 1  # the host's writes happen before every program (its clock entry is 1)


class ExecutionError(InputError):
    """A program broke a rule of the machine: the message names instruction and region."""


class Clocks:
    """Vector clocks of `queues` queues plus the host (the last entry)."""

    def __init__(self, queues: int) -> None:
        self.host = queues
        self.vc = np.zeros((queues, queues + 1), np.int64)
        self.vc[:, self.host] = HOST_TIME

    def tick(self, queue: int) -> int:
        """Advance `queue` by one instruction; return its new time."""
        self.vc[queue, queue] += 1
        return int(self.vc[queue, queue])

    def snapshot(self, queue: int) -> np.ndarray:
        return self.vc[queue].copy()

    def merge(self, queue: int, other: np.ndarray) -> None:
        """Order `queue`'s next instructions after what `other` has seen (a token)."""
        np.maximum(self.vc[queue], other, out=self.vc[queue])

    def barrier(self) -> None:
        """Order everything after a barrier after everything before it."""
        self.vc[:] = self.vc.max(axis=0)


class Tracked:
    """Per-word history of a memory of `words` words: last writer and readers (module doc)."""

    def __init__(self, name: str, words: int, queues: int) -> None:
        self.name = name
        self.writer_q = np.zeros(words, np.int16)
        self.writer_t = np.zeros(words, np.int64)  # 0: never written
        self.writer_id = np.full(words, -1, np.int64)
        self.read_t = np.zeros((words, queues + 1), np.int64)
        self.read_id = np.full((words, queues + 1), -1, np.int64)
        self.host = queues

    def clear(self) -> None:
        """Forget every access: the memory holds nothing a program may read."""
        self.writer_t[:] = 0
        self.read_t[:] = 0

    def settle(self) -> None:
        """Make every written word the host's (a program ended): later programs read it."""
        written = self.writer_t > 0
        self.writer_q[written] = self.host
        self.writer_t[written] = HOST_TIME
        self.writer_id[written] = -1
        self.read_t[:] = 0

    def host_write(self, words: np.ndarray) -> None:
        """Mark `words` as written by the host (before any program)."""
        self.writer_q[words] = self.host
        self.writer_t[words] = HOST_TIME
        self.writer_id[words] = -1

    def read(self, words: np.ndarray, access: Access) -> None:
        """Check and record a read of `words` (indices) by `access`."""
        wt = self.writer_t[words]
        if not wt.all():
            word = int(words[np.argmin(wt)])
            raise access.error(f"reads {self.name} word {word}, which nothing has written "
                               "(uninitialised)")  # fmt: skip
        seen = access.clock[self.writer_q[words]]
        if (seen < wt).any():
            word = int(words[np.argmax(seen < wt)])
            writer = access.name(int(self.writer_id[word]))
            raise access.error(
                f"reads {self.name} word {word} written by {writer} without waiting for it"
            )
        self.read_t[words, access.queue] = access.time
        self.read_id[words, access.queue] = access.index

    def write(self, words: np.ndarray, access: Access) -> None:
        """Check and record a write of `words` (indices) by `access`."""
        wt = self.writer_t[words]
        seen = access.clock[self.writer_q[words]]
        race = (wt > 0) & (seen < wt)
        if race.any():
            word = int(words[np.argmax(race)])
            writer = access.name(int(self.writer_id[word]))
            raise access.error(
                f"overwrites {self.name} word {word} written by {writer} without waiting for it"
            )
        later = self.read_t[words] > access.clock[None, :]
        later[:, access.queue] = False
        if later.any():
            row, queue = np.argwhere(later)[0]
            word = int(words[row])
            reader = access.name(self.read_id[word, queue])
            raise access.error(f"overwrites {self.name} word {word} that {reader} reads, "
                               "without waiting for it")  # fmt: skip
        self.writer_q[words] = access.queue
        self.writer_t[words] = access.time
        self.writer_id[words] = access.index
        self.read_t[words] = 0


class Access:
    """One executing instruction: its queue, time, clock, id and how to name it."""

    def __init__(self, queue: int, time: int, clock: np.ndarray, index: int,
                 name: Callable[[int], str]) -> None:  # fmt: skip
        self.queue, self.time, self.clock, self.index, self.name = queue, time, clock, index, name

    def error(self, problem: str) -> ExecutionError:
        return ExecutionError(f"{self.name(self.index)}: {problem}")


def span(start: int, count: int, depth: int, access: Access, what: str) -> np.ndarray:
    """Return the word indices [start, start + count) of a memory of `depth` words; raise
    naming `what` when they fall outside it."""
    if start < 0 or count < 0 or start + count > depth:
        raise access.error(f"{what} words [{start}, {start + count}) are outside its "
                           f"{depth} words")  # fmt: skip
    return np.arange(start, start + count)
