"""Media detection from the first bytes and duration measurement, on real encoded files."""

from __future__ import annotations

import os
import random
import re
import shutil
import struct
import zlib
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from media_factory import (
    AUDIO_FORMATS,
    VIDEO_FORMATS,
    make_audio,
    make_media,
    make_subtitles_only,
    make_video,
    truncate,
)

from tusd_py.assets import media
from tusd_py.assets.media import HEAD_BYTES, MediaType, MediaUnreadable, measure_duration, sniff, started_minutes

# The pattern the API schema gives `duration`.
SEED_DURATION = re.compile(r"^(?!^[-+.]*$)[+-]?0*\d*\.?\d*$")
TOLERANCE = Decimal("0.1")
SHORT = 2.7

EXPECTED: dict[str, MediaType] = {
    "mp3": MediaType("audio", "mp3", "audio/mpeg"),
    "wav": MediaType("audio", "wav", "audio/wav"),
    "flac": MediaType("audio", "flac", "audio/flac"),
    "ogg": MediaType("audio", "ogg", "audio/ogg"),
    "opus": MediaType("audio", "opus", "audio/ogg"),
    "m4a": MediaType("audio", "m4a", "audio/mp4"),
    "aac": MediaType("audio", "aac", "audio/aac"),
    "mp4": MediaType("video", "mp4", "video/mp4"),
    "mov": MediaType("video", "mov", "video/quicktime"),
    "webm": MediaType("video", "webm", "video/webm"),
    "mkv": MediaType("video", "mkv", "video/x-matroska"),
    "avi": MediaType("video", "avi", "video/x-msvideo"),
}
FORMATS = AUDIO_FORMATS + VIDEO_FORMATS


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("media")
    for fmt in FORMATS:
        make_media(directory / f"short.{fmt}", fmt, SHORT)
    return directory


def head_of(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(HEAD_BYTES)


def assert_close(measured: Decimal, seconds: float) -> None:
    assert abs(measured - Decimal(str(seconds))) <= TOLERANCE, f"measured {measured} s for {seconds} s of media"


# --- sniff -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_sniff_names_every_format_from_its_first_bytes(media_dir: Path, fmt: str) -> None:
    assert sniff(head_of(media_dir / f"short.{fmt}")) == EXPECTED[fmt]


def test_sniff_reads_an_mp3_without_id3_tag_from_its_frame_header(tmp_path: Path) -> None:
    path = make_audio(tmp_path / "bare.mp3", "mp3", SHORT, id3_tag=False)
    head = head_of(path)
    assert head[:3] != b"ID3"
    assert sniff(head) == EXPECTED["mp3"]


@pytest.mark.parametrize("brand", [b"M4A ", b"M4B ", b"M4P "])
def test_sniff_takes_the_itunes_audio_brands_as_m4a(media_dir: Path, brand: bytes) -> None:
    head = bytearray(head_of(media_dir / "short.m4a"))
    head[8:12] = brand
    assert sniff(bytes(head)) == EXPECTED["m4a"]


def test_sniff_takes_an_mp4_holding_only_audio_as_video(tmp_path: Path) -> None:
    # The container, not the tracks, decides: a generic MP4 brand is video/mp4.
    path = make_video(tmp_path / "silent.mp4", "mp4", SHORT, with_audio=False)
    assert sniff(head_of(path)) == EXPECTED["mp4"]


def test_sniff_ignores_everything_after_head_bytes(media_dir: Path) -> None:
    head = head_of(media_dir / "short.wav")
    assert sniff(head + os.urandom(10_000)) == sniff(head) == EXPECTED["wav"]
    assert sniff(b"\0" * HEAD_BYTES + head) is None


def _png() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def _ogg_page(first_packet: bytes) -> bytes:
    return b"OggS\x00\x02" + bytes(20) + b"\x01" + bytes([len(first_packet)]) + first_packet


NOT_MEDIA = {
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
    "png": _png(),
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",
    "zip": b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(20),
    "html": b"<!doctype html><html><head><title>x</title></head></html>",
    "text": b"just some words\n",
    "empty": b"",
    "heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
    "ogg-theora": _ogg_page(b"\x80theora" + bytes(34)),
    "riff-webp": b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(24),
}


@pytest.mark.parametrize("name", sorted(NOT_MEDIA))
def test_sniff_refuses_what_is_not_audio_or_video(name: str) -> None:
    assert sniff(NOT_MEDIA[name]) is None


def test_sniff_refuses_random_bytes() -> None:
    # Seeded: about 1 in 13000 random heads starts like an MP3 or ADTS frame header.
    assert sniff(random.Random(4).randbytes(HEAD_BYTES)) is None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2 * HEAD_BYTES))
def test_sniff_is_total_and_deterministic_on_any_bytes(data: bytes) -> None:
    result = sniff(data)
    assert result is None or result in EXPECTED.values()
    assert sniff(data) == result


@settings(max_examples=300, deadline=None)
@given(fmt=st.sampled_from(FORMATS), cut=st.integers(0, 600), flips=st.lists(st.integers(0, 599), max_size=4))
def test_sniff_survives_cut_and_corrupted_real_headers(media_dir: Path, fmt: str, cut: int, flips: list[int]) -> None:
    # Random bytes rarely reach the parsers' inner branches; damaged real headers do.
    head = bytearray(head_of(media_dir / f"short.{fmt}")[:cut])
    for position in flips:
        if position < len(head):
            head[position] ^= 0xA5
    result = sniff(bytes(head))
    assert result is None or result in EXPECTED.values()


# --- measure_duration -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_measure_duration_is_within_100ms_for_every_format(media_dir: Path, fmt: str) -> None:
    measured = measure_duration(media_dir / f"short.{fmt}")
    assert_close(measured, SHORT)


@pytest.mark.parametrize("fmt", FORMATS)
def test_duration_is_a_millisecond_decimal_matching_the_schema_pattern(media_dir: Path, fmt: str) -> None:
    measured = measure_duration(str(media_dir / f"short.{fmt}"))
    assert measured.as_tuple().exponent == -3
    assert SEED_DURATION.match(str(measured))


LONG = 61.3


@pytest.mark.parametrize(
    "fmt, seconds, options",
    [
        pytest.param("mp3", LONG, {}, id="vbr-mp3-with-xing-header"),
        # No frame count anywhere: FFmpeg's own estimate is 0.8 s off (the bitrate of the
        # silent start), so this passes only if the frames are walked.
        pytest.param("mp3", LONG, {"xing_header": False}, id="vbr-mp3-without-xing-header"),
        pytest.param("aac", LONG, {}, id="adts-aac"),
        pytest.param("webm", LONG, {}, id="webm"),
        # What a browser's MediaRecorder uploads: no Duration element at all.
        pytest.param("webm", LONG, {"header_duration": False}, id="webm-recorded-live"),
        pytest.param("mkv", SHORT, {"header_duration": False}, id="mkv-recorded-live"),
        pytest.param("mp4", SHORT, {"faststart": True}, id="faststart-mp4"),
    ],
)
def test_measure_duration_without_a_trustworthy_header(
    tmp_path: Path, fmt: str, seconds: float, options: dict[str, bool]
) -> None:
    path = tmp_path / f"media.{fmt}"
    if fmt in AUDIO_FORMATS:
        make_audio(path, fmt, seconds, **options)
    else:
        make_video(path, fmt, seconds, **options)  # type: ignore[arg-type]
    assert_close(measure_duration(path), seconds)


# --- unreadable -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["mp4", "mov", "m4a"])
def test_an_iso_file_cut_in_half_loses_its_index_and_is_unreadable(media_dir: Path, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"cut.{fmt}"
    shutil.copy(media_dir / f"short.{fmt}", path)
    truncate(path, 0.5)
    assert sniff(head_of(path)) == EXPECTED[fmt]  # still looks right from the first chunk
    with pytest.raises(MediaUnreadable):
        measure_duration(path)


@pytest.mark.parametrize("fraction", [0.9, 0.5])
def test_a_faststart_mp4_with_its_data_cut_is_unreadable(tmp_path: Path, fraction: float) -> None:
    # The index is intact, so only reading the packets shows the data is missing.
    path = make_video(tmp_path / "fast.mp4", "mp4", 20, faststart=True)
    truncate(path, fraction)
    with pytest.raises(MediaUnreadable, match="truncated"):
        measure_duration(path)


@pytest.mark.parametrize("fmt", ["flac", "mkv", "webm", "wav", "avi"])
def test_a_container_that_records_its_length_is_unreadable_when_cut(tmp_path: Path, fmt: str) -> None:
    path = make_media(tmp_path / f"cut.{fmt}", fmt, 20)
    truncate(path, 0.5)
    with pytest.raises(MediaUnreadable, match="truncated"):
        measure_duration(path)


def test_a_cut_mp3_is_a_shorter_mp3(tmp_path: Path) -> None:
    # MP3 is a stream of self-contained frames: what is left plays, and is what is billed.
    path = make_audio(tmp_path / "cut.mp3", "mp3", 20)
    truncate(path, 0.5)
    measured = measure_duration(path)
    assert Decimal(8) < measured < Decimal(12)


NOISE = bytes(range(256)) * 400


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(random.Random(4).randbytes(100_000), id="random"),
        pytest.param(b"", id="empty"),
        pytest.param(NOT_MEDIA["pdf"] * 100, id="pdf"),
        pytest.param(NOT_MEDIA["png"], id="png"),
        # Heads that pass sniff, bodies that are noise: the demuxer finds nothing to read.
        pytest.param(b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 400, id="id3-then-noise"),
        pytest.param(
            b"\x1aE\xdf\xa3\x9fB\x86\x81\x01B\x82\x88matroska" + bytes(range(256)) * 400, id="ebml-then-noise"
        ),
        pytest.param(
            b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isommp41" + bytes(range(256)) * 400, id="ftyp-then-noise"
        ),
    ],
)
def test_measure_duration_refuses_files_that_are_not_media(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "upload.bin"
    path.write_bytes(content)
    with pytest.raises(MediaUnreadable):
        measure_duration(path)


def test_a_container_without_audio_or_video_is_unreadable(tmp_path: Path) -> None:
    path = make_subtitles_only(tmp_path / "subtitles.mkv")
    assert sniff(head_of(path)) == EXPECTED["mkv"]
    with pytest.raises(MediaUnreadable, match="no audio or video"):
        measure_duration(path)


def test_a_missing_file_is_unreadable_without_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "secret-dir" / "gone.mp3"
    with pytest.raises(MediaUnreadable) as caught:
        measure_duration(path)
    assert "secret-dir" not in str(caught.value)


def test_demux_errors_do_not_leak_the_server_path(media_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "secret-dir" / "cut.mp4"
    path.parent.mkdir()
    shutil.copy(media_dir / "short.mp4", path)
    truncate(path, 0.5)
    with pytest.raises(MediaUnreadable) as caught:
        measure_duration(path)
    assert "secret-dir" not in str(caught.value)


def test_measuring_gives_up_past_the_packet_bound(media_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media, "MAX_PACKETS", 10)
    with pytest.raises(MediaUnreadable, match="packets"):
        measure_duration(media_dir / "short.mp3")


# --- started_minutes --------------------------------------------------------------------


@pytest.mark.parametrize(
    "duration, minutes",
    [("0", 0), ("0.000", 0), ("0.001", 1), ("59.999", 1), ("60", 1), ("60.000", 1), ("60.001", 2), ("61.3", 2)],
)
def test_started_minutes_counts_every_begun_minute(duration: str, minutes: int) -> None:
    assert started_minutes(Decimal(duration)) == minutes


def test_started_minutes_refuses_a_negative_duration() -> None:
    with pytest.raises(ValueError):
        started_minutes(Decimal("-1"))
