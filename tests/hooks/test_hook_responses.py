"""A hook's answer: valid tusd shapes parse, anything else is a HookResponseError only."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tusd_py.hooks import FileInfoChanges, HookResponse, HTTPResponse, response_from_json, response_to_json
from tusd_py.hooks.events import HookResponseError

strings = st.text(max_size=10)
responses = st.builds(
    HookResponse,
    http_response=st.builds(
        HTTPResponse,
        status_code=st.none() | st.integers(min_value=100, max_value=599),
        body=st.none() | strings,
        header=st.dictionaries(strings, strings, max_size=3),
    ),
    reject_upload=st.booleans(),
    reject_termination=st.booleans(),
    change_file_info=st.builds(
        FileInfoChanges,
        id=st.none() | st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True),
        metadata=st.none() | st.dictionaries(strings, strings, max_size=3),
    ),
    stop_upload=st.booleans(),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | strings,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(strings, children, max_size=3),
    max_leaves=10,
)
keys = st.sampled_from(
    ["HTTPResponse", "RejectUpload", "RejectTermination", "ChangeFileInfo", "StopUpload", "StatusCode", "Body"]
)
shaped = st.recursive(
    json_values,
    lambda children: st.dictionaries(keys | strings, children, max_size=4),
    max_leaves=12,
)


@given(responses)
def test_response_survives_a_trip_through_json_text(response: HookResponse) -> None:
    assert response_from_json(json.loads(json.dumps(response_to_json(response)))) == response


@given(shaped)
def test_any_json_is_a_response_or_a_hook_response_error(data: Any) -> None:
    try:
        result = response_from_json(data)
    except HookResponseError:
        return
    assert isinstance(result, HookResponse)


@pytest.mark.parametrize("empty", [None, {}, {"HTTPResponse": None, "ChangeFileInfo": None, "StopUpload": None}])
def test_empty_answers_mean_carry_on(empty: Any) -> None:
    assert response_from_json(empty) == HookResponse()


def test_full_tusd_answer_is_understood() -> None:
    response = response_from_json(
        {
            "HTTPResponse": {"StatusCode": 403, "Body": "no", "Header": {"X-A": "b"}},
            "RejectUpload": True,
            "ChangeFileInfo": {"ID": "new-id", "MetaData": {"k": "v"}},
            "StopUpload": True,
            "RejectTermination": True,
        }
    )

    assert response.http_response == HTTPResponse(403, "no", {"X-A": "b"})
    assert response.reject_upload and response.stop_upload and response.reject_termination
    assert response.change_file_info == FileInfoChanges("new-id", {"k": "v"})


@pytest.mark.parametrize(
    "bad",
    [
        [],
        "RejectUpload",
        5,
        {"RejectUpload": "true"},
        {"RejectUpload": 1},
        {"StopUpload": "yes"},
        {"RejectTermination": []},
        {"HTTPResponse": "403"},
        {"HTTPResponse": {"StatusCode": "403"}},
        {"HTTPResponse": {"StatusCode": 403.0}},
        {"HTTPResponse": {"StatusCode": True}},
        {"HTTPResponse": {"StatusCode": 99}},
        {"HTTPResponse": {"StatusCode": 600}},
        {"HTTPResponse": {"Body": 5}},
        {"HTTPResponse": {"Header": ["X-A"]}},
        {"HTTPResponse": {"Header": {"X-A": 1}}},
        {"ChangeFileInfo": "new-id"},
        {"ChangeFileInfo": {"ID": 7}},
        {"ChangeFileInfo": {"MetaData": ["k"]}},
        {"ChangeFileInfo": {"MetaData": {"k": None}}},
    ],
)
def test_bad_shapes_raise_hook_response_error(bad: Any) -> None:
    with pytest.raises(HookResponseError):
        response_from_json(bad)
