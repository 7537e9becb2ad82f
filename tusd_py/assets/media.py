"""What an uploaded file is (from its first bytes) and how long it plays (from the whole file).

`sniff` is pure and sans-I/O: the asset layer calls it on the first chunk of an upload, so
a file that is not audio or video is refused before the rest of it is stored. It leans on
`filetype` (a pure-Python signature matcher) for the container signatures and only adds
what that library cannot tell apart: Opus from Vorbis inside Ogg, and the audio-only MP4
brands (M4A/M4B/M4P).

`measure_duration` demuxes the stored file with PyAV (FFmpeg's demuxers, no decoding).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final, Literal

import av
import av.error
import filetype  # type: ignore[import-untyped]
from av.container import InputContainer
from av.stream import Stream

__all__ = [
    "HEAD_BYTES",
    "MediaType",
    "MediaUnreadable",
    "measure_duration",
    "sniff",
    "started_minutes",
]

# Every signature `sniff` reads lies in the first few hundred bytes: the ISO BMFF `ftyp`
# box (16 bytes + 4 per compatible brand; filetype needs the whole box), Matroska's EBML
# header with its DocType (~40 bytes), an Ogg first page's segment table and codec header
# (at most 27 + 255 + 8 bytes), RIFF/fLaC/ID3/ADTS tags (12 bytes). 4 KiB covers them with
# room for unusually long brand lists and padding, and is far below any real first chunk.
HEAD_BYTES: Final = 4096


@dataclass(frozen=True)
class MediaType:
    kind: Literal["audio", "video"]
    extension: str
    mime_type: str


# The names the API reports. MIME types follow the common registrations (MDN's table of
# common types, RFC 9639 for FLAC); Ogg Opus is audio/ogg as RFC 7845 section 9 asks
# (audio/opus names the RTP payload), with the extension saying which codec it holds.
MP3: Final = MediaType("audio", "mp3", "audio/mpeg")
WAV: Final = MediaType("audio", "wav", "audio/wav")
FLAC: Final = MediaType("audio", "flac", "audio/flac")
OGG: Final = MediaType("audio", "ogg", "audio/ogg")
OPUS: Final = MediaType("audio", "opus", "audio/ogg")
M4A: Final = MediaType("audio", "m4a", "audio/mp4")
AAC: Final = MediaType("audio", "aac", "audio/aac")
MP4: Final = MediaType("video", "mp4", "video/mp4")
MOV: Final = MediaType("video", "mov", "video/quicktime")
WEBM: Final = MediaType("video", "webm", "video/webm")
MKV: Final = MediaType("video", "mkv", "video/x-matroska")
AVI: Final = MediaType("video", "avi", "video/x-msvideo")

# filetype's answer (its extension) -> ours. The order is the matching precedence: brand
# specific ISO BMFF matchers before the generic MP4 one, WebM before Matroska.
_BY_FILETYPE: Final[dict[str, MediaType]] = {
    "mov": MOV,
    "mp4": MP4,
    "webm": WEBM,
    "mkv": MKV,
    "avi": AVI,
    "wav": WAV,
    "flac": FLAC,
    "ogg": OGG,
    "aac": AAC,
    "mp3": MP3,
}
_MATCHERS: Final[tuple[Any, ...]] = tuple(filetype.get_type(ext=ext) for ext in _BY_FILETYPE)

# iTunes audio brands (plain, audiobook, protected); the generic MP4 matcher would call
# these video.
_AUDIO_ONLY_BRANDS: Final = frozenset({b"M4A ", b"M4B ", b"M4P "})

# First bytes of the first packet of an Ogg stream, per codec that is audio.
_OGG_AUDIO_CODECS: Final[tuple[tuple[bytes, MediaType], ...]] = (
    (b"OpusHead", OPUS),
    (b"\x01vorbis", OGG),
    (b"\x7fFLAC", OGG),
    (b"Speex   ", OGG),
)


def sniff(head: bytes) -> MediaType | None:
    """The audio/video type of a file from its first bytes, or None if it is not one we take.

    Only the first `HEAD_BYTES` of `head` are looked at. Pure and total: any bytes give a
    `MediaType` or None.
    """
    data = bytes(head[:HEAD_BYTES])
    if data[4:8] == b"ftyp" and data[8:12] in _AUDIO_ONLY_BRANDS:
        return M4A
    matcher = filetype.match(data, matchers=_MATCHERS)
    if matcher is None:
        return None
    media = _BY_FILETYPE[matcher.extension]
    if media is OGG:
        return _ogg_codec(data)
    return media


def _ogg_codec(data: bytes) -> MediaType | None:
    """Audio codec of the first logical stream in an Ogg page (RFC 3533 page layout).

    The first page of an Ogg file holds exactly the first packet of its first stream, and
    that packet names the codec. Video (Theora) and unknown codecs give None.
    """
    if len(data) < 27:
        return None
    packet = 27 + data[26]  # header, then one lacing byte per segment
    for magic, media in _OGG_AUDIO_CODECS:
        if data[packet : packet + len(magic)] == magic:
            return media
    return None


class MediaUnreadable(Exception):
    """The file cannot be demuxed to the end as the audio or video its first bytes claim."""


# Per extension: the FFmpeg demuxer, and whether that container records its duration in a
# header written by the muxer (ISO BMFF mvhd/mdhd with edit lists, Matroska's Segment
# Duration, FLAC's STREAMINFO sample count, WAV's data size, AVI's frame counts). For those
# the header value is preferred once the packets confirm it. MP3 (Xing/VBRI headers are
# optional, and FFmpeg falls back to a bitrate guess without saying so), raw ADTS AAC (no
# header at all) and Ogg (FFmpeg derives it from the last page anyway, but without Opus
# pre-skip) are measured from the packets alone.
_DEMUXERS: Final[dict[str, tuple[str, bool]]] = {
    "mp3": ("mp3", False),
    "aac": ("aac", False),
    "ogg": ("ogg", False),
    "opus": ("ogg", False),
    "wav": ("wav", True),
    "flac": ("flac", True),
    "m4a": ("mp4", True),
    "mp4": ("mp4", True),
    "mov": ("mov", True),
    "webm": ("matroska", True),
    "mkv": ("matroska", True),
    "avi": ("avi", True),
}

# How far the packets may end short of (or beyond) a recorded duration and still confirm
# it: one frame of a slow slideshow, or an audio track's encoder padding. Data missing
# beyond that is a truncated file; packets running beyond it mean the "header" value was
# an estimate.
_CONFIRM_SLACK: Final = Fraction(1)
# Bounds on the work for one file, so a corrupt or hostile file cannot pin a worker: a day
# of 60 fps video plus 48 kHz audio is ~9.3 million packets.
MAX_PACKETS: Final = 20_000_000
DEFAULT_TIME_LIMIT: Final = 600.0


def measure_duration(path: str | os.PathLike[str], *, time_limit: float = DEFAULT_TIME_LIMIT) -> Decimal:
    """Seconds of playback in the media file at `path`, to the millisecond.

    Every packet of the audio and video streams is read (no decoding): that is what proves
    the data is all there, and it is the only measure for containers without a reliable
    duration header. Blocking; at most `time_limit` seconds and `MAX_PACKETS` packets.
    """
    deadline = time.monotonic() + time_limit
    try:
        with open(path, "rb") as file:
            head = file.read(HEAD_BYTES)
            size = os.fstat(file.fileno()).st_size
    except OSError as error:
        raise MediaUnreadable(f"cannot read the file: {error.strerror or type(error).__name__}") from error
    media = sniff(head)
    if media is None:
        raise MediaUnreadable("not an audio or video format we can read")
    missing = _riff_shortfall(head, size)
    if missing:
        raise MediaUnreadable(f"truncated: {missing} bytes of the {media.extension} file are missing")
    demuxer, header_recorded = _DEMUXERS[media.extension]
    try:
        # The demuxer is the one the first bytes name, never FFmpeg's own guess: probing
        # could pick a demuxer (a playlist, a concat list) that opens other files or URLs.
        with av.open(
            os.fspath(path),
            "r",
            format=demuxer,
            metadata_errors="replace",
            timeout=max(1.0, time_limit),
        ) as container:
            seconds = _measure(container, header_recorded, deadline)
    except MediaUnreadable:
        raise
    except (av.error.FFmpegError, OSError, ValueError, OverflowError) as error:
        # strerror, not str(error): the latter carries the server-side path.
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise MediaUnreadable(f"cannot demux the {media.extension} file: {reason}") from error
    return _milliseconds(seconds)


# RIFF writers that stream (and so cannot know the size) put 0 or 0xFFFFFFFF there, and
# some writers get the size off by a few bytes; only a clearly shorter file is truncated.
_RIFF_UNKNOWN_SIZES: Final = frozenset({0, 0xFFFFFFFF})
_RIFF_TOLERANCE: Final = 4096


def _riff_shortfall(head: bytes, size: int) -> int:
    """Bytes missing from a RIFF file (WAV, AVI) of `size` bytes whose header is `head`, or 0.

    A RIFF file starts with the size of everything after its first 8 bytes. FFmpeg reads a
    cut WAV or AVI as a shorter one, so this is the check that catches those.
    """
    if head[:4] != b"RIFF" or len(head) < 8:
        return 0
    declared = int.from_bytes(head[4:8], "little")
    if declared in _RIFF_UNKNOWN_SIZES:
        return 0
    missing = 8 + declared - size
    return missing if missing > _RIFF_TOLERANCE else 0


def _measure(container: InputContainer, header_recorded: bool, deadline: float) -> Fraction:
    streams = [stream for stream in container.streams if stream.type in ("audio", "video")]
    if not streams:
        raise MediaUnreadable("the file holds no audio or video stream")
    first: dict[int, Fraction] = {}
    end: Fraction | None = None
    for count, packet in enumerate(container.demux(*streams), start=1):
        if count > MAX_PACKETS:
            raise MediaUnreadable(f"more than {MAX_PACKETS} packets")
        if count % 4096 == 0 and time.monotonic() > deadline:
            raise MediaUnreadable("demuxing took longer than allowed")
        time_base = packet.time_base
        if packet.pts is None or time_base is None:
            continue  # the demuxer's end-of-stream marker, or a packet nobody can place
        start = packet.pts * time_base
        stop = (packet.pts + max(packet.duration or 0, 0)) * time_base
        index = packet.stream.index
        first[index] = min(first.get(index, start), start)
        end = stop if end is None else max(end, stop)
    if end is None:
        raise MediaUnreadable("the audio and video streams hold no packets")
    played = end - _origin(streams, first)
    if header_recorded and container.duration is not None and container.duration > 0:
        recorded = Fraction(container.duration, av.time_base)
        if played < recorded - _CONFIRM_SLACK:
            raise MediaUnreadable(
                f"truncated: the header records {float(recorded):.3f} s but the data ends at {float(played):.3f} s"
            )
        if played <= recorded + _CONFIRM_SLACK:
            return recorded
    return max(played, Fraction(0))


def _origin(streams: list[Stream], first: dict[int, Fraction]) -> Fraction:
    """Where playback starts: the earliest stream start.

    A stream's declared start skips the encoder priming that its first packets carry at
    negative or early timestamps (AAC's 1024 samples, MP3's LAME delay); without one, the
    first packet is the start.
    """
    starts: list[Fraction] = []
    for stream in streams:
        if stream.index not in first:
            continue
        if stream.start_time is not None and stream.time_base is not None:
            starts.append(stream.start_time * stream.time_base)
        else:
            starts.append(first[stream.index])
    return min(starts)


def _milliseconds(seconds: Fraction) -> Decimal:
    """`seconds` rounded half up to whole milliseconds, exactly (no float, no context precision)."""
    millis = math.floor(seconds * 1000 + Fraction(1, 2))
    return Decimal(millis).scaleb(-3)


def started_minutes(duration: Decimal) -> int:
    """Minutes begun by `duration` seconds, the unit billing counts: 0 s -> 0, 0.001 s -> 1, 60 s -> 1."""
    if duration < 0:
        raise ValueError("a duration cannot be negative")
    whole, rest = divmod(duration, 60)
    return int(whole) + (1 if rest else 0)
