"""Draft uploads share tus' store, locks and hooks, and neither protocol reinterprets the
other's uploads: each refuses them clearly. The asset platform (`tusd-py serve`'s
default) hooks the same layer and refuses a draft creation it cannot make an asset of."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from assets_helpers import start_platform
from conftest import serve_app
from draft_client import DraftClient, wait_for

from tusd_py.app import create_app
from tusd_py.hooks import FileInfoChanges, HookEvent, HookResponse, Hooks, HookType, HTTPResponse

if TYPE_CHECKING:
    from tests.conftest import RunningServer

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}


def test_a_draft_upload_fires_the_hooks_of_a_tus_upload(tmp_path: Path) -> None:
    events: list[HookEvent] = []

    async def record(event: HookEvent) -> None:
        events.append(event)

    names = ["pre-create", "post-create", "post-receive", "pre-finish", "post-finish", "pre-terminate"]
    hooks = {name: record for name in [*names, "post-terminate"]}
    with serve_app(create_app(tmp_path, hooks=hooks)) as origin:
        client = DraftClient(origin)
        created = client.create("/", b"abc", complete=False, length=6, content_type="audio/ogg")
        client.append(created.location, 3, b"def", complete=True)
        cancelled = client.create("/", b"x", complete=False)
        assert client.cancel(cancelled.location).status == 204

        def seen(kind: str, upload_id: str) -> list[HookEvent]:
            return [e for e in events if e.type.value == kind and e.upload.id in ("", upload_id)]

        finished_id = created.location.rsplit("/", 1)[-1]
        cancelled_id = cancelled.location.rsplit("/", 1)[-1]
        wait_for(lambda: seen("post-finish", finished_id) and seen("post-terminate", cancelled_id))

    (pre_create, *_) = [e for e in events if e.type is HookType.PRE_CREATE]
    assert pre_create.upload.size == 6
    assert pre_create.upload.metadata == {"filetype": "audio/ogg"}
    assert pre_create.request.method == "POST"
    for kind in ("post-create", "post-receive", "pre-finish", "post-finish"):
        assert seen(kind, finished_id), kind
    (finish,) = seen("post-finish", finished_id)
    assert (finish.upload.offset, finish.upload.size) == (6, 6)
    assert seen("pre-terminate", cancelled_id)
    assert not seen("post-finish", cancelled_id)


def test_a_pre_create_hook_shapes_and_refuses_draft_uploads(tmp_path: Path) -> None:
    async def pre_create(event: HookEvent) -> HookResponse:
        if event.upload.metadata.get("filename") == "refused.exe":
            body = json.dumps({"error": "no executables"})
            return HookResponse(
                reject_upload=True,
                http_response=HTTPResponse(422, body, {"Content-Type": "application/json"}),
            )
        if event.upload.metadata.get("filename") == "quiet.exe":
            return HookResponse(reject_upload=True, http_response=HTTPResponse(403, "not here"))
        return HookResponse(
            change_file_info=FileInfoChanges(id="chosen-id"), http_response=HTTPResponse(header={"X-Asset": "1"})
        )

    with serve_app(create_app(tmp_path, hooks={"pre-create": pre_create})) as origin:
        client = DraftClient(origin)
        refused = client.create("/", b"MZ", complete=True, content_disposition='attachment; filename="refused.exe"')
        quiet = client.create("/", b"MZ", complete=True, content_disposition="attachment; filename=quiet.exe")
        chosen = client.create("/", b"ok", complete=True)

    assert refused.status == 422
    assert refused.header("content-type") == "application/json"
    assert json.loads(refused.body) == {"error": "no executables"}
    assert quiet.status == 403
    assert quiet.problem()["detail"] == "not here"
    assert chosen.location == origin + "/chosen-id"
    assert chosen.header("x-asset") == "1"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["chosen-id", "chosen-id.info"]


def test_a_pre_finish_refusal_says_the_upload_is_complete(tmp_path: Path) -> None:
    async def pre_finish(event: HookEvent) -> HookResponse:
        return HookResponse(http_response=HTTPResponse(status_code=409, body="duplicate file"))

    hooks = Hooks.from_callables({"pre-finish": pre_finish})
    with serve_app(create_app(tmp_path, hooks=hooks)) as origin:
        client = DraftClient(origin)
        created = client.create("/", b"abc", complete=False)
        refused = client.append(created.location, 3, b"d", complete=True)

    assert refused.status == 409
    # Not a mismatching offset: every byte is in, processing the upload failed.
    assert refused.complete is True
    assert refused.problem()["detail"] == "duplicate file"


# -- neither protocol reinterprets the other's uploads ------------------------------------------------


def test_tus_requests_on_a_draft_upload_are_refused(tmp_path: Path) -> None:
    with serve_app(create_app(tmp_path)) as origin:
        url = DraftClient(origin).create("/", b"abc", complete=False, length=6).location
        with httpx.Client(timeout=10) as tus:
            head = tus.head(url, headers=TUS)
            patch = tus.patch(url, headers={**TUS, **OCTET, "Upload-Offset": "3"}, content=b"def")
            delete = tus.delete(url, headers=TUS)
            neither = tus.head(url)
        state = DraftClient(origin).retrieve_offset(url)

    for response in (head, patch, delete):
        assert response.status_code == 400
        assert response.headers["Tus-Resumable"] == "1.0.0"
    assert "created with the resumable uploads draft" in patch.text
    assert "cannot be used with tus 1.0" in patch.text
    # A request with neither protocol's field keeps tus' answer.
    assert neither.status_code == 412
    assert (state.offset, state.complete) == (3, False)


def test_draft_requests_on_a_tus_upload_are_refused(tmp_path: Path) -> None:
    with serve_app(create_app(tmp_path)) as origin:
        url = httpx.post(origin + "/", headers={**TUS, "Upload-Length": "6"}, timeout=10).headers["Location"]
        client = DraftClient(origin)
        head = client.retrieve_offset(url)
        append = client.append(url, 0, b"abcdef", complete=True)
        cancel = client.cancel(url)
        tus_state = httpx.head(url, headers=TUS, timeout=10)

    for response in (head, append, cancel):
        assert response.status == 400
        assert response.header("upload-draft-interop-version") == "8"
    for response in (append, cancel):
        assert "created with tus 1.0" in str(response.problem()["detail"])
    assert tus_state.headers["Upload-Offset"] == "0"


def test_a_final_tus_upload_cannot_take_a_draft_upload_as_a_partial(tmp_path: Path) -> None:
    with serve_app(create_app(tmp_path)) as origin:
        url = DraftClient(origin).create("/", b"abc", complete=True).location
        final = httpx.post(origin + "/", headers={**TUS, "Upload-Concat": f"final;{url}"}, timeout=10)

    assert final.status_code == 400
    assert "not a partial upload" in final.text


def test_tus_and_draft_uploads_side_by_side(tmp_path: Path) -> None:
    with serve_app(create_app(tmp_path)) as origin, httpx.Client(timeout=10) as tus:
        client = DraftClient(origin)
        tus_url = tus.post(origin + "/", headers={**TUS, "Upload-Length": "6"}).headers["Location"]
        draft_url = client.create("/", b"abc", complete=False, length=6).location
        tus.patch(tus_url, headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=b"tus-up")
        client.append(draft_url, 3, b"def", complete=True)
        options = tus.options(origin + "/", headers=TUS)

        assert tus.get(tus_url).content == b"tus-up"
        assert client.request("GET", draft_url).body == b"abcdef"
        assert tus.head(tus_url, headers=TUS).headers["Upload-Offset"] == "6"
    assert options.headers["Tus-Version"] == "1.0.0"
    assert "Accept-Patch" not in options.headers


# -- the asset platform ------------------------------------------------------------------------------------


def test_the_asset_platform_refuses_a_draft_creation_it_cannot_make_an_asset_of(
    server_factory: Callable[..., RunningServer], tmp_path: Path
) -> None:
    platform = start_platform(server_factory, tmp_path / "data", price=1, balance=0)
    client = DraftClient(platform.server.origin)
    endpoint = platform.server.endpoint

    anonymous = client.create(endpoint, b"x", complete=True)
    keyed = client.create(endpoint, b"x", complete=True, authorization=platform.auth["Authorization"])
    asset = platform.create_asset(size=3)
    on_a_tus_asset = client.append(asset["upload_url"], 0, b"abc", complete=True)

    assert anonymous.status == 401
    assert json.loads(anonymous.body)["error"]["code"] == "unauthorized"
    assert keyed.status == 422
    assert "project_id is required" in json.loads(keyed.body)["error"]["message"]
    assert on_a_tus_asset.status == 400
    assert "created with tus 1.0" in str(on_a_tus_asset.problem()["detail"])
    assert platform.asset(asset["id"])["state"] == "pending_upload"
