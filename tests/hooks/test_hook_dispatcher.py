"""Hooks: blocking calls become HookFailed (502/504); post-events never raise to the caller."""

from __future__ import annotations

import asyncio

import pytest

from tusd_py.hooks import (
    HookEvent,
    HookFailed,
    HookResponse,
    Hooks,
    HookType,
    HTTPResponse,
    RequestSnapshot,
    UploadSnapshot,
)


def event(hook_type: HookType) -> HookEvent:
    return HookEvent(hook_type, UploadSnapshot(id="u", size=1, offset=0, metadata={}), RequestSnapshot("POST", "/", ""))


def test_raising_blocking_hook_is_a_502() -> None:
    async def broken(e: HookEvent) -> HookResponse:
        raise ValueError("details")

    hooks = Hooks.from_callables({"pre-create": broken})

    with pytest.raises(HookFailed) as raised:
        asyncio.run(hooks.call(event(HookType.PRE_CREATE)))

    assert raised.value.status == 502
    assert raised.value.reason == "pre-create hook failed"


def test_slow_blocking_hook_is_a_504() -> None:
    async def slow(e: HookEvent) -> HookResponse:
        await asyncio.sleep(5)
        return HookResponse()

    hooks = Hooks.from_callables({"pre-finish": slow}, timeout=0.1)

    with pytest.raises(HookFailed) as raised:
        asyncio.run(hooks.call(event(HookType.PRE_FINISH)))

    assert raised.value.status == 504


def test_enabled_events_limit_what_is_wanted() -> None:
    async def ok(e: HookEvent) -> None:
        return None

    hooks = Hooks.from_callables({"pre-create": ok, "post-finish": ok}, enabled_events=["post-finish"])

    assert hooks.wants(HookType.POST_FINISH)
    assert not hooks.wants(HookType.PRE_CREATE)
    assert not hooks.wants(HookType.POST_CREATE)


def test_first_refusal_wins_and_later_receivers_are_not_asked() -> None:
    asked: list[str] = []

    async def refuse(e: HookEvent) -> HookResponse:
        asked.append("first")
        return HookResponse(reject_upload=True, http_response=HTTPResponse(403, "no"))

    async def other(e: HookEvent) -> HookResponse:
        asked.append("second")
        return HookResponse()

    hooks = Hooks(
        [
            *Hooks.from_callables({"pre-create": refuse}).receivers,
            *Hooks.from_callables({"pre-create": other}).receivers,
        ]
    )

    response = asyncio.run(hooks.call(event(HookType.PRE_CREATE)))

    assert response.reject_upload
    assert response.http_response.status_code == 403
    assert asked == ["first"]


def test_notify_without_outbox_swallows_failures() -> None:
    async def run() -> int:
        done = asyncio.Event()
        count = 0

        async def broken(e: HookEvent) -> None:
            nonlocal count
            count += 1
            done.set()
            raise RuntimeError("down")

        hooks = Hooks.from_callables({"post-finish": broken})
        await hooks.notify(event(HookType.POST_FINISH))
        async with asyncio.timeout(2):
            await done.wait()
        await asyncio.sleep(0.01)
        return count

    assert asyncio.run(run()) == 1
