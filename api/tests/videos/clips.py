"""Short test clips made with FFmpeg (through PyAV): moving gradient video and a sine tone."""

from __future__ import annotations

import math
import struct
from fractions import Fraction
from pathlib import Path

import av


def make_clip(
    path: Path,
    *,
    width: int = 854,
    height: int = 480,
    seconds: float = 2.0,
    fps: int = 12,
    rotation: int = 0,
    bright_top: bool = False,
) -> Path:
    """`rotation`: a display matrix turning the stored picture that many degrees counter-
    clockwise, as phones store portrait clips. `bright_top`: the stored picture's top half is
    white and its bottom half black (instead of a moving gradient), to tell which way is up."""
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if rotation:
            video.set_display_rotation(rotation)
        audio = container.add_stream("aac", rate=44100)
        for index in range(int(seconds * fps)):
            frame = av.VideoFrame(width, height, "yuv420p")
            line = frame.planes[0].line_size
            if bright_top:
                luma = bytes([235]) * (line * (height // 2)) + bytes([16]) * (line * (height - height // 2))
            else:
                luma = bytes((x + 3 * index) % 256 for x in range(line)) * height
            frame.planes[0].update(luma)
            frame.planes[1].update(bytes([128]) * (frame.planes[1].line_size * (height // 2)))
            frame.planes[2].update(bytes([128]) * (frame.planes[2].line_size * (height // 2)))
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        samples_per_frame = 1024
        for block in range(int(seconds * 44100 / samples_per_frame)):
            tone = [
                0.2 * math.sin(2 * math.pi * 440 * (block * samples_per_frame + n) / 44100)
                for n in range(samples_per_frame)
            ]
            frame = av.AudioFrame(format="fltp", layout="mono", samples=samples_per_frame)
            frame.planes[0].update(struct.pack(f"{samples_per_frame}f", *tone))
            frame.sample_rate = 44100
            frame.pts = block * samples_per_frame
            container.mux(audio.encode(frame))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return path
