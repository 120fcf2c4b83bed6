"""FFmpeg work through PyAV (FFmpeg's libraries, shipped in the `av` wheel): probe, transcode, thumbnail."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.filter
from av.error import FFmpegError
from av.video.frame import VideoFrame


class MediaError(Exception):
    """The file is not a video PyAV can read, or processing it failed."""


@dataclass(frozen=True)
class Probe:
    width: int  # as shown: a phone's portrait clip stored sideways with a rotation is tall
    height: int
    duration_seconds: float | None
    has_audio: bool
    format_name: str
    rotation: int = 0  # degrees counter-clockwise the stored picture is turned for display


def _rotation(frame: VideoFrame) -> int:
    """The frame's display rotation (from its display matrix) as 0, 90, 180 or 270."""
    return round((frame.rotation or 0) / 90) * 90 % 360


def _shown_size(width: int, height: int, rotation: int) -> tuple[int, int]:
    return (height, width) if rotation in (90, 270) else (width, height)


# FFmpeg's demuxers for still and animated pictures: image2 and its `*_pipe` family (png_pipe,
# jpeg_pipe, webp_pipe, ...), GIF and APNG. They have a "video stream", but are no video.
PICTURE_FORMATS = frozenset({"gif", "apng", "image2", "image2pipe"})


def is_picture_format(format_name: str) -> bool:
    return format_name in PICTURE_FORMATS or format_name.endswith("_pipe")


def probe(path: Path) -> Probe:
    try:
        with av.open(str(path)) as container:
            if is_picture_format(container.format.name):
                raise MediaError(f"a picture ({container.format.name.removesuffix('_pipe')}), not a video")
            if not container.streams.video:
                raise MediaError("the file has no video stream")
            video = container.streams.video[0]
            if not video.codec_context.width or not video.codec_context.height:
                raise MediaError("the video stream has no picture size")
            first = next(container.decode(video), None)  # the display matrix travels with frames
            if first is None:
                raise MediaError("the video has no frames")
            rotation = _rotation(first)
            width, height = _shown_size(video.codec_context.width, video.codec_context.height, rotation)
            duration = float(container.duration / av.time_base) if container.duration else None
            return Probe(width, height, duration, bool(container.streams.audio), container.format.name, rotation)
    except FFmpegError as error:
        # FFmpeg's message names the file's path on the server; keep only its reason.
        raise MediaError(f"not a readable video ({error.strerror or type(error).__name__})") from None


def even(value: float) -> int:
    """H.264 in yuv420p wants even dimensions."""
    return max(2, round(value / 2) * 2)


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """The size with the shorter side `short_side` (how "720p" is meant for portrait clips too)."""
    if width >= height:
        return even(width * short_side / height), even(short_side)
    return even(short_side), even(height * short_side / width)


# FFmpeg filters that turn a picture upright for each display rotation (counter-clockwise).
_TURNS = {90: [("transpose", "cclock")], 180: [("hflip", ""), ("vflip", "")], 270: [("transpose", "clock")]}


class _Upright:
    """Turns decoded frames the way their display matrix says, so outputs are stored upright
    (players need no matrix, and a JPEG thumbnail could not carry one)."""

    def __init__(self) -> None:
        self._graphs: dict[tuple[int, int, int, str], av.filter.Graph] = {}

    def __call__(self, frame: VideoFrame) -> VideoFrame:
        rotation = _rotation(frame)
        if rotation == 0:
            return frame
        key = (rotation, frame.width, frame.height, frame.format.name)
        graph = self._graphs.get(key)
        if graph is None:
            graph = av.filter.Graph()
            source = graph.add_buffer(
                width=frame.width, height=frame.height, format=frame.format.name, time_base=frame.time_base
            )
            turns = [graph.add(name, argument) for name, argument in _TURNS[rotation]]
            graph.link_nodes(source, *turns, graph.add("buffersink")).configure()
            self._graphs[key] = graph
        graph.push(frame)
        turned = graph.pull()
        assert isinstance(turned, VideoFrame)
        return turned


def transcode(
    source: Path, target: Path, *, shown: Probe, short_side: int, on_progress: Callable[[float], None]
) -> tuple[int, int]:
    """H.264/AAC MP4 with the index at the front (faststart), upright, its shorter side
    scaled to `short_side`. `shown` is the source's `probe` (its upright size). Returns the
    output's width and height."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # The output stream is sized before the first frame is decoded, from the upright size.
    width, height = scaled_size(shown.width, shown.height, short_side)
    upright = _Upright()
    try:
        with av.open(str(source)) as source_container:
            video_in = source_container.streams.video[0]
            audio_in = source_container.streams.audio[0] if source_container.streams.audio else None
            duration = float(source_container.duration / av.time_base) if source_container.duration else None
            with av.open(str(target), mode="w", format="mp4", options={"movflags": "+faststart"}) as output:
                video_out = output.add_stream("libx264", rate=video_in.average_rate or Fraction(25))
                video_out.width, video_out.height, video_out.pix_fmt = width, height, "yuv420p"
                video_out.options = {"preset": "veryfast", "crf": "23"}
                audio_out = output.add_stream("aac", rate=audio_in.codec_context.sample_rate) if audio_in else None
                streams = [video_in, *([audio_in] if audio_in else [])]
                for packet in source_container.demux(*streams):
                    for frame in packet.decode():
                        if isinstance(frame, VideoFrame):
                            scaled = upright(frame).reformat(width=width, height=height, format="yuv420p")
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
            chosen = _Upright()(chosen)
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
