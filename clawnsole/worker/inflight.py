"""What a worker holds, from claim until the outcome is written or the lease released, and the one
condition its claim loop waits on (a free slot, a wake-up hint, a stop)."""

from __future__ import annotations

import threading
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


class Slot:
    """One held item."""

    __slots__ = ("claimed_at", "ctx", "item", "returned", "state", "token")

    def __init__(self, item: Item, token: str, ctx: Context, claimed_at: float) -> None:
        self.item = item
        self.token = token
        self.ctx = ctx
        self.claimed_at = claimed_at
        self.state = RUNNING
        self.returned = False


class InFlight:
    """The held slots and the count of busy handlers, under one condition the claim loop waits on."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.cond = threading.Condition(threading.Lock())
        self.busy = 0
        self.hinted = False
        self._slots: dict[int, Slot] = {}

    def free(self) -> int:
        """Handler slots not busy (call with `cond` held)."""
        return self.capacity - self.busy

    def hint(self) -> None:
        """New work may be due (a notification, a reconnect): wake the claim loop."""
        with self.cond:
            self.hinted = True
            self.cond.notify_all()

    def add(self, slots: Iterable[Slot]) -> None:
        with self.cond:
            for slot in slots:
                self._slots[slot.item.id] = slot
                self.busy += 1

    def get(self, item_id: int) -> Slot | None:
        with self.cond:
            return self._slots.get(item_id)

    def handler_returned(self, slot: Slot) -> bool:
        """Free the handler slot; True when the outcome is to be written (the slot was still RUNNING)."""
        with self.cond:
            self.busy -= 1
            slot.returned = True
            write = slot.state == RUNNING
            if write:
                slot.state = FINISHING
            elif slot.state == LOST:
                self._slots.pop(slot.item.id, None)
            self.cond.notify_all()
            return write

    def held(self) -> list[tuple[int, str]]:
        """(id, lease token) of every lease still ours: running, or finished with the outcome unwritten."""
        with self.cond:
            return [(s.item.id, s.token) for s in self._slots.values() if s.state in (RUNNING, FINISHING)]

    def lose(self, item_ids: Iterable[int]) -> list[Slot]:
        """Mark these RUNNING slots LOST (their lease is gone); returns the slots that changed."""
        lost = []
        with self.cond:
            for item_id in item_ids:
                slot = self._slots.get(item_id)
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

    def forget(self, item_ids: Iterable[int]) -> None:
        """Drop slots whose outcome was written or whose lease was released."""
        with self.cond:
            for item_id in item_ids:
                self._slots.pop(item_id, None)

    def count(self) -> int:
        with self.cond:
            return len(self._slots)
