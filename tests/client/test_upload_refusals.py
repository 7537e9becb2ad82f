"""What `tusd-py upload` says when the server or the command line says no."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from upload_helpers import make_file, run_upload, state_entries

from tusd_py.cli import main

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import RunningServer


def test_a_file_over_max_size_is_refused_with_the_servers_reason(
    server_factory: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = server_factory("--max-size", "1M")
    file = tmp_path / "big.bin"
    make_file(file, 1024 * 1024 + 1)
    state_file = tmp_path / "uploads.json"
    done = run_upload(file, state_file, "--endpoint", server.endpoint, "--no-progress")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "tusd-py upload: error: 413 Request Entity Too Large: upload is larger than the maximum size of 1048576 bytes"
    ]
    assert state_entries(state_file) == []


def test_a_missing_file_is_an_error_not_a_traceback(server: RunningServer, tmp_path: Path) -> None:
    done = run_upload(tmp_path / "absent.bin", tmp_path / "uploads.json", "--endpoint", server.endpoint)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"tusd-py upload: error: {tmp_path / 'absent.bin'}: not a readable file"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--endpoint", "http://127.0.0.1:1/files/", "--chunk-size", "0"), "must be at least 1 byte"),
        (("--endpoint", "http://127.0.0.1:1/files/", "--chunk-size", "8Q"), "not a size"),
        (("--endpoint", "ftp://example/files/"), "not an http(s) URL"),
        (("--endpoint", "http://127.0.0.1:1/files/", "--metadata", "no-equals"), "expected key=value"),
        (("--endpoint", "http://127.0.0.1:1/files/", "--metadata", "a b=c"), "expected key=value"),
        (("--endpoint", "http://127.0.0.1:1/files/", "--api-key", "sk_x"), "--api-key and --project go together"),
        ((), "--endpoint is required"),
        (("--api-url", "http://127.0.0.1:1", "--api-key", "k", "--project", "p", "--metadata", "a=b"), "takes none"),
        (("--endpoint", "http://127.0.0.1:1/files/", "--language", "en"), "--language is for assets"),
    ],
)
def test_bad_arguments_are_usage_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    message: str,
) -> None:
    monkeypatch.delenv("TUSD_API_KEY", raising=False)
    file = tmp_path / "a.txt"
    file.write_text("a")
    try:
        code = main(["upload", str(file), "--state-file", str(tmp_path / "uploads.json"), *args])
    except SystemExit as exit:
        code = exit.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "uploads.json").exists()
