"""A video file (.mp4, .avi, .mov, .mkv, .webm) -> (F, H, W, 3) uint8 RGB frames and the frame rate it declares.

Decoded with PyAV (``av``, the optional extra ``neurrator[video]``; a missing PyAV is a one-line error
with the install command). A video is an untrusted, compressed file, so the decompression limit of
`neurrator.io.limits` applies twice: before decoding, to the size the container declares (frame count,
or duration x rate when the count is missing, x width x height x 3), and while decoding, to the bytes
actually decoded so far (a file that under-declares its frames is stopped at the limit, never read to
the end). Only the first video stream is read; audio and subtitles are ignored. Every error names the
video file.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from neurrator.errors import NeurratorError
from neurrator.io.limits import check_array_size, max_array_bytes

__all__ = ["VIDEO_SUFFIXES", "VideoFrames", "read_video"]

#: File suffixes read as video through PyAV.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
_INSTALL = "pip install 'neurrator[video]' (or pip install av)"


class VideoFrames:
    """Decoded frames and the rate the file declares.

    Attributes
    ----------
    frames : (F, H, W, 3) uint8
        RGB frames in display order.
    fps : float
        Frames per second from the stream's average rate (NaN when the file declares none).
    """

    __slots__ = ("fps", "frames")

    def __init__(self, frames: np.ndarray, fps: float) -> None:
        self.frames = frames
        self.fps = fps


def _import_av(label: str):
    try:
        import av
    except ModuleNotFoundError as err:
        raise NeurratorError(label, f"reading video files needs PyAV, which is not installed: {_INSTALL}; or "
                             "convert the video to .npy (F, H, W) uint8") from err
    return av


def _declared_frames(container, stream) -> int:
    """Frames the file declares: the stream's frame count, else its duration (or the container's) x the
    average rate (0 when none is known)."""
    n = int(stream.frames or 0)
    if n > 0:
        return n
    rate = stream.average_rate
    if not rate:
        return 0
    if stream.duration and stream.time_base:
        return int(math.ceil(float(stream.duration * stream.time_base) * float(rate)))
    if container.duration:  # microseconds (av.time_base)
        return int(math.ceil(container.duration / 1e6 * float(rate)))
    return 0


def read_video(path: str | Path, *, limit: int | None = None) -> VideoFrames:
    """Decode every frame of the first video stream of ``path`` (checks in the module docstring).

    Parameters
    ----------
    path
        A regular video file.
    limit
        Bytes of decoded frames accepted (default `neurrator.io.limits.max_array_bytes`).

    Raises
    ------
    NeurratorError
        Naming the file: PyAV missing, not a video PyAV can open, no video stream, no frame, frames of
        changing size, or more decoded bytes (declared or actual) than ``limit``.
    """
    label = str(path)
    limit = max_array_bytes() if limit is None else int(limit)
    av = _import_av(label)
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError) as err:
        raise NeurratorError(label, f"not a video PyAV can open ({type(err).__name__}: {err})") from None
    with container:
        streams = container.streams.video
        if not streams:
            raise NeurratorError(label, "holds no video stream")
        stream = streams[0]
        width = int(stream.codec_context.width or 0)
        height = int(stream.codec_context.height or 0)
        declared = _declared_frames(container, stream)
        check_array_size((max(declared, 1), height, width, 3), 1, label=label, what="the video stream (decoded)",
                         limit=limit)
        fps = float(stream.average_rate) if stream.average_rate else float("nan")
        frames: list[np.ndarray] = []
        decoded = 0
        try:
            for frame in container.decode(stream):
                arr = frame.to_ndarray(format="rgb24")
                if frames and arr.shape != frames[0].shape:
                    raise NeurratorError(label, f"frame {len(frames)} is {arr.shape[1]}x{arr.shape[0]}, the first "
                                         f"{frames[0].shape[1]}x{frames[0].shape[0]}; frames must share one size")
                decoded += arr.nbytes
                check_array_size((decoded,), 1, label=label, what=f"the {len(frames) + 1} first decoded frames",
                                 limit=limit)
                frames.append(arr)
        except av.FFmpegError as err:
            raise NeurratorError(label, f"cannot decode frame {len(frames)} ({type(err).__name__}: {err})") from None
    if not frames:
        raise NeurratorError(label, "the video stream holds no frame")
    return VideoFrames(np.stack(frames), fps)
