"""A byte budget shared by every part buffer of one store.

A buffer reserves its whole part before it fills, so a reservation never waits on
another half-filled buffer: each one ends (uploaded, or written as a tail) on its own,
and the budget cannot deadlock. While the budget is spent, the appender waiting here
stops reading its request body, which holds its client back through TCP.
"""

from __future__ import annotations

import asyncio
from collections import deque


class MemoryBudget:
    def __init__(self, total: int) -> None:
        if total <= 0:
            raise ValueError("the memory budget must be positive")
        self.total = total
        self.free = total
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def reserve(self, amount: int) -> int:
        """Wait until `amount` bytes are free, take them and return how many were taken.

        A part larger than the whole budget takes all of it: it waits for every other
        buffer to go, then goes alone.
        """
        amount = min(amount, self.total)
        if not self._waiting and self.free >= amount:
            self.free -= amount
            return amount
        # First come, first served: a big reservation is not starved by small ones.
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((amount, turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release(amount)
            else:
                self._waiting.remove((amount, turn))
                self._grant()
            raise
        return amount

    def release(self, amount: int) -> None:
        self.free += amount
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self.free >= self._waiting[0][0]:
            amount, turn = self._waiting.popleft()
            self.free -= amount
            turn.set_result(None)
