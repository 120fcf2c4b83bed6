"""FFmpeg work through PyAV (FFmpeg's libraries, shipped in the `av` wheel): probe, transcode, thumbnail."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.error import FFmpegError


class MediaError(Exception):
    """The file is not a video PyAV can read, or processing it failed."""


@dataclass(frozen=True)
class Probe:
    width: int
    height: int
    duration_seconds: float | None
    has_audio: bool
    format_name: str


def probe(path: Path) -> Probe:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError("the file has no video stream")
            video = container.streams.video[0]
            if not video.codec_context.width or not video.codec_context.height:
                raise MediaError("the video stream has no picture size")
            duration = float(container.duration / av.time_base) if container.duration else None
            return Probe(
                video.codec_context.width,
                video.codec_context.height,
                duration,
                bool(container.streams.audio),
                container.format.name,
            )
    except FFmpegError as error:
        # FFmpeg's message names the file's path on the server; keep only its reason.
        raise MediaError(f"not a readable video ({error.strerror or type(error).__name__})") from None


def even(value: float) -> int:
    """H.264 in yuv420p wants even dimensions."""
    return max(2, round(value / 2) * 2)


def transcode(source: Path, target: Path, *, height: int, on_progress: Callable[[float], None]) -> tuple[int, int]:
    """H.264/AAC MP4 with the index at the front (faststart), scaled to `height`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with av.open(str(source)) as source_container:
            video_in = source_container.streams.video[0]
            audio_in = source_container.streams.audio[0] if source_container.streams.audio else None
            width = even(video_in.codec_context.width * height / video_in.codec_context.height)
            height = even(height)
            duration = float(source_container.duration / av.time_base) if source_container.duration else None
            with av.open(str(target), mode="w", format="mp4", options={"movflags": "+faststart"}) as output:
                video_out = output.add_stream("libx264", rate=video_in.average_rate or Fraction(25))
                video_out.width, video_out.height, video_out.pix_fmt = width, height, "yuv420p"
                video_out.options = {"preset": "veryfast", "crf": "23"}
                audio_out = output.add_stream("aac", rate=audio_in.codec_context.sample_rate) if audio_in else None
                streams = [video_in, *([audio_in] if audio_in else [])]
                for packet in source_container.demux(*streams):
                    for frame in packet.decode():
                        if packet.stream.type == "video":
                            scaled = frame.reformat(width=width, height=height, format="yuv420p")
                            output.mux(video_out.encode(scaled))
                            if duration and frame.time is not None:
                                on_progress(min(frame.time / duration, 1.0))
                        elif audio_out is not None:
                            frame.pts = None
                            output.mux(audio_out.encode(frame))
                output.mux(video_out.encode(None))
                if audio_out is not None:
                    output.mux(audio_out.encode(None))
    except FFmpegError as error:
        target.unlink(missing_ok=True)
        raise MediaError(f"transcoding failed: {error}") from None
    on_progress(1.0)
    return width, height


def parse_timestamp(value: str) -> float:
    """'00:00:01.000' (or plain seconds) to seconds."""
    seconds = 0.0
    for part in value.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def thumbnail(source: Path, target: Path, *, at_seconds: float, max_width: int = 640) -> None:
    """A JPEG of the first frame at or after `at_seconds` (or the first frame of a shorter clip)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with av.open(str(source)) as container:
            video = container.streams.video[0]
            duration = float(container.duration / av.time_base) if container.duration else 0.0
            wanted = at_seconds if at_seconds < duration else 0.0
            chosen = None
            for frame in container.decode(video):
                chosen = frame
                if frame.time is not None and frame.time >= wanted:
                    break
            if chosen is None:
                raise MediaError("the video has no frames")
            width = min(max_width, chosen.width)
            height = even(chosen.height * width / chosen.width)
            width = even(width)
            picture = chosen.reformat(width=width, height=height, format="yuvj420p")
            with av.open(str(target), mode="w", format="image2") as image:
                stream = image.add_stream("mjpeg", rate=1)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
                image.mux(stream.encode(picture))
                image.mux(stream.encode(None))
    except FFmpegError as error:
        raise MediaError(f"thumbnail failed: {error}") from None
