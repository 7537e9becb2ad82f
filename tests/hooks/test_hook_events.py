"""The event model: tusd v2's JSON shape and an exact round trip through JSON."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tusd_py.hooks import (
    HookEvent,
    HookType,
    RequestSnapshot,
    UploadSnapshot,
    event_from_json,
    event_to_json,
)
from tusd_py.hooks.events import TUSD_HOOKS

text = st.text(max_size=20)
names = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)
upload_ids = st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True)

uploads = st.builds(
    UploadSnapshot,
    id=upload_ids,
    size=st.none() | st.integers(min_value=0, max_value=2**53),
    offset=st.integers(min_value=0, max_value=2**53),
    metadata=st.dictionaries(names, text, max_size=4),
    size_is_deferred=st.booleans(),
    is_partial=st.booleans(),
    is_final=st.booleans(),
    partial_uploads=st.lists(upload_ids, max_size=3).map(tuple),
    storage=st.dictionaries(names, text, max_size=3),
)
requests = st.builds(
    RequestSnapshot,
    method=st.sampled_from(["POST", "PATCH", "DELETE", "HEAD"]),
    uri=text,
    remote_addr=text,
    header=st.dictionaries(names, st.lists(text, min_size=1, max_size=3).map(tuple), max_size=4),
)
events = st.builds(
    HookEvent,
    type=st.sampled_from(list(HookType)),
    upload=uploads,
    request=requests,
    id=st.uuids().map(lambda u: u.hex),
    time=st.floats(min_value=0, max_value=4e9, allow_nan=False),
)


@given(events)
def test_event_survives_a_trip_through_json_text(event: HookEvent) -> None:
    wire = json.dumps(event_to_json(event))

    assert event_from_json(json.loads(wire)) == event


@given(events)
def test_event_json_has_exactly_tusd_v2_fields(event: HookEvent) -> None:
    data = event_to_json(event)

    assert data["Type"] == event.type.value
    # first-bytes, our own event, also carries the leading bytes.
    extra = {"Bytes"} if event.type is HookType.FIRST_BYTES else set()
    assert set(data["Event"]) == {"Upload", "HTTPRequest"} | extra
    assert set(data["Event"]["Upload"]) == {
        "ID",
        "Size",
        "SizeIsDeferred",
        "Offset",
        "MetaData",
        "IsPartial",
        "IsFinal",
        "PartialUploads",
        "Storage",
    }
    assert set(data["Event"]["HTTPRequest"]) == {"Method", "URI", "RemoteAddr", "Header"}
    assert all(isinstance(v, list) for v in data["Event"]["HTTPRequest"]["Header"].values())
    assert data["ID"] == event.id


def test_metadata_key_without_value_is_an_empty_string_as_in_tusd() -> None:
    event = HookEvent(
        HookType.POST_CREATE,
        UploadSnapshot(id="a", size=1, offset=0, metadata={"flag": None, "name": "x"}),
        RequestSnapshot("POST", "/files/", "127.0.0.1:1"),
    )

    data = event_to_json(event)

    assert data["Event"]["Upload"]["MetaData"] == {"flag": "", "name": "x"}
    assert data["Event"]["Upload"]["PartialUploads"] is None
    assert data["Event"]["Upload"]["Storage"] is None


def test_every_event_gets_its_own_id() -> None:
    upload = UploadSnapshot(id="a", size=1, offset=0, metadata={})
    request = RequestSnapshot("POST", "/files/", "")

    ids = {HookEvent(HookType.POST_RECEIVE, upload, request).id for _ in range(100)}

    assert len(ids) == 100


def test_pre_events_and_first_bytes_block() -> None:
    blocking = {"pre-create", "pre-finish", "pre-terminate", "first-bytes"}
    assert {t.value for t in HookType if t.is_blocking} == blocking
    assert {t.value for t in TUSD_HOOKS} == {
        "pre-create",
        "post-create",
        "post-receive",
        "pre-finish",
        "post-finish",
        "pre-terminate",
        "post-terminate",
    }
    assert set(HookType) == {*TUSD_HOOKS, HookType.FIRST_BYTES}
