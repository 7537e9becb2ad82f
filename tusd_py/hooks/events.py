"""The hook event model, in tusd v2's JSON shape, as pure data and pure conversions.

A receiver written for tusd gets the same request body (`Type`, `Event.Upload`,
`Event.HTTPRequest`) and may answer with the same response (`HTTPResponse`,
`RejectUpload`, `RejectTermination`, `ChangeFileInfo`, `StopUpload`).
"""

from __future__ import annotations

import base64
import enum
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class HookType(enum.StrEnum):
    PRE_CREATE = "pre-create"
    POST_CREATE = "post-create"
    POST_RECEIVE = "post-receive"
    PRE_FINISH = "pre-finish"
    POST_FINISH = "post-finish"
    PRE_TERMINATE = "pre-terminate"
    POST_TERMINATE = "post-terminate"
    # Ours, not tusd's: the leading bytes of an upload, for judging its content early.
    FIRST_BYTES = "first-bytes"

    @property
    def is_blocking(self) -> bool:
        return self.value.startswith("pre-") or self is HookType.FIRST_BYTES


ALL_HOOKS = tuple(HookType)
# The events a receiver written for tusd knows; HTTP receivers get these by default.
TUSD_HOOKS = tuple(t for t in HookType if t is not HookType.FIRST_BYTES)


class HookResponseError(ValueError):
    """A hook answered with something that is not a valid hook response."""


@dataclass(frozen=True)
class UploadSnapshot:
    """An upload as a hook sees it (tusd's FileInfo)."""

    id: str
    size: int | None
    offset: int
    metadata: Mapping[str, str | None]
    size_is_deferred: bool = False
    is_partial: bool = False
    is_final: bool = False
    partial_uploads: tuple[str, ...] = ()
    storage: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestSnapshot:
    """The HTTP request that caused the event. Header values are lists, as in tusd."""

    method: str
    uri: str
    remote_addr: str
    header: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class HookEvent:
    type: HookType
    upload: UploadSnapshot
    request: RequestSnapshot
    # Unique per event, so at-least-once delivery can be de-duplicated by the receiver.
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: float = field(default_factory=time.time)
    # first-bytes only: the upload's leading bytes.
    head: bytes = b""


@dataclass(frozen=True)
class HTTPResponse:
    """What a hook wants the client to receive: status, body, headers (each optional)."""

    status_code: int | None = None
    body: str | None = None
    header: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FileInfoChanges:
    """pre-create changes: a new upload id and/or replacement metadata."""

    id: str | None = None
    metadata: Mapping[str, str | None] | None = None


@dataclass(frozen=True)
class HookResponse:
    http_response: HTTPResponse = field(default_factory=HTTPResponse)
    reject_upload: bool = False
    reject_termination: bool = False
    change_file_info: FileInfoChanges = field(default_factory=FileInfoChanges)
    stop_upload: bool = False


def event_to_json(event: HookEvent) -> dict[str, Any]:
    data = _event_to_json(event)
    if event.type is HookType.FIRST_BYTES:
        data["Event"]["Bytes"] = base64.b64encode(event.head).decode("ascii")
    return data


def _event_to_json(event: HookEvent) -> dict[str, Any]:
    upload = event.upload
    return {
        "Type": str(event.type),
        "ID": event.id,
        "Time": event.time,
        "Event": {
            "Upload": {
                "ID": upload.id,
                "Size": upload.size,
                "SizeIsDeferred": upload.size_is_deferred,
                "Offset": upload.offset,
                # tusd has no null values in MetaData; a key without value is "".
                "MetaData": {k: v if v is not None else "" for k, v in upload.metadata.items()},
                "IsPartial": upload.is_partial,
                "IsFinal": upload.is_final,
                "PartialUploads": list(upload.partial_uploads) if upload.partial_uploads else None,
                "Storage": dict(upload.storage) if upload.storage else None,
            },
            "HTTPRequest": {
                "Method": event.request.method,
                "URI": event.request.uri,
                "RemoteAddr": event.request.remote_addr,
                "Header": {k: list(v) for k, v in event.request.header.items()},
            },
        },
    }


def event_from_json(data: Mapping[str, Any]) -> HookEvent:
    """The inverse of event_to_json, for the outbox and for receivers written in Python."""
    upload = data["Event"]["Upload"]
    request = data["Event"]["HTTPRequest"]
    return HookEvent(
        type=HookType(data["Type"]),
        upload=UploadSnapshot(
            id=upload["ID"],
            size=upload["Size"],
            offset=upload["Offset"],
            metadata=dict(upload["MetaData"]),
            size_is_deferred=upload["SizeIsDeferred"],
            is_partial=upload["IsPartial"],
            is_final=upload["IsFinal"],
            partial_uploads=tuple(upload["PartialUploads"] or ()),
            storage=dict(upload["Storage"] or {}),
        ),
        request=RequestSnapshot(
            method=request["Method"],
            uri=request["URI"],
            remote_addr=request["RemoteAddr"],
            header={k: tuple(v) for k, v in request["Header"].items()},
        ),
        id=data["ID"],
        time=data["Time"],
        head=base64.b64decode(data["Event"].get("Bytes") or ""),
    )


def _string_map(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise HookResponseError(f"{name} must be an object of strings")
    return dict(value)


def _flag(data: Mapping[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise HookResponseError(f"{name} must be true or false")
    return value


def response_from_json(data: Any) -> HookResponse:
    """Validate a hook's answer; an empty body or `{}` means 'carry on'."""
    if data is None:
        return HookResponse()
    if not isinstance(data, dict):
        raise HookResponseError("a hook response must be a JSON object")
    raw_http = data.get("HTTPResponse") or {}
    if not isinstance(raw_http, dict):
        raise HookResponseError("HTTPResponse must be an object")
    status = raw_http.get("StatusCode") or None
    if status is not None and (not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599):
        raise HookResponseError("HTTPResponse.StatusCode must be an HTTP status code")
    body = raw_http.get("Body")
    if body is not None and not isinstance(body, str):
        raise HookResponseError("HTTPResponse.Body must be a string")
    raw_changes = data.get("ChangeFileInfo") or {}
    if not isinstance(raw_changes, dict):
        raise HookResponseError("ChangeFileInfo must be an object")
    new_id = raw_changes.get("ID") or None
    if new_id is not None and not isinstance(new_id, str):
        raise HookResponseError("ChangeFileInfo.ID must be a string")
    metadata = raw_changes.get("MetaData")
    return HookResponse(
        http_response=HTTPResponse(status, body, _string_map(raw_http.get("Header"), "HTTPResponse.Header")),
        reject_upload=_flag(data, "RejectUpload"),
        reject_termination=_flag(data, "RejectTermination"),
        change_file_info=FileInfoChanges(
            new_id, None if metadata is None else _string_map(metadata, "ChangeFileInfo.MetaData")
        ),
        stop_upload=_flag(data, "StopUpload"),
    )


def response_to_json(response: HookResponse) -> dict[str, Any]:
    """A receiver's answer as JSON (for receivers and command hooks written in Python)."""
    http = response.http_response
    result: dict[str, Any] = {}
    if http.status_code or http.body is not None or http.header:
        result["HTTPResponse"] = {"StatusCode": http.status_code, "Body": http.body, "Header": dict(http.header)}
    for name, flag in (
        ("RejectUpload", response.reject_upload),
        ("RejectTermination", response.reject_termination),
        ("StopUpload", response.stop_upload),
    ):
        if flag:
            result[name] = True
    changes = response.change_file_info
    if changes.id is not None or changes.metadata is not None:
        result["ChangeFileInfo"] = {
            "ID": changes.id,
            "MetaData": None if changes.metadata is None else dict(changes.metadata),
        }
    return result
