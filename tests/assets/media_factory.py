"""Real media files for tests, encoded with PyAV.

Every file goes through a real encoder and muxer, so its bytes are what a recorder or an
exporter produces; sizes stay tiny (mono audio, 64x48 video at 10 fps) so a minute of
media encodes in well under a second.
"""

from __future__ import annotations

import array
import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av

AudioFormat = Literal["mp3", "wav", "flac", "ogg", "opus", "m4a", "aac"]
VideoFormat = Literal["mp4", "mov", "webm", "mkv", "avi"]

AUDIO_FORMATS: tuple[AudioFormat, ...] = ("mp3", "wav", "flac", "ogg", "opus", "m4a", "aac")
VIDEO_FORMATS: tuple[VideoFormat, ...] = ("mp4", "mov", "webm", "mkv", "avi")

WIDTH, HEIGHT = 64, 48
FPS = 10


@dataclass(frozen=True)
class _Audio:
    codec: str
    # Lossy codecs run at the rates real files use: their priming and padding are a
    # fixed number of samples, so at 8 kHz they would be five times longer in seconds
    # than in any real upload. Lossless ones can be small.
    rate: int
    layout: str = "mono"


_MP3 = _Audio("libmp3lame", 44100)
_AAC = _Audio("aac", 44100)
_OPUS = _Audio("libopus", 48000)

# (muxer, audio) per audio format. "ipod" is FFmpeg's m4a muxer: it writes the "M4A "
# brand real .m4a files carry; "adts" writes raw AAC frames with no container at all.
_AUDIO: dict[AudioFormat, tuple[str, _Audio]] = {
    "mp3": ("mp3", _MP3),
    "wav": ("wav", _Audio("pcm_s16le", 8000)),
    "flac": ("flac", _Audio("flac", 8000)),
    # This FFmpeg build has only FFmpeg's own Vorbis encoder, which wants stereo.
    "ogg": ("ogg", _Audio("vorbis", 44100, "stereo")),
    "opus": ("ogg", _OPUS),
    "m4a": ("ipod", _AAC),
    "aac": ("adts", _AAC),
}

# (muxer, video codec, audio) per video format.
_VIDEO: dict[VideoFormat, tuple[str, str, _Audio]] = {
    "mp4": ("mp4", "libx264", _AAC),
    "mov": ("mov", "libx264", _AAC),
    "webm": ("webm", "libvpx-vp9", _OPUS),
    "mkv": ("matroska", "libx264", _AAC),
    "avi": ("avi", "mpeg4", _MP3),
}

_CODEC_OPTIONS: dict[str, dict[str, str]] = {
    # Realtime settings keep VP9 fast enough for a minute of video in a test.
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"},
    "libx264": {"preset": "ultrafast"},
    "vorbis": {"strict": "experimental"},
}


def _pcm(seconds: float, rate: int, channels: int) -> bytes:
    """Interleaved s16 samples: one silent second, then a tone with noise.

    The silent start makes a VBR encoder's first frames much smaller than the rest, so a
    duration guessed from the first frames' bitrate is visibly wrong: measuring has to
    walk the file. One second of tone is computed and repeated, to stay fast.
    """
    rng = random.Random(7)
    second = array.array(
        "h", [int(math.sin(2 * math.pi * 440 * i / rate) * 8000 + rng.uniform(-6000, 6000)) for i in range(rate)]
    )
    total = round(seconds * rate)
    mono = array.array("h", bytes(2 * min(rate, total)))
    while len(mono) < total:
        mono.extend(second[: total - len(mono)])
    if channels == 1:
        return mono.tobytes()
    interleaved = array.array("h", bytes(2 * channels * total))
    for channel in range(channels):
        interleaved[channel::channels] = mono
    return interleaved.tobytes()


def _audio_frames(seconds: float, audio: _Audio, chunk: int = 1024) -> Iterator[av.AudioFrame]:
    channels = 2 if audio.layout == "stereo" else 1
    width = 2 * channels
    pcm = _pcm(seconds, audio.rate, channels)
    for start in range(0, len(pcm) // width, chunk):
        piece = pcm[width * start : width * (start + chunk)]
        frame = av.AudioFrame(format="s16", layout=audio.layout, samples=len(piece) // width)
        frame.planes[0].update(piece)
        frame.sample_rate = audio.rate
        frame.pts = start
        frame.time_base = Fraction(1, audio.rate)
        yield frame


def _video_frames(seconds: float) -> Iterator[av.VideoFrame]:
    for index in range(round(seconds * FPS)):
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        frame.planes[0].update(bytes((x + index * 3) % 256 for x in range(WIDTH)) * HEIGHT)
        chroma = bytes([(index * 5) % 256]) * (WIDTH // 2 * HEIGHT // 2)
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts = index
        frame.time_base = Fraction(1, FPS)
        yield frame


def _add_audio_stream(container: Any, audio: _Audio) -> Any:
    stream = container.add_stream(audio.codec, rate=audio.rate, layout=audio.layout)
    if audio.codec == "libmp3lame":
        # Variable bitrate (`lame -V 4`): the case where a duration guessed from the
        # bitrate goes wrong.
        stream.codec_context.qscale = True
        stream.codec_context.global_quality = 4 * 118  # FF_QP2LAMBDA * quality
    stream.codec_context.options = dict(_CODEC_OPTIONS.get(audio.codec, {}))
    return stream


def _encode_interleaved(container: Any, sources: list[tuple[Any, Iterator[Any]]]) -> None:
    """Encode every source's frames in presentation order, as a recorder would."""
    pending: list[tuple[Any, Iterator[Any], Any]] = []
    for stream, frames in sources:
        first = next(frames, None)
        if first is not None:
            pending.append((stream, frames, first))
    while pending:
        pending.sort(key=lambda item: item[2].pts * item[2].time_base)
        stream, frames, frame = pending.pop(0)
        container.mux(stream.encode(frame))
        following = next(frames, None)
        if following is not None:
            pending.append((stream, frames, following))
    for stream, _ in sources:
        container.mux(stream.encode(None))


def make_audio(
    path: str | os.PathLike[str],
    fmt: AudioFormat,
    seconds: float,
    *,
    xing_header: bool = True,
    id3_tag: bool = True,
) -> Path:
    """Write `seconds` of audio as `fmt` to `path`.

    For mp3: `xing_header=False` leaves out the header recording the frame count, as many
    encoders and stream rippers do, so only walking the frames gives the duration;
    `id3_tag=False` leaves out the ID3v2 tag, so the file starts with a frame header.
    """
    muxer, audio = _AUDIO[fmt]
    options: dict[str, str] = {}
    if fmt == "mp3" and not xing_header:
        options["write_xing"] = "0"
    if fmt == "mp3" and not id3_tag:
        options["id3v2_version"] = "0"
    with av.open(os.fspath(path), "w", format=muxer, options=options) as container:
        stream = _add_audio_stream(container, audio)
        _encode_interleaved(container, [(stream, _audio_frames(seconds, audio))])
    return Path(path)


def make_video(
    path: str | os.PathLike[str],
    fmt: VideoFormat,
    seconds: float,
    *,
    with_audio: bool = True,
    header_duration: bool = True,
    faststart: bool = False,
) -> Path:
    """Write `seconds` of 64x48 video at 10 fps, plus an audio track, as `fmt` to `path`.

    `header_duration=False` (webm, mkv) writes the file as a live recorder (a browser's
    MediaRecorder) does: no Duration element, no cues. `faststart=True` (mp4, mov) puts
    the index (moov) before the data, as files prepared for streaming have it.
    """
    muxer, video_codec, audio = _VIDEO[fmt]
    options: dict[str, str] = {}
    if fmt in ("webm", "mkv") and not header_duration:
        options["live"] = "1"
    if fmt in ("mp4", "mov") and faststart:
        options["movflags"] = "+faststart"
    if fmt == "avi":
        # AVI timestamps are chunk counts: shifting every stream to make the MP3 encoder's
        # negative priming timestamp non-negative would insert an empty video frame.
        options["avoid_negative_ts"] = "disabled"
    with av.open(os.fspath(path), "w", format=muxer, options=options) as container:
        video: Any = container.add_stream(video_codec, rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.codec_context.options = dict(_CODEC_OPTIONS.get(video_codec, {}))
        sources: list[tuple[Any, Iterator[Any]]] = [(video, _video_frames(seconds))]
        if with_audio:
            sources.append((_add_audio_stream(container, audio), _audio_frames(seconds, audio)))
        _encode_interleaved(container, sources)
    return Path(path)


def make_subtitles_only(path: str | os.PathLike[str]) -> Path:
    """A valid Matroska file whose only track is subtitles: a container with no media in it."""
    with av.open(os.fspath(path), "w", format="matroska") as container:
        stream = container.add_stream("ass")
        packet = av.Packet(b"0,0,Default,,0,0,0,,hello")
        packet.stream = stream
        packet.pts = packet.dts = 0
        packet.duration = 1000
        packet.time_base = Fraction(1, 1000)
        container.mux(packet)
    return Path(path)


def make_media(path: str | os.PathLike[str], fmt: str, seconds: float) -> Path:
    """`make_audio` or `make_video`, whichever knows `fmt`."""
    if fmt in _AUDIO:
        return make_audio(path, fmt, seconds)
    if fmt in _VIDEO:
        return make_video(path, fmt, seconds)
    raise ValueError(f"no generator for {fmt!r}")


def truncate(path: str | os.PathLike[str], fraction: float) -> Path:
    """Cut the file at `path` down to `fraction` of its size, in place, like an interrupted copy."""
    if not 0 <= fraction <= 1:
        raise ValueError("fraction must be within [0, 1]")
    os.truncate(path, int(os.path.getsize(path) * fraction))
    return Path(path)
