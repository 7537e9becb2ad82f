"""Upload ids: generated ones are valid and unique, malformed ones are 404."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tusd_py.protocol import TusError, check_upload_id, is_valid_upload_id, new_upload_id


def test_new_ids_are_32_hex_valid_and_unique() -> None:
    ids = [new_upload_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for upload_id in ids:
        assert re.fullmatch(r"[0-9a-f]{32}", upload_id)
        assert check_upload_id(upload_id) == upload_id


@pytest.mark.parametrize("upload_id", ["a", "A-b_9", "x" * 128])
def test_well_formed_ids_pass(upload_id: str) -> None:
    assert check_upload_id(upload_id) == upload_id


@pytest.mark.parametrize(
    "upload_id",
    [
        "",
        "..",
        ".",
        "../../etc/passwd",
        "..%2F..",
        "%2e%2e",
        "a/b",
        "a\\b",
        "a.info",
        "abc\n",
        "abc\x00",
        " abc",
        "x" * 129,
        "\uff41\uff42\uff43",  # fullwidth letters
        "é",
    ],
)
def test_malformed_ids_are_404(upload_id: str) -> None:
    assert not is_valid_upload_id(upload_id)
    with pytest.raises(TusError) as caught:
        check_upload_id(upload_id)
    assert caught.value.status == 404


@given(st.text())
def test_check_raises_only_tus_error_and_passes_only_safe_names(text: str) -> None:
    try:
        checked = check_upload_id(text)
    except TusError as error:
        assert error.status == 404
    else:
        assert checked == text
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,128}", checked, flags=re.ASCII)
