"""The resume store of `tusd-py upload`: file fingerprints and the JSON file they key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tusd_py.client.state import EDGE, Entry, UploadState, default_state_path, fingerprint

TARGET = '["http://127.0.0.1:1080/files/", null]'


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(3 * EDGE + 100))
    return path


def _rewrite_keeping_mtime(path: Path, offset: int) -> None:
    before = path.stat()
    with path.open("r+b") as file:
        file.seek(offset)
        byte = file.read(1)
        file.seek(offset)
        file.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_fingerprint_is_stable_for_an_unchanged_file(big_file: Path) -> None:
    assert fingerprint(big_file, TARGET) == fingerprint(big_file, TARGET)


@pytest.mark.parametrize("offset", [0, EDGE - 1, -1], ids=["first byte", "end of first 64 KiB", "last byte"])
def test_an_edit_at_either_end_changes_the_fingerprint_even_with_size_and_mtime_kept(
    big_file: Path, offset: int
) -> None:
    before = fingerprint(big_file, TARGET)
    _rewrite_keeping_mtime(big_file, offset % big_file.stat().st_size)
    assert fingerprint(big_file, TARGET) != before


def test_mtime_path_and_target_are_part_of_the_fingerprint(big_file: Path, tmp_path: Path) -> None:
    before = fingerprint(big_file, TARGET)
    assert fingerprint(big_file, '["http://elsewhere/files/", null]') != before
    copy = tmp_path / "copy.bin"
    copy.write_bytes(big_file.read_bytes())
    os.utime(copy, ns=(big_file.stat().st_atime_ns, big_file.stat().st_mtime_ns))
    assert fingerprint(copy, TARGET) != before
    os.utime(big_file, ns=(0, big_file.stat().st_mtime_ns + 1_000_000_000))
    assert fingerprint(big_file, TARGET) != before


def test_a_small_file_is_fingerprinted_whole(tmp_path: Path) -> None:
    path = tmp_path / "small.txt"
    path.write_bytes(b"hello")
    before = fingerprint(path, TARGET)
    _rewrite_keeping_mtime(path, 2)
    assert fingerprint(path, TARGET) != before


def test_the_store_round_trips_and_forgets(tmp_path: Path) -> None:
    store = UploadState(tmp_path / "nested" / "uploads.json")
    assert store.get("k") is None
    store.put("k", Entry("/data/a.mp3", 10, "http://h/files/abc", "abc"))
    store.put("other", Entry("/data/b.bin", 20, "http://h/files/def"))
    entry = store.get("k")
    assert entry is not None
    assert (entry.file, entry.size, entry.upload_url, entry.asset_id) == (
        "/data/a.mp3",
        10,
        "http://h/files/abc",
        "abc",
    )
    assert entry.created_at > 0
    store.remove("k")
    assert store.get("k") is None
    assert store.get("other") is not None


def test_the_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    # Upload URLs are capabilities: whoever has one may PATCH the upload.
    path = tmp_path / "uploads.json"
    UploadState(path).put("k", Entry("/a", 1, "http://h/files/abc"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["uploads.json"]


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]", '{"uploads": {"k": "nonsense"}}', '{"uploads": 5}'])
def test_a_damaged_store_reads_as_empty_and_is_replaced(tmp_path: Path, text: str) -> None:
    path = tmp_path / "uploads.json"
    path.write_text(text)
    store = UploadState(path)
    assert store.get("k") is None
    store.put("k", Entry("/a", 1, "http://h/files/abc"))
    assert store.get("k") is not None


def test_default_path_follows_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_state_path() == tmp_path / "tusd-py" / "uploads.json"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_path() == tmp_path / "home" / ".cache" / "tusd-py" / "uploads.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_state_path() == tmp_path / "home" / ".cache" / "tusd-py" / "uploads.json"
