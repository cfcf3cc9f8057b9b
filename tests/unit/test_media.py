"""Media: real H.264 + AAC encodes of small synthetic clips, read back with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from kinema.domain import Clip
from kinema.media import MediaInfo, center_crop, encode_mp4, frame_rate, probe

AAC_FRAME = 1024
RED = (220, 30, 30)
BLUE = (30, 30, 220)
GREEN = (30, 220, 30)


def gradient_frames(count: int, height: int, width: int) -> np.ndarray:
    """A colored gradient that moves a little every frame."""
    y = np.arange(height)[:, None]
    x = np.arange(width)[None, :]
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    for index in range(count):
        frames[index, ..., 0] = (4 * x + 5 * index) % 256
        frames[index, ..., 1] = (4 * y + 3 * index) % 256
        frames[index, ..., 2] = 128
    return frames


def tone(seconds: float, sample_rate: int, channels: int = 2) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    waves = [np.sin(2 * np.pi * (440 + 220 * c) * t) for c in range(channels)]
    return (0.5 * np.stack(waves)).astype(np.float32)


def stream_durations(path: Path) -> dict[str, float]:
    with av.open(str(path)) as container:
        return {s.type: float(s.duration * s.time_base) for s in container.streams}


def first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "clip.mp4"


def test_round_trip_has_one_h264_and_one_aac_stream(out: Path) -> None:
    frames = gradient_frames(25, 48, 64)
    clip = Clip(frames=frames, fps=24.0, audio=tone(25 / 24, 48_000), sample_rate=48_000)

    info = encode_mp4(clip, out)

    assert info == probe(out)
    assert isinstance(info, MediaInfo)
    with av.open(str(out)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height, info.frame_count) == (64, 48, 25)
    assert info.fps == 24.0
    assert abs(info.duration - 25 / 24) <= 1 / 24
    assert info.has_audio
    assert (info.audio_sample_rate, info.audio_channels) == (48_000, 2)
    assert info.file_size == out.stat().st_size > 0


def blocky_noise(count: int, height: int, width: int) -> np.ndarray:
    """Coarse random blocks under fine noise: frames x264 has to search motion in."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 255, size=(count, height // 6 + 1, width // 8 + 1, 3))
    coarse = np.kron(blocks, np.ones((1, 6, 8, 1)))[:, :height, :width]
    return np.clip(coarse + rng.normal(0, 8, coarse.shape), 0, 255).astype(np.uint8)


def test_the_same_frames_encode_to_the_same_bytes_every_time(tmp_path: Path) -> None:
    """A seed promises one clip: the encoder may not add run-to-run noise of its own (x264's
    AVX-512 code did, at the tiny model's 96x54, about one run in three)."""
    clip = Clip(frames=blocky_noise(24, 54, 96), fps=24.0)
    encoded = set()
    for attempt in range(20):
        path = tmp_path / f"{attempt}.mp4"
        encode_mp4(clip, path)
        encoded.add(path.read_bytes())
    assert len(encoded) == 1


def test_decoded_frames_match_the_input_roughly(out: Path) -> None:
    frames = gradient_frames(5, 48, 64)
    encode_mp4(Clip(frames=frames, fps=24.0), out)
    decoded = first_frame(out)
    assert decoded.shape == (48, 64, 3)
    assert np.abs(decoded.astype(int) - frames[0].astype(int)).mean() < 8


def test_no_audio_means_no_audio_stream(out: Path) -> None:
    info = encode_mp4(Clip(frames=gradient_frames(10, 48, 64), fps=24.0), out)
    with av.open(str(out)) as container:
        assert len(container.streams.audio) == 0
        assert len(container.streams.video) == 1
    assert not info.has_audio
    assert info.audio_codec is info.audio_sample_rate is info.audio_channels is None


@pytest.mark.parametrize("audio_share", [0.7, 0.995, 1.4])
def test_audio_is_padded_or_trimmed_to_the_video(out: Path, audio_share: float) -> None:
    rate, count, fps = 48_000, 24, 24.0
    audio = tone(count / fps * audio_share, rate)
    info = encode_mp4(Clip(gradient_frames(count, 48, 64), fps, audio, rate), out)

    durations = stream_durations(out)
    assert abs(durations["audio"] - durations["video"]) <= AAC_FRAME / rate + 1 / fps
    assert abs(info.duration - count / fps) <= 1 / fps


def test_mono_audio_at_a_rate_aac_lacks_is_resampled(out: Path) -> None:
    count, fps = 12, 24.0
    audio = tone(count / fps, 11_111, channels=1)[0]  # 1-D is read as mono
    info = encode_mp4(Clip(gradient_frames(count, 48, 64), fps, audio, 11_111), out)
    assert (info.audio_sample_rate, info.audio_channels) == (48_000, 1)
    durations = stream_durations(out)
    assert abs(durations["audio"] - durations["video"]) <= AAC_FRAME / 48_000 + 1 / fps


def test_mono_16k_audio_keeps_its_rate(out: Path) -> None:
    audio = tone(0.5, 16_000, channels=1)
    info = encode_mp4(Clip(gradient_frames(12, 48, 64), 24.0, audio, 16_000), out)
    assert (info.audio_sample_rate, info.audio_channels) == (16_000, 1)


@pytest.mark.parametrize("fps", [23.976, 24_000 / 1001])
def test_fractional_fps_is_kept_exactly(out: Path, fps: float) -> None:
    info = encode_mp4(Clip(gradient_frames(24, 48, 64), fps), out)
    assert abs(info.fps - 24_000 / 1001) < 1e-6  # not 23, not 24
    assert abs(info.duration - 24 * 1001 / 24_000) < 1e-3
    with av.open(str(out)) as container:
        assert container.streams.video[0].average_rate == Fraction(24_000, 1001)


def test_frame_rate_snaps_ntsc_rates_and_keeps_others() -> None:
    assert frame_rate(24.0) == 24
    assert frame_rate(23.976) == Fraction(24_000, 1001)
    assert frame_rate(29.97) == Fraction(30_000, 1001)
    assert frame_rate(59.94) == Fraction(60_000, 1001)
    assert frame_rate(12.5) == Fraction(25, 2)
    with pytest.raises(ValueError):
        frame_rate(0.0)


def test_crop_is_centered(out: Path) -> None:
    # 128x64 frames: a green border (16 px left/right, 8 px top/bottom) around red | blue halves.
    frames = np.empty((3, 64, 128, 3), dtype=np.uint8)
    frames[:] = GREEN
    frames[:, 8:56, 16:64] = RED
    frames[:, 8:56, 64:112] = BLUE

    info = encode_mp4(Clip(frames=frames, fps=24.0), out, size=(96, 48))

    assert (info.width, info.height) == (96, 48)
    decoded = first_frame(out).astype(int)
    left, right = decoded[:, 4:44].reshape(-1, 3), decoded[:, 52:92].reshape(-1, 3)
    assert np.abs(left.mean(axis=0) - RED).max() < 25
    assert np.abs(right.mean(axis=0) - BLUE).max() < 25
    assert decoded[:, :, 1].max() < 120  # no green border left anywhere


def test_generation_size_is_cropped_to_1080p(out: Path) -> None:
    frames = np.zeros((2, 1088, 1920, 3), dtype=np.uint8)
    frames[:, 4:1084] = 200
    info = encode_mp4(Clip(frames=frames, fps=24.0), out, size=(1920, 1080))
    assert (info.width, info.height, info.frame_count) == (1920, 1080, 2)
    assert first_frame(out).min() > 150  # only the bright middle rows survive


def test_moov_atom_comes_before_mdat(out: Path) -> None:
    audio = tone(0.5, 48_000)
    encode_mp4(Clip(gradient_frames(12, 48, 64), 24.0, audio, 48_000), out)
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")


def test_audio_is_interleaved_with_video_even_for_long_clips(out: Path) -> None:
    # 20 s: longer than the muxer's default 10 s interleave window.
    count, fps = 241, 12.0
    audio = tone(count / fps, 48_000)
    encode_mp4(Clip(gradient_frames(count, 48, 64), fps, audio, 48_000), out)
    with av.open(str(out)) as container:
        packets = [(p.pos, float(p.dts * p.time_base)) for p in container.demux() if p.size]
    latest, worst_lag = float("-inf"), 0.0
    for _, time in sorted(packets):
        latest = max(latest, time)
        worst_lag = max(worst_lag, latest - time)
    assert worst_lag < 1.0  # a player reading the file front to back never waits long


@pytest.mark.parametrize("size", [(63, 48), (64, 47)])
def test_odd_output_size_is_rejected(out: Path, size: tuple[int, int]) -> None:
    clip = Clip(frames=gradient_frames(2, 48, 64), fps=24.0)
    with pytest.raises(ValueError, match=f"{size[0]}x{size[1]}"):
        encode_mp4(clip, out, size=size)


def test_odd_frames_without_a_size_are_rejected(out: Path) -> None:
    with pytest.raises(ValueError, match="63x47"):
        encode_mp4(Clip(frames=gradient_frames(2, 47, 63), fps=24.0), out)


def test_size_larger_than_the_frames_is_rejected(out: Path) -> None:
    with pytest.raises(ValueError, match="larger"):
        encode_mp4(Clip(frames=gradient_frames(2, 48, 64), fps=24.0), out, size=(80, 48))


def test_bad_audio_shape_is_rejected(out: Path) -> None:
    audio = np.zeros((6, 1000), dtype=np.float32)
    with pytest.raises(ValueError, match="mono or stereo"):
        encode_mp4(Clip(gradient_frames(2, 48, 64), 24.0, audio, 48_000), out)


def test_center_crop_is_a_centered_view() -> None:
    frames = gradient_frames(2, 10, 12)
    cropped = center_crop(frames, 8, 6)
    assert cropped.shape == (2, 6, 8, 3)
    assert np.shares_memory(cropped, frames)
    np.testing.assert_array_equal(cropped, frames[:, 2:8, 2:10])
    np.testing.assert_array_equal(center_crop(frames[0], 8, 6), frames[0, 2:8, 2:10])
    with pytest.raises(ValueError):
        center_crop(frames, 14, 6)
