"""Waiting for storage work that must finish even when its request is cancelled."""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


async def settle(work: asyncio.Future[T]) -> T:
    """Await `work` to its end even if the caller is cancelled meanwhile, then re-cancel.

    Bytes already handed to a write must land (or fail) before the store looks at its
    state again; a cancelled request may not leave a write running behind its back.
    """
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(work)
            break
        except asyncio.CancelledError:
            cancelled = True
            if work.done() and not work.cancelled():
                result = work.result()
                break
    if cancelled:
        raise asyncio.CancelledError
    return result
