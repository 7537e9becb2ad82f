"""Receivers: the HTTP webhook client, command hooks and in-process callables."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from tusd_py.hooks import (
    SIGNATURE_HEADER,
    CallableReceiver,
    CommandReceiver,
    HookError,
    HookEvent,
    HookResponse,
    HookType,
    HttpReceiver,
    RequestSnapshot,
    UploadSnapshot,
    event_to_json,
    verify,
)

EVENT = HookEvent(
    HookType.PRE_CREATE,
    UploadSnapshot(id="", size=3, offset=0, metadata={"name": "a.txt"}),
    RequestSnapshot("POST", "/files/", "127.0.0.1:5", {"Authorization": ("Bearer t",), "Cookie": ("c=1",)}),
)


def http_receiver(handler: object, **options: object) -> tuple[HttpReceiver, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)  # type: ignore[operator, no-any-return]

    client = httpx.AsyncClient(transport=httpx.MockTransport(record))
    return HttpReceiver("http://hooks.test/", client=client, **options), seen  # type: ignore[arg-type]


def test_http_receiver_posts_signed_tusd_json_and_reads_the_answer() -> None:
    receiver, seen = http_receiver(
        lambda r: httpx.Response(200, json={"RejectUpload": True}),
        secret="k",
        forward_headers=["authorization"],
    )

    response = asyncio.run(receiver.invoke(EVENT))

    assert response.reject_upload
    (request,) = seen
    assert json.loads(request.content) == event_to_json(EVENT)
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Hook-Event-ID"] == EVENT.id
    assert verify("k", request.content, request.headers[SIGNATURE_HEADER])
    assert request.headers["Authorization"] == "Bearer t"
    assert "Cookie" not in request.headers


def test_http_receiver_retries_errors_with_the_same_event_id() -> None:
    answers = iter([httpx.Response(500), httpx.Response(502), httpx.Response(200, json={})])
    receiver, seen = http_receiver(lambda r: next(answers), retries=2, backoff=0.01)

    assert asyncio.run(receiver.invoke(EVENT)) == HookResponse()
    assert len(seen) == 3
    assert {r.headers["Hook-Event-ID"] for r in seen} == {EVENT.id}


def test_http_receiver_gives_up_after_its_retries() -> None:
    receiver, seen = http_receiver(lambda r: httpx.Response(503), retries=1, backoff=0.01)

    with pytest.raises(HookError, match="503"):
        asyncio.run(receiver.invoke(EVENT))
    assert len(seen) == 2


def test_http_receiver_unreachable_is_a_hook_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    receiver, seen = http_receiver(refuse, retries=1, backoff=0.01)

    with pytest.raises(HookError, match="unreachable"):
        asyncio.run(receiver.invoke(EVENT))
    assert len(seen) == 2


@pytest.mark.parametrize("content", [b"not json", b'{"StopUpload": 1}', b"[]"])
def test_http_receiver_nonsense_answer_is_not_retried(content: bytes) -> None:
    receiver, seen = http_receiver(lambda r: httpx.Response(200, content=content), retries=3, backoff=0.01)

    with pytest.raises(HookError, match="invalid"):
        asyncio.run(receiver.invoke(EVENT))
    assert len(seen) == 1


def test_http_receiver_empty_body_means_carry_on() -> None:
    receiver, _ = http_receiver(lambda r: httpx.Response(204))

    assert asyncio.run(receiver.invoke(EVENT)) == HookResponse()


def test_http_receiver_handles_only_enabled_events() -> None:
    receiver = HttpReceiver("http://hooks.test/", enabled=[HookType.POST_FINISH])

    assert receiver.handles(HookType.POST_FINISH)
    assert not receiver.handles(HookType.PRE_CREATE)


def script(directory: Path, name: str, text: str, executable: bool = True) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755 if executable else 0o644)


def test_command_receiver_passes_json_on_stdin_and_reads_stdout(tmp_path: Path) -> None:
    script(tmp_path, "pre-create", f'cat > "{tmp_path}/stdin.json"\necho \'{{"RejectUpload": true}}\'\n')

    response = asyncio.run(CommandReceiver(tmp_path).invoke(EVENT))

    assert response.reject_upload
    assert json.loads((tmp_path / "stdin.json").read_text()) == event_to_json(EVENT)


def test_command_receiver_handles_only_executables(tmp_path: Path) -> None:
    script(tmp_path, "pre-create", "echo '{}'\n")
    script(tmp_path, "post-finish", "echo '{}'\n", executable=False)
    receiver = CommandReceiver(tmp_path)

    assert receiver.handles(HookType.PRE_CREATE)
    assert not receiver.handles(HookType.POST_FINISH)
    assert not receiver.handles(HookType.PRE_TERMINATE)


@pytest.mark.parametrize(
    ("body", "message"),
    [("cat >/dev/null\nexit 2\n", "status 2"), ("cat >/dev/null\necho '{oops'\n", "invalid")],
)
def test_command_receiver_failures_are_hook_errors(tmp_path: Path, body: str, message: str) -> None:
    script(tmp_path, "pre-create", body)

    with pytest.raises(HookError, match=message):
        asyncio.run(CommandReceiver(tmp_path).invoke(EVENT))


def test_command_receiver_times_out(tmp_path: Path) -> None:
    script(tmp_path, "pre-create", "exec sleep 5\n")

    with pytest.raises(HookError, match="did not finish"):
        asyncio.run(CommandReceiver(tmp_path, timeout=0.2).invoke(EVENT))


def test_callable_receiver_wraps_exceptions_in_a_short_hook_error() -> None:
    async def broken(event: HookEvent) -> HookResponse:
        raise KeyError("secret detail")

    with pytest.raises(HookError) as raised:
        asyncio.run(CallableReceiver({"pre-create": broken}).invoke(EVENT))

    assert "secret detail" not in str(raised.value)
    assert "KeyError" in str(raised.value)


def test_callable_receiver_none_means_carry_on() -> None:
    async def quiet(event: HookEvent) -> None:
        return None

    receiver = CallableReceiver({HookType.PRE_CREATE: quiet})

    assert asyncio.run(receiver.invoke(EVENT)) == HookResponse()
    assert not receiver.handles(HookType.POST_CREATE)
