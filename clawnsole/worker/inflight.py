"""What a worker holds, from claim until the outcome is written or the lease released, the one condition its
claim loop waits on (a free slot, a wake-up hint, a stop), and the jobs its handler threads take up."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

from clawnsole.models import Item
from clawnsole.worker.context import Context

# A slot's states. Only a RUNNING slot may move on, and only once: to FINISHING when its handler returns
# (the outcome will be written), to LOST when a renewal finds the lease gone, to RELEASING on shutdown.
# Whichever comes first wins, so a late outcome of a lost or released item is never written.
RUNNING = "running"
FINISHING = "finishing"
LOST = "lost"
RELEASING = "releasing"


Key = tuple[int, str]  # (item id, lease token): one claim of one item


class Slot:
    """One held item: one claim of it, named by its lease token."""

    __slots__ = ("claimed_at", "ctx", "item", "returned", "state", "token")

    def __init__(self, item: Item, token: str, ctx: Context, claimed_at: float) -> None:
        self.item = item
        self.token = token
        self.ctx = ctx
        self.claimed_at = claimed_at
        self.state = RUNNING
        self.returned = False

    @property
    def key(self) -> Key:
        return (self.item.id, self.token)


class InFlight:
    """The held slots and the count of busy handlers, under one condition the claim loop waits on.

    Slots are keyed by (item id, lease token), not by id: a worker can claim its own item again once its
    lease ran out (claim-next recovers it like any other), and the older claim must neither hide the newer
    one nor, when its late outcome is rejected, take the newer one's slot with it.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.cond = threading.Condition(threading.Lock())
        self.busy = 0
        self.hinted = False
        # A claim is on its way (the claim loop's, or the listener's on a notification): no other starts
        # until its items are held, so together they never claim more than the free slots.
        self.claiming = False
        self._slots: dict[Key, Slot] = {}

    def free(self) -> int:
        """Handler slots not busy (call with `cond` held)."""
        return self.capacity - self.busy

    def hint(self) -> None:
        """New work may be due (a notification, a reconnect): wake the claim loop."""
        with self.cond:
            self.hinted = True
            self.cond.notify_all()

    def add(self, slots: Iterable[Slot]) -> list[Slot]:
        """Hold these new claims; returns older RUNNING claims of the same items, now LOST (their leases ran
        out and the item was claimed again): the caller stops their handlers."""
        superseded = []
        with self.cond:
            for slot in slots:
                for old in self._slots.values():
                    if old.item.id == slot.item.id and old.state == RUNNING:
                        old.state = LOST
                        superseded.append(old)
                self._slots[slot.key] = slot
                self.busy += 1
        return superseded

    def handler_returned(self, slot: Slot) -> bool:
        """Free the handler slot; True when the outcome is to be written (the slot was still RUNNING)."""
        with self.cond:
            self.busy -= 1
            slot.returned = True
            write = slot.state == RUNNING
            if write:
                slot.state = FINISHING
            elif slot.state == LOST and self._slots.get(slot.key) is slot:
                del self._slots[slot.key]
            self.cond.notify_all()
            return write

    def held(self) -> list[Key]:
        """(id, lease token) of every lease still ours: running, finished with the outcome unwritten, or
        being stopped for release at shutdown (kept alive until it is given back)."""
        with self.cond:
            return [key for key, s in self._slots.items() if s.state != LOST]

    def lose(self, keys: Iterable[Key]) -> list[Slot]:
        """Mark these RUNNING slots LOST (their lease is gone); returns the slots that changed."""
        lost = []
        with self.cond:
            for key in keys:
                slot = self._slots.get(key)
                if slot is not None and slot.state == RUNNING:
                    slot.state = LOST
                    lost.append(slot)
        return lost

    def take_for_release(self) -> list[Slot]:
        """Mark every RUNNING slot RELEASING (shutdown gives them back); returns them."""
        with self.cond:
            taken = [s for s in self._slots.values() if s.state == RUNNING]
            for slot in taken:
                slot.state = RELEASING
            return taken

    def releasing(self) -> list[Slot]:
        with self.cond:
            return [s for s in self._slots.values() if s.state == RELEASING]

    def forget(self, slots: Iterable[Slot]) -> None:
        """Drop slots whose outcome was written or whose lease was released (only these very claims)."""
        with self.cond:
            for slot in slots:
                if self._slots.get(slot.key) is slot:
                    del self._slots[slot.key]

    def count(self) -> int:
        with self.cond:
            return len(self._slots)


class ListenTurn:
    """The job of listening for enqueue notifications, taken up by one idle handler thread at a time."""

    __slots__ = ()


LISTEN = ListenTurn()

Job = Slot | ListenTurn | None


class Jobs:
    """Claimed slots waiting for a handler thread, or the listener's turn (None: a thread is to return).

    A batch wakes one idle thread, and a thread that takes a slot wakes the next only when more are waiting
    and no other thread is already on its way. One thread per slot, each woken for a single item, costs a
    wake-up and a hand-over of the interpreter per item; this way a burst of fast items is run by as few
    threads as keep up with it, and slow items still spread over every thread (one wake-up after another).
    """

    def __init__(self) -> None:
        self._waiting: deque[Job] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._idle = 0  # threads blocked in get()
        self._waking = 0  # of those, woken and not yet running

    def put(self, jobs: Iterable[Job]) -> None:
        with self._cond:
            self._waiting.extend(jobs)
            self._wake_one()

    def get(self) -> Job:
        with self._cond:
            while not self._waiting:
                self._idle += 1
                try:
                    self._cond.wait()
                finally:
                    self._idle -= 1
                    if self._waking > 0:
                        self._waking -= 1
            job = self._waiting.popleft()
            if self._waiting:
                self._wake_one()
            return job

    def _wake_one(self) -> None:
        # Call with the condition held.
        if self._waking == 0 and self._idle > self._waking:
            self._waking += 1
            self._cond.notify()
