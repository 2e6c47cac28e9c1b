"""Video files of camera frames, through PyAV: encode uint8 (T, H, W, C) frames, decode a time range back.

    encode:  VideoWriter(path, fps, codec="h264")  .write(frames)  ...  .close()    one mp4, many episodes
    decode:  VideoReader(path)  .read(times)  -> (T, H, W, C) uint8                 frames matched by timestamp

Frame times: a frame written as the n-th frame of a file has presentation time n / fps; a reader asks
for times (seconds) and gets, for each, the decoded frame whose time is nearest, which must lie within
`TIME_TOLERANCE` frames of it; a time past the last frame of the file is a `DemoFileError` naming the
file and the time (a video shorter than its episode).

`VideoReader` keeps its decoder open between calls: times asked in increasing order (the episodes of a
file, one after the other) decode the file once, front to back; an earlier time seeks back to the
keyframe before it. Codecs: ``h264`` (libx264 when the av wheel has it, else the first H.264 encoder
it has) and ``av1`` (libsvtav1, else libaom-av1; decoded by libdav1d or FFmpeg's own decoder).
Frames are stored yuv420p (the pixel format every player and LeRobot reads) when H and W are even,
yuv444p otherwise (H.264 only: the AV1 encoder takes only even sizes); one-channel frames (C = 1) are
stored as grey colour frames and read back as their first channel.

PyAV (``av``) is an optional dependency: `import_av` imports it or raises an `ImitateError` naming the
extra that installs it.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from imitate.errors import DemoFileError, ImitateError

#: How far (in frame periods) a decoded frame's time may be from the time asked for.
TIME_TOLERANCE = 0.4
#: Times further than this (seconds) past the decoder's position are reached by seeking, not decoding.
SEEK_AHEAD = 2.0
#: Encoder names tried for each codec, in order.
ENCODERS = {"h264": ("libx264", "h264", "libopenh264"), "av1": ("libsvtav1", "libaom-av1", "av1")}
#: Encoder settings by encoder name: constant quality and a keyframe every `gop` frames.
DEFAULT_CRF = {"libx264": 18, "libsvtav1": 30, "libaom-av1": 30}
EXTRA = "pip install 'imitate-policies[formats]'"


def import_av():
    """The ``av`` module (PyAV), or an ImitateError naming the extra that installs it."""
    try:
        import av
    except ImportError as e:
        raise ImitateError(f"reading or writing videos needs PyAV (the 'av' package), which is not installed "
                           f"({e}); {EXTRA}") from None
    return av


def pick_encoder(codec: str) -> str:
    """The name of an encoder for ``codec`` ("h264" or "av1") that this PyAV build has."""
    av = import_av()
    key = str(codec).lower()
    if key not in ENCODERS:
        raise ImitateError(f"video_codec (--video-codec) is {codec!r}; expected h264 or av1")
    for name in ENCODERS[key]:
        try:
            av.Codec(name, "w")
        except Exception:  # noqa: BLE001 - PyAV raises several kinds for an unknown codec
            continue
        return name
    raise ImitateError(f"this PyAV build (av {av.__version__}) has no {key} encoder (tried {', '.join(ENCODERS[key])})")


def _reformatter():
    """One pixel-format converter kept for every frame of a stream; converting each frame on its own
    (``frame.to_ndarray(format="rgb24")``) made reading 96x96 videos about 4x slower here (see the LeRobot
    section of BENCHMARKS.md). None where this PyAV has no such class."""
    try:
        from av.video.reformatter import VideoReformatter
    except ImportError:
        return None
    return VideoReformatter()


def _fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001 * 1000)


class VideoWriter:
    """One mp4 file of uint8 frames (H, W, C), C in {1, 3}, written frame after frame.

    Args:
        path: the file written (its folder is created).
        fps: frames per second; the n-th frame written has time n / fps.
        height, width, channels: every frame's shape.
        codec: "h264" (default) or "av1".
        crf: constant-rate factor (quality; lower is better); default by encoder (`DEFAULT_CRF`).
        gop: a keyframe every ``gop`` frames (small: faster seeking, larger files).
    """

    def __init__(self, path: str | os.PathLike, fps: float, height: int, width: int, channels: int = 3,
                 codec: str = "h264", crf: int | None = None, gop: int = 2):
        av = import_av()
        if channels not in (1, 3):
            raise ImitateError(f"{path}: frames of {channels} channels cannot be stored as video (1 or 3)")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.encoder = pick_encoder(codec)
        self.shape = (int(height), int(width), int(channels))
        self.n_frames = 0
        rate = _fraction(fps)
        if height % 2 == 0 and width % 2 == 0:
            self.pix_fmt = "yuv420p"
        elif self.encoder == "libsvtav1":
            raise ImitateError(f"{path}: the AV1 encoder here (libsvtav1) takes only even frame sizes; "
                               f"{width}x{height} frames need video_codec h264 (--video-codec h264)")
        else:
            self.pix_fmt = "yuv444p"
        if self.encoder == "libsvtav1":
            os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration to stderr unless told not to
        self._container = av.open(str(self.path), mode="w")
        try:
            options = {"crf": str(DEFAULT_CRF.get(self.encoder, 23) if crf is None else crf), "g": str(gop)}
            if self.encoder == "libsvtav1":
                options = {"crf": options["crf"], "g": str(gop), "preset": "10"}
            self._stream = self._container.add_stream(self.encoder, rate=rate, options=options)
            self._stream.width, self._stream.height = self.shape[1], self.shape[0]
            self._stream.pix_fmt = self.pix_fmt
            self._stream.time_base = Fraction(1, 1) / rate
        except Exception as e:  # noqa: BLE001 - an encoder refusing its settings
            self._container.close()
            raise ImitateError(f"{path}: the {self.encoder} encoder refused {self.shape[1]}x{self.shape[0]} "
                               f"{self.pix_fmt} at {fps} fps ({e})") from None
        self._reformatter = _reformatter()

    def write(self, frames: np.ndarray) -> None:
        """Append frames (T, H, W, C) uint8."""
        av = import_av()
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.shape[1:] != self.shape:
            raise ImitateError(f"{self.path}: frames must be uint8 {self.shape}, got {frames.dtype} {frames.shape[1:]}")
        for image in frames:
            if image.shape[-1] == 1:  # one channel: stored as grey colour (equal R, G, B: luma only)
                image = np.repeat(image, 3, axis=-1)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if self._reformatter is not None:
                frame = self._reformatter.reformat(frame, format=self.pix_fmt)
            frame.pts = self.n_frames
            self.n_frames += 1
            try:
                packets = self._stream.encode(frame)
            except av.error.FFmpegError as e:
                raise ImitateError(f"{self.path}: the {self.encoder} encoder refused {self.shape[1]}x{self.shape[0]} "
                                   f"{self.pix_fmt} frames ({e})") from None
            for packet in packets:
                self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and close the file."""
        if self._container is None:
            return
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None

    def info(self) -> dict[str, Any]:
        """LeRobot's ``video.*`` description of this file's stream."""
        return {"video.height": self.shape[0], "video.width": self.shape[1],
                "video.codec": "av1" if "av1" in self.encoder else "h264", "video.pix_fmt": self.pix_fmt,
                "video.is_depth_map": False, "video.fps": float(self._stream.average_rate or 0) or None,
                "video.channels": self.shape[2], "has_audio": False}

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoReader:
    """Frames of one video file by time, decoded with PyAV into uint8 (T, H, W, C).

    Args:
        path: the mp4 (or any container FFmpeg opens) file.
        channels: 3 (RGB, default) or 1 (the first channel of the decoded RGB frames).
    """

    def __init__(self, path: str | os.PathLike, channels: int = 3):
        av = import_av()
        self.path = Path(path)
        if not self.path.is_file():
            raise DemoFileError(f"{self.path}: missing video file")
        try:
            self._container = av.open(str(self.path))
            self._stream = self._container.streams.video[0]
        except (av.error.FFmpegError, IndexError, OSError) as e:
            raise DemoFileError(f"{self.path}: not a readable video ({type(e).__name__}: {e})") from None
        self._stream.thread_type = "AUTO"
        self.fps = float(self._stream.average_rate or self._stream.guessed_rate or 0) or None
        self.time_base = self._stream.time_base
        self.channels = channels
        self._reformatter = _reformatter()
        self._frames = None          # the decoder's frame iterator
        self._pos = 0.0              # the time of the last frame decoded
        self._held: tuple[float, np.ndarray] | None = None  # the last frame returned by read
        self.frames_decoded = 0

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _seek(self, time: float) -> None:
        """Position the decoder at the keyframe at or before ``time``."""
        av = import_av()
        try:
            if time > 0:
                self._container.seek(int(time / self.time_base), stream=self._stream, backward=True, any_frame=False)
            else:
                self._container.seek(0, stream=self._stream)
        except av.error.FFmpegError as e:
            raise DemoFileError(f"{self.path}: cannot seek to t={time:.4f}s ({e})") from None
        self._frames = self._container.decode(self._stream)
        self._pos, self._held = 0.0, None

    def _next(self) -> tuple[float, np.ndarray] | None:
        """The next decoded frame as (time, image), or None at the end of the file."""
        av = import_av()
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except av.error.FFmpegError as e:
            raise DemoFileError(f"{self.path}: cannot decode a frame ({type(e).__name__}: {e})") from None
        self.frames_decoded += 1
        t = float(frame.pts * self.time_base) if frame.pts is not None else float(frame.time)
        self._pos = t
        if self._reformatter is not None:
            image = self._reformatter.reformat(frame, format="rgb24").to_ndarray()
        else:
            image = frame.to_ndarray(format="rgb24")
        return t, image[..., :1] if self.channels == 1 else image

    def read(self, times: Sequence[float], fps: float | None = None) -> np.ndarray:
        """The frames at ``times`` (seconds, increasing), as (len(times), H, W, C) uint8.

        Each time gets the decoded frame nearest to it, which must be within `TIME_TOLERANCE` / fps
        seconds (``fps`` default: the stream's). A time past the file's last frame, or one no frame
        matches, is a DemoFileError naming the file and the time.
        """
        times = np.asarray(times, dtype=np.float64)
        if not len(times):
            raise DemoFileError(f"{self.path}: no frame times asked for")
        if np.any(np.diff(times) <= 0):
            raise DemoFileError(f"{self.path}: frame times must increase")
        rate = fps or self.fps
        if not rate:
            raise DemoFileError(f"{self.path}: the video stream has no frame rate; pass fps")
        tol = TIME_TOLERANCE / rate
        held = self._held is not None and abs(self._held[0] - times[0]) <= tol  # the last frame returned, again
        seek = (self._frames is None or (not held and times[0] < self._pos + tol)
                or times[0] - self._pos > SEEK_AHEAD)
        back = 0.5 / rate
        if seek:
            self._seek(max(0.0, times[0] - back))
        out, last_seen = [], None
        if held and not seek:
            out.append(self._held[1])
        for target in times[len(out):]:
            while True:
                item = self._next()
                if seek and not out and item is not None and item[0] > times[0] + tol and times[0] - back > 0:
                    # the seek landed past the first time asked for (a keyframe index by decoding time,
                    # B-frames): seek further back and decode forward from there
                    back = back * 4 if back < 4.0 else float("inf")
                    self._seek(max(0.0, times[0] - back))
                    continue
                if item is None:
                    shown = f"t={last_seen:.4f}s" if last_seen is not None else "none"
                    raise DemoFileError(
                        f"{self.path}: the video ends before t={target:.4f}s (last frame read: {shown}; "
                        f"{len(out)} of {len(times)} frames found): the video is shorter than its episode")
                t, image = item
                last_seen = t
                if t < target - tol:
                    continue  # before the range: decoded to reach it, not used
                if t > target + tol:
                    raise DemoFileError(f"{self.path}: no frame at t={target:.4f}s (the next frame is at "
                                        f"t={t:.4f}s; frame rate {rate:g})")
                out.append(image)
                self._held = (t, image)
                break
        if out[0].shape[-1] != self.channels:
            raise DemoFileError(f"{self.path}: decoded frames have {out[0].shape[-1]} channels, expected {self.channels}")
        return np.stack(out)

    def read_range(self, start: float, n: int, fps: float) -> np.ndarray:
        """``n`` frames from time ``start`` at ``fps``: frames at start + k / fps."""
        return self.read(start + np.arange(n) / fps, fps)


def encode_frames(path: str | os.PathLike, frames: np.ndarray, fps: float, codec: str = "h264", **kwargs) -> dict[str, Any]:
    """Write frames (T, H, W, C) uint8 as one video file; returns its LeRobot ``video.*`` description."""
    frames = np.asarray(frames)
    with VideoWriter(path, fps, *frames.shape[1:], codec=codec, **kwargs) as w:
        w.write(frames)
        info = w.info()
    return info


def decode_frames(path: str | os.PathLike, times: Iterable[float], fps: float | None = None,
                  channels: int = 3) -> np.ndarray:
    """The frames of a video file at ``times`` (seconds, increasing), (T, H, W, C) uint8."""
    with VideoReader(path, channels) as r:
        return r.read(list(times), fps)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 image arrays (inf when equal)."""
    err = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if err == 0 else float(10 * np.log10(255.0 ** 2 / err))
