"""Durable delivery of post-events: receiver outages, flaky receivers and a SIGKILLed server."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from conftest import RunningServer, free_port, serve_app
from hooks_receiver import Call, Receiver, serve_on

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
POST_EVENTS = "post-create,post-receive,post-finish"
ServerFactory = Callable[..., RunningServer]


def durable_flags(hook_url: str) -> tuple[str, ...]:
    return (
        *("--hooks-http", hook_url, "--hooks-enabled-events", POST_EVENTS),
        *("--hooks-http-retry", "0", "--hooks-http-backoff", "0.2s", "--hooks-http-timeout", "2s"),
    )


def upload_in_parts(client: httpx.Client, server: RunningServer, parts: list[bytes]) -> str:
    """Create an upload and send it in `parts` PATCHes; returns its id."""
    total = sum(len(p) for p in parts)
    created = client.post(server.endpoint, headers={**TUS, "Upload-Length": str(total)})
    assert created.status_code == 201, created.text
    url = created.headers["Location"]
    offset = 0
    for part in parts:
        response = client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": str(offset)}, content=part)
        assert response.status_code == 204, response.text
        offset += len(part)
    return url.rsplit("/", 1)[-1]


def unique(calls: list[Call]) -> list[Call]:
    """The calls de-duplicated by event id, in the order of first arrival."""
    seen: set[str] = set()
    result = []
    for call in calls:
        assert call.headers["hook-event-id"] == call.event_id
        if call.event_id not in seen:
            seen.add(call.event_id)
            result.append(call)
    return result


def all_delivered(expected: dict[str, int]) -> Callable[[list[Call]], bool]:
    """True once each upload's post-finish and every one of its PATCHes' post-receive arrived."""

    def check(calls: list[Call]) -> bool:
        for upload_id, patches in expected.items():
            mine = [c for c in unique(calls) if c.upload["ID"] == upload_id]
            if not any(c.type == "post-finish" for c in mine):
                return False
            if len([c for c in mine if c.type == "post-receive"]) < patches:
                return False
        return True

    return check


def assert_in_order_without_loss(calls: list[Call], expected: dict[str, int], sizes: dict[str, int]) -> None:
    events = unique(calls)
    assert {c.upload["ID"] for c in events} == set(expected)
    for upload_id, patches in expected.items():
        mine = [c for c in events if c.upload["ID"] == upload_id]
        types = [c.type for c in mine]
        assert types[0] == "post-create"
        assert types[-1] == "post-finish"
        assert types[1:-1] == ["post-receive"] * (len(types) - 2)
        assert len(types) - 2 >= patches
        offsets = [c.upload["Offset"] for c in mine]
        assert offsets == sorted(offsets)
        assert offsets[-1] == sizes[upload_id]


def outbox_rows(upload_dir: Path) -> int:
    with sqlite3.connect(upload_dir / ".hooks" / "outbox.sqlite3") as db:
        (count,) = db.execute("SELECT COUNT(*) FROM hook_outbox").fetchone()
    return int(count)


def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


PLAN: dict[str, list[bytes]] = {
    "one": [b"a" * 1000],
    "two": [b"b" * 500, b"c" * 700],
    "three": [b"d" * 10, b"e" * 20, b"f" * 30],
}


def run_plan(client: httpx.Client, server: RunningServer) -> tuple[dict[str, int], dict[str, int]]:
    patches: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for parts in PLAN.values():
        upload_id = upload_in_parts(client, server, parts)
        patches[upload_id] = len(parts)
        sizes[upload_id] = sum(len(p) for p in parts)
    return patches, sizes


def test_receiver_down_then_up_gets_every_event_in_order(server_factory: ServerFactory) -> None:
    port = free_port()
    server = server_factory(*durable_flags(f"http://127.0.0.1:{port}/hooks"))
    with httpx.Client(timeout=10) as client:
        patches, sizes = run_plan(client, server)
    # Every event was committed before its request was answered; let delivery fail a while.
    time.sleep(1.5)
    assert outbox_rows(server.upload_dir) >= 3 * len(PLAN)

    receiver = Receiver()
    with serve_on(receiver.app(), port):
        calls = receiver.wait_for(all_delivered(patches), timeout=20)

    assert_in_order_without_loss(calls, patches, sizes)
    # Delivered events are pruned.
    wait_until(lambda: outbox_rows(server.upload_dir) == 0, timeout=5)


def test_events_survive_sigkill_of_the_server(server_factory: ServerFactory, tmp_path: Path) -> None:
    port = free_port()
    upload_dir = tmp_path / "kept"
    first = server_factory(*durable_flags(f"http://127.0.0.1:{port}/hooks"), upload_dir=upload_dir)
    with httpx.Client(timeout=10) as client:
        patches, sizes = run_plan(client, first)
    first.kill()
    assert outbox_rows(upload_dir) >= 3 * len(PLAN)

    second = server_factory(*durable_flags(f"http://127.0.0.1:{port}/hooks"), upload_dir=upload_dir)
    receiver = Receiver()
    with serve_on(receiver.app(), port):
        calls = receiver.wait_for(all_delivered(patches), timeout=20)

    assert_in_order_without_loss(calls, patches, sizes)
    wait_until(lambda: outbox_rows(second.upload_dir) == 0, timeout=5)


def test_flaky_receiver_gets_each_event_at_least_once_in_order(server_factory: ServerFactory) -> None:
    receiver = Receiver()
    failed_once: set[str] = set()

    def fail_first_attempt(body: dict[str, Any]) -> tuple[int, Any]:
        # Recorded, then refused: the server must send the same event again.
        if body["ID"] not in failed_once:
            failed_once.add(body["ID"])
            return 500, b"try again"
        return 200, {}

    for hook_type in POST_EVENTS.split(","):
        receiver.answers[hook_type] = fail_first_attempt
    with serve_app(receiver.app()) as origin, httpx.Client(timeout=10) as client:
        server = server_factory(*durable_flags(origin + "/hooks"))
        patches, sizes = run_plan(client, server)
        calls = receiver.wait_for(all_delivered(patches), timeout=20)
        wait_until(lambda: outbox_rows(server.upload_dir) == 0, timeout=5)

    assert len(calls) > len(unique(calls))
    assert_in_order_without_loss(calls, patches, sizes)


def test_event_in_flight_at_sigkill_is_sent_again_soon_after_restart(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    receiver = Receiver()
    receiver.delays["post-create"] = 4.0
    upload_dir = tmp_path / "kept"
    with serve_app(receiver.app()) as origin, httpx.Client(timeout=10) as client:
        flags = (*durable_flags(origin + "/hooks"), "--hooks-http-timeout", "60s")
        first = server_factory(*flags, upload_dir=upload_dir)
        upload_id = upload_in_parts(client, first, [b"x" * 10])
        receiver.wait_for(lambda calls: any(c.type == "post-create" for c in calls), timeout=5)
        first.kill()
        receiver.delays.clear()

        server_factory(*flags, upload_dir=upload_dir)
        calls = receiver.wait_for(lambda calls: any(c.type == "post-finish" for c in calls), timeout=8)

    assert_in_order_without_loss(calls, {upload_id: 1}, {upload_id: 10})
