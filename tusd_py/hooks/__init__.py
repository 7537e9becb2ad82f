"""Hooks: in-process callables, tusd-compatible HTTP webhooks and command hooks."""

from .dispatcher import HookFailed, Hooks
from .events import (
    FileInfoChanges,
    HookEvent,
    HookResponse,
    HookType,
    HTTPResponse,
    RequestSnapshot,
    UploadSnapshot,
    event_from_json,
    event_to_json,
    response_from_json,
    response_to_json,
)
from .outbox import Outbox
from .receivers import CallableReceiver, CommandReceiver, HookError, HookReceiver, HookTimeout, HttpReceiver
from .signing import SIGNATURE_HEADER, sign, verify

__all__ = [
    "SIGNATURE_HEADER",
    "CallableReceiver",
    "CommandReceiver",
    "FileInfoChanges",
    "HTTPResponse",
    "HookError",
    "HookEvent",
    "HookFailed",
    "HookReceiver",
    "HookResponse",
    "HookTimeout",
    "HookType",
    "Hooks",
    "HttpReceiver",
    "Outbox",
    "RequestSnapshot",
    "UploadSnapshot",
    "event_from_json",
    "event_to_json",
    "response_from_json",
    "response_to_json",
    "sign",
    "verify",
]
