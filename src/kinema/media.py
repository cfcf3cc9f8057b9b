"""Clips to mp4 files (H.264 yuv420p + AAC, ``+faststart``) and facts about mp4 files, with PyAV.

The encoder owns everything diffusers' ``encode_video`` gets wrong or leaves out: the exact
(possibly fractional) frame rate, the center crop from the generation size to the output size,
an audio track padded or trimmed to exactly the video's length, BT.709 colour tags and a
``moov`` atom at the front of the file so browsers can start playing before the download ends.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Final

import av
import numpy as np
from av.video.reformatter import (
    ColorPrimaries,
    ColorRange,
    Colorspace,
    ColorTrc,
    VideoReformatter,
)

from kinema.domain import Clip

__all__ = ["MediaInfo", "center_crop", "encode_mp4", "encode_thumbnail", "frame_rate", "probe"]

# Final: the literal codec names pick the typed overloads of PyAV's add_stream.
_VIDEO_ENCODER: Final = "libx264"
_AUDIO_ENCODER: Final = "aac"
_PIX_FMT = "yuv420p"
_JPEG_PIX_FMT = "yuvj420p"  # full-range yuv, what JPEG files hold
_AVCOL_SPC_BT709 = 1  # AVColorSpace (the codec's tag), not swscale's Colorspace enum
_AUDIO_BITRATE_PER_CHANNEL = 96_000
_FALLBACK_SAMPLE_RATE = 48_000
_LAYOUTS = {1: "mono", 2: "stereo"}
_MAX_RATE_DENOMINATOR = 1001
_NTSC_TOLERANCE = 1e-4  # relative: 23.976 means 24000/1001, 24 stays 24
_CONTAINER_OPTIONS = {
    "movflags": "+faststart",
    # Wait for a packet of every stream before writing, however far apart their timestamps are:
    # the whole audio track is muxed before the first video packet and must still interleave.
    "max_interleave_delta": "0",
}


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds, as read back from the file itself."""

    width: int
    height: int
    fps: float
    duration: float
    frame_count: int
    has_audio: bool
    video_codec: str
    audio_codec: str | None
    audio_sample_rate: int | None
    audio_channels: int | None
    file_size: int


def encode_mp4(
    clip: Clip,
    path: Path,
    *,
    size: tuple[int, int] | None = None,
    preset: str = "veryfast",
    crf: int = 18,
) -> MediaInfo:
    """Write ``clip`` to ``path`` as an mp4 and return what the written file holds.

    ``size`` is the output (width, height); frames larger than it are center-cropped. Both sides
    must be even (yuv420p). The audio track, when the clip has one, lasts exactly as long as the
    video; without audio the file has no audio stream at all.
    """
    frames = _checked_frames(clip.frames)
    width, height = size if size is not None else (frames.shape[2], frames.shape[1])
    _check_output_size(width, height, frames)
    rate = frame_rate(clip.fps)
    frames = center_crop(frames, width, height)
    with av.open(str(path), "w", format="mp4", container_options=_CONTAINER_OPTIONS) as container:
        video = _add_video_stream(container, width, height, rate, preset, crf)
        if clip.audio is not None:
            _mux_audio(container, clip.audio, clip.sample_rate, Fraction(len(frames)) / rate)
        _mux_video(container, video, frames, rate)
    return probe(path)


def encode_thumbnail(image: np.ndarray, path: Path, *, max_width: int = 640) -> tuple[int, int]:
    """Write one RGB image (H, W, 3) as a JPEG no wider than ``max_width``; returns its size."""
    height, width = image.shape[:2]
    scale = min(1.0, max_width / width)
    out_width, out_height = _even(width * scale), _even(height * scale)
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = out_width, out_height
    codec.pix_fmt = _JPEG_PIX_FMT
    codec.time_base = Fraction(1, 25)
    codec.options = {"qmin": "3", "qmax": "3"}  # fixed quality: small, no visible blocks
    rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    frame = rgb.reformat(width=out_width, height=out_height, format=_JPEG_PIX_FMT)
    packets = [*codec.encode(frame), *codec.encode(None)]
    Path(path).write_bytes(b"".join(bytes(packet) for packet in packets))
    return out_width, out_height


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def probe(path: Path) -> MediaInfo:
    """Read a media file's streams: size, rate, duration, frame count and codecs."""
    path = Path(path)
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path.name}: no video stream")
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        duration = _duration(container, video)
        frame_count = video.frames or _count_packets(container, video)
        info = MediaInfo(
            width=video.codec_context.width,
            height=video.codec_context.height,
            fps=_stream_fps(video, frame_count, duration),
            duration=duration,
            frame_count=frame_count,
            has_audio=audio is not None,
            video_codec=video.codec_context.name,
            audio_codec=audio.codec_context.name if audio is not None else None,
            audio_sample_rate=audio.codec_context.sample_rate if audio is not None else None,
            audio_channels=audio.codec_context.channels if audio is not None else None,
            file_size=path.stat().st_size,
        )
    return info


def decode_image(data: bytes) -> np.ndarray:
    """A stored input image (JPEG, PNG, WebP) as one RGB frame: (1, height, width, 3) uint8."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)[np.newaxis]


def decode_clip(data: bytes) -> Clip:
    """An mp4 kinema wrote, back as frames (F, H, W, 3) uint8 and its sound (channels, samples)."""
    with av.open(io.BytesIO(data), mode="r") as container:
        video = container.streams.video[0]
        rate = video.average_rate or video.guessed_rate or Fraction(24)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video)])
    with av.open(io.BytesIO(data), mode="r") as container:
        if not container.streams.audio:
            return Clip(frames=frames, fps=float(rate))
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=stream.rate)
        chunks = [
            piece.to_ndarray()
            for frame in container.decode(stream)
            for piece in resampler.resample(frame)
        ]
        audio = np.concatenate(chunks, axis=1).astype(np.float32) if chunks else None
        return Clip(frames=frames, fps=float(rate), audio=audio, sample_rate=stream.rate)


def join_clips(first: Clip, second: Clip, crossfade_seconds: float = 0.02) -> Clip:
    """`first`, then `second` (same frame size and rate): one clip. The sound is cross-faded
    over `crossfade_seconds` at the seam, `second`'s resampled to `first`'s rate if they differ;
    a clip with no sound on either side has none."""
    frames = np.concatenate([first.frames, second.frames])
    if first.audio is None or second.audio is None:
        return Clip(frames=frames, fps=first.fps)
    rate = first.sample_rate
    head = _fit_waveform(first.audio, rate, Fraction(len(first.frames)) / frame_rate(first.fps))
    tail = _resampled(second.audio, second.sample_rate, rate)
    tail = _matching_channels(tail, head.shape[0])
    fade = min(int(rate * crossfade_seconds), head.shape[1], tail.shape[1])
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        tail[:, :fade] = head[:, -fade:] * (1 - ramp) + tail[:, :fade] * ramp
        head = head[:, :-fade]
    audio = np.concatenate([head, tail], axis=1)
    return Clip(frames=frames, fps=first.fps, audio=audio, sample_rate=rate)


def _resampled(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return audio.copy()
    length = round(audio.shape[1] * target / rate)
    positions = np.linspace(0, audio.shape[1] - 1, length)
    indices = np.arange(audio.shape[1])
    return np.stack([np.interp(positions, indices, channel) for channel in audio]).astype(
        np.float32
    )


def _matching_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    if audio.shape[0] == channels:
        return audio
    return np.repeat(audio.mean(axis=0, keepdims=True), channels, axis=0)


def encode_spritesheet(
    frames: np.ndarray, path: Path, *, columns: int = 5, rows: int = 5, tile_width: int = 256
) -> tuple[int, int]:
    """Write a JPEG grid of `columns` x `rows` frames taken evenly across the clip (scaled to
    `tile_width` wide); returns the sheet's size."""
    count = columns * rows
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    height, width = frames.shape[1:3]
    tile_height = _even(height * min(1.0, tile_width / width))
    tile_width = _even(width * min(1.0, tile_width / width))
    tiles = [_resized(frames[i], tile_width, tile_height) for i in picks]
    grid = np.concatenate(
        [np.concatenate(tiles[r * columns : (r + 1) * columns], axis=1) for r in range(rows)]
    )
    return encode_thumbnail(grid, path, max_width=grid.shape[1])


def _resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return rgb.reformat(width=width, height=height).to_ndarray(format="rgb24")


def center_crop(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """The centered ``width`` x ``height`` window of channel-last images (a view, no copy).

    Works on one image (H, W, C) or a stack (..., H, W, C).
    """
    if frames.ndim < 3:
        raise ValueError(f"expected channel-last images, got shape {frames.shape}")
    have_height, have_width = frames.shape[-3], frames.shape[-2]
    if not (0 < width <= have_width and 0 < height <= have_height):
        raise ValueError(
            f"cannot crop {have_width}x{have_height} frames to {width}x{height}: "
            "the crop must be positive and no larger than the frames"
        )
    top = (have_height - height) // 2
    left = (have_width - width) // 2
    return frames[..., top : top + height, left : left + width, :]


def fit_to_canvas(
    frames: np.ndarray, output: tuple[int, int], canvas: tuple[int, int]
) -> np.ndarray:
    """Frames (F, H, W, 3) scaled to cover `output` (width, height) and center-cropped to it, then
    edge-padded to `canvas` around the window `center_crop` takes back: so an input image is
    exactly the encoded clip's frame although the model generates a larger canvas."""
    width, height = output
    scale = max(width / frames.shape[2], height / frames.shape[1])
    cover = (
        max(width, math.ceil(frames.shape[2] * scale)),
        max(height, math.ceil(frames.shape[1] * scale)),
    )
    fitted = np.stack([center_crop(_resized(frame, *cover), width, height) for frame in frames])
    top, left = (canvas[1] - height) // 2, (canvas[0] - width) // 2
    padding = ((0, 0), (top, canvas[1] - height - top), (left, canvas[0] - width - left), (0, 0))
    return np.pad(fitted, padding, mode="edge")


def frame_rate(fps: float) -> Fraction:
    """The exact rate for ``fps``: NTSC rates (23.976, 29.97, 59.94) become n*1000/1001."""
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    ntsc = Fraction(round(fps * 1.001) * 1000, 1001)
    if ntsc > 0 and abs(float(ntsc) - fps) <= _NTSC_TOLERANCE * fps:
        return ntsc
    return Fraction(fps).limit_denominator(_MAX_RATE_DENOMINATOR)


# -- encoding: video ------------------------------------------------------------------------------


def _checked_frames(frames: np.ndarray) -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise ValueError("clip frames must be a uint8 numpy array")
    if frames.ndim != 4 or frames.shape[3] != 3 or len(frames) == 0:
        raise ValueError(f"clip frames must have shape (frames>0, H, W, 3), got {frames.shape}")
    return frames


def _check_output_size(width: int, height: int, frames: np.ndarray) -> None:
    if width % 2 or height % 2:
        raise ValueError(f"output size {width}x{height} is odd; yuv420p needs even sides")
    if width > frames.shape[2] or height > frames.shape[1]:
        raise ValueError(
            f"output size {width}x{height} is larger than the frames "
            f"({frames.shape[2]}x{frames.shape[1]})"
        )


def _add_video_stream(
    container: av.container.OutputContainer,
    width: int,
    height: int,
    rate: Fraction,
    preset: str,
    crf: int,
) -> av.VideoStream:
    stream = container.add_stream(
        _VIDEO_ENCODER,
        rate=rate,
        time_base=1 / rate,
        options={"preset": preset, "crf": str(crf), **_x264_cpu_options()},
    )
    stream.width = width
    stream.height = height
    stream.pix_fmt = _PIX_FMT
    context = stream.codec_context
    # PyAV defaults to SLICE threading, which makes x264 use sliced threads (less efficient);
    # FRAME gives x264's frame threads, as the ffmpeg CLI does. 0 = one per core.
    context.thread_type = "FRAME"
    context.thread_count = 0
    context.colorspace = _AVCOL_SPC_BT709
    context.color_primaries = ColorPrimaries.BT709
    context.color_trc = ColorTrc.BT709
    context.color_range = ColorRange.MPEG
    return stream


# x264's AVX-512 code reads memory it has not written: with it, one clip encodes to different
# bits from run to run (and decodes up to a few levels apart), so one seed would not give one
# file. Where the CPU has AVX-512, x264 gets every instruction set below it instead; no slower.
_X264_BELOW_AVX512 = "AVX2,SSE2Fast,Cache64"
_CPU_INFO = Path("/proc/cpuinfo")


@functools.cache
def _x264_cpu_options() -> dict[str, str]:
    if "avx512f" not in _cpu_flags(_CPU_INFO):
        return {}
    return {"x264-params": f"asm={_X264_BELOW_AVX512}"}


def _cpu_flags(cpu_info: Path) -> set[str]:
    """The CPU's feature flags as Linux lists them on x86 (empty elsewhere)."""
    try:
        text = cpu_info.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return set(value.split())
    return set()


def _mux_video(
    container: av.container.OutputContainer,
    stream: av.VideoStream,
    frames: np.ndarray,
    rate: Fraction,
) -> None:
    time_base = 1 / rate
    for index, frame in enumerate(_yuv_frames(frames)):
        frame.pts = index
        frame.time_base = time_base
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _yuv_frames(frames: np.ndarray) -> Iterator[av.VideoFrame]:
    """BT.709 limited-range yuv420p frames, converted one at a time as the encoder takes them.

    No helper thread: x264's frame threads keep encoding in the background while the next frame
    is converted (swscale itself slices across cores), and a conversion thread measured no faster.
    """
    if frames.strides[-2:] != (3, 1):
        frames = np.ascontiguousarray(frames)
    reformatter = VideoReformatter()
    for image in frames:
        yield _to_yuv(reformatter, image)


def _to_yuv(reformatter: VideoReformatter, image: np.ndarray) -> av.VideoFrame:
    # from_numpy_buffer wraps the (possibly cropped, row-strided) view without copying it.
    rgb = av.VideoFrame.from_numpy_buffer(image, format="rgb24")
    return reformatter.reformat(
        rgb,
        format=_PIX_FMT,
        src_colorspace=Colorspace.ITU709,
        dst_colorspace=Colorspace.ITU709,
        dst_color_range=ColorRange.MPEG,
        threads=0,
    )


# -- encoding: audio ------------------------------------------------------------------------------


def _mux_audio(
    container: av.container.OutputContainer,
    audio: np.ndarray,
    sample_rate: int,
    duration: Fraction,
) -> None:
    """Encode the whole track now; the muxer holds it back to interleave it with the video."""
    waveform = _fit_waveform(audio, sample_rate, duration)
    channels = waveform.shape[0]
    stream = container.add_stream(_AUDIO_ENCODER, rate=_encoder_sample_rate(sample_rate))
    stream.codec_context.layout = _LAYOUTS[channels]
    stream.codec_context.bit_rate = _AUDIO_BITRATE_PER_CHANNEL * channels
    frame = av.AudioFrame.from_ndarray(waveform, format="fltp", layout=_LAYOUTS[channels])
    frame.sample_rate = sample_rate
    frame.time_base = Fraction(1, sample_rate)
    frame.pts = 0
    # The codec's own AudioResampler converts the rate when it differs and cuts the track into
    # the encoder's 1024-sample frames (the last one short).
    container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _fit_waveform(audio: np.ndarray, sample_rate: int, duration: Fraction) -> np.ndarray:
    """(channels, samples) float32 in [-1, 1], padded with silence or trimmed to ``duration``."""
    if sample_rate <= 0:
        raise ValueError(f"clip has audio but its sample rate is {sample_rate}")
    waveform = np.asarray(audio, dtype=np.float32)
    if waveform.ndim == 1:
        waveform = waveform[np.newaxis]
    if waveform.ndim != 2 or waveform.shape[0] not in _LAYOUTS:
        raise ValueError(
            f"clip audio must be mono or stereo (channels, samples), got shape {waveform.shape}"
        )
    samples = round(duration * sample_rate)
    fitted = np.zeros((waveform.shape[0], samples), dtype=np.float32)
    kept = min(samples, waveform.shape[1])
    np.clip(waveform[:, :kept], -1.0, 1.0, out=fitted[:, :kept])
    return fitted


def _encoder_sample_rate(sample_rate: int) -> int:
    supported = av.Codec(_AUDIO_ENCODER, "w").audio_rates or ()
    if not supported or sample_rate in supported:
        return sample_rate
    return _FALLBACK_SAMPLE_RATE


# -- probing --------------------------------------------------------------------------------------


def _duration(container: av.container.InputContainer, video: av.VideoStream) -> float:
    if video.duration is not None and video.time_base is not None:
        return float(video.duration * video.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _count_packets(container: av.container.InputContainer, video: av.VideoStream) -> int:
    return sum(1 for packet in container.demux(video) if packet.size)


def _stream_fps(video: av.VideoStream, frame_count: int, duration: float) -> float:
    rate = video.average_rate or video.guessed_rate or video.base_rate
    if rate:
        return float(rate)
    return frame_count / duration if duration > 0 else 0.0
