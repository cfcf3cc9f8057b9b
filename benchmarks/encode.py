"""Encode: kinema.media.encode_mp4 vs the ffmpeg CLI on the same raw frames and audio.

Makes a synthetic clip (a moving gradient and disc with noise, so the encoder works as on real
content, plus 48 kHz stereo audio a few ms short, like the model's), then times
`encode_mp4` and `ffmpeg` fed the same RGB frames on stdin (rawvideo rgb24) and the same audio
from a temporary f32le file, with the same settings: libx264, same preset and crf, yuv420p with
the same BT.709 limited-range conversion and tags, AAC at the same bit rate, +faststart. Best of
N runs each (alternating, so background load hits both alike). Prints one JSON line.

    python benchmarks/encode.py --frames 121 --width 1920 --height 1080
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from functools import partial
from pathlib import Path

import av
import numpy as np

from kinema.domain import Clip
from kinema.media import encode_mp4, frame_rate, probe

AUDIO_BITRATE_PER_CHANNEL = 96_000  # what kinema.media uses
AUDIO_SHORT_S = 0.004  # the model's audio ends a few ms before the video


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=121)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--sample-rate", type=int, default=48_000)
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--crf", type=int, default=18)
    parser.add_argument("--runs", type=int, default=3)
    return parser.parse_args()


def synthetic_frames(count: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """Moving colour gradients, a moving disc and per-frame noise: (count, height, width, 3)."""
    rng = np.random.default_rng(seed)
    y = np.arange(height, dtype=np.int16)[:, None]
    x = np.arange(width, dtype=np.int16)[None, :]
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    for index in range(count):
        cx, cy = (width * (0.2 + 0.6 * index / max(count, 1))), height / 2
        disc = ((x - cx) ** 2 + (y - cy) ** 2) < (height / 6) ** 2
        noise = rng.integers(-6, 7, size=(height, width, 3), dtype=np.int16)
        image = np.stack(
            [(x + 6 * index) % 256 + 0 * y, (y + 3 * index) % 256 + 0 * x, 96 + disc * 120], -1
        )
        frames[index] = np.clip(image + noise, 0, 255).astype(np.uint8)
    return frames


def synthetic_audio(duration: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Stereo float32 (2, samples): a rising tone left, a falling tone right, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int((duration - AUDIO_SHORT_S) * sample_rate)) / sample_rate
    left = np.sin(2 * np.pi * (220 + 110 * t) * t)
    right = np.sin(2 * np.pi * (880 - 110 * t) * t)
    audio = 0.4 * np.stack([left, right]) + 0.02 * rng.standard_normal((2, t.size))
    return audio.astype(np.float32)


def fitted_audio(audio: np.ndarray, samples: int) -> np.ndarray:
    """The same padding kinema does, prepared ahead for ffmpeg (interleaved f32le)."""
    out = np.zeros((audio.shape[0], samples), dtype=np.float32)
    kept = min(samples, audio.shape[1])
    out[:, :kept] = audio[:, :kept]
    return np.ascontiguousarray(out.T)


def time_kinema(clip: Clip, path: Path, preset: str, crf: int) -> float:
    start = time.perf_counter()
    encode_mp4(clip, path, preset=preset, crf=crf)
    return time.perf_counter() - start


def ffmpeg_command(
    args: argparse.Namespace, rate: Fraction, audio_path: Path, out: Path
) -> list[str]:
    return [
        *("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"),
        *("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{args.width}x{args.height}"),
        *("-framerate", str(rate), "-i", "pipe:0"),
        *("-f", "f32le", "-ar", str(args.sample_rate), "-ac", "2", "-i", str(audio_path)),
        *("-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", args.preset),
        *("-crf", str(args.crf), "-vf", "scale=out_color_matrix=bt709:out_range=tv"),
        *("-pix_fmt", "yuv420p", "-colorspace", "bt709", "-color_primaries", "bt709"),
        *("-color_trc", "bt709", "-color_range", "tv"),
        *("-c:a", "aac", "-b:a", str(2 * AUDIO_BITRATE_PER_CHANNEL)),
        *("-movflags", "+faststart", str(out)),
    ]


def time_ffmpeg(command: list[str], frames: np.ndarray) -> float:
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=errors)
        assert proc.stdin is not None
        for image in frames:
            proc.stdin.write(image.data)
        proc.stdin.close()
        if proc.wait() != 0:
            errors.seek(0)
            raise RuntimeError(f"ffmpeg failed: {errors.read().decode(errors='replace')}")
    return time.perf_counter() - start


def best_of(runs: int, *timers: Callable[[], float]) -> list[float]:
    """Best time of each timer over `runs` rounds, alternating the timers within a round."""
    best = [float("inf")] * len(timers)
    for _ in range(runs):
        for index, timer in enumerate(timers):
            best[index] = min(best[index], timer())
    return best


def ffmpeg_version() -> str:
    out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0]


def main() -> None:
    args = parse_args()
    rate = frame_rate(args.fps)
    frames = synthetic_frames(args.frames, args.width, args.height)
    duration = args.frames / float(rate)
    audio = synthetic_audio(duration, args.sample_rate)
    clip = Clip(frames=frames, fps=args.fps, audio=audio, sample_rate=args.sample_rate)
    result: dict[str, object] = {
        "benchmark": "encode",
        "frames": args.frames,
        "width": args.width,
        "height": args.height,
        "fps": args.fps,
        "audio_sample_rate": args.sample_rate,
        "preset": args.preset,
        "crf": args.crf,
        "runs": args.runs,
        "cpu_count": os.cpu_count(),
        "pyav": av.__version__,
    }
    with tempfile.TemporaryDirectory(prefix="kinema-bench-") as tmp:
        ours, theirs, audio_path = Path(tmp, "kinema.mp4"), Path(tmp, "ffmpeg.mp4"), Path(tmp, "a")
        kinema_timer = partial(time_kinema, clip, ours, args.preset, args.crf)
        if shutil.which("ffmpeg") is None:
            (kinema_s,) = best_of(args.runs, kinema_timer)
            ffmpeg_s = None
            result["note"] = "ffmpeg CLI not found on PATH: no comparison"
        else:
            fitted_audio(audio, round(Fraction(args.frames) / rate * args.sample_rate)).tofile(
                audio_path
            )
            command = ffmpeg_command(args, rate, audio_path, theirs)
            kinema_s, ffmpeg_s = best_of(
                args.runs, kinema_timer, partial(time_ffmpeg, command, frames)
            )
            result["ffmpeg_version"] = ffmpeg_version()
            result["ffmpeg_file_size_bytes"] = theirs.stat().st_size
        info = probe(ours)
    result.update(
        kinema_s=round(kinema_s, 3),
        ffmpeg_s=None if ffmpeg_s is None else round(ffmpeg_s, 3),
        ratio_vs_ffmpeg=None if ffmpeg_s is None else round(kinema_s / ffmpeg_s, 3),
        kinema_fps=round(args.frames / kinema_s, 2),
        ffmpeg_fps=None if ffmpeg_s is None else round(args.frames / ffmpeg_s, 2),
        file_size_bytes=info.file_size,
        duration_s=round(info.duration, 4),
        has_audio=info.has_audio,
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
