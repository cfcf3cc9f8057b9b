"""Pictures that show in the tiny model's clips, and how closely a frame shows one."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image


def half_white(width: int, height: int, mirrored: bool = False) -> Image.Image:
    """Left half white, right half black (mirrored: the other way round)."""
    pixels = np.zeros((height, width, 3), np.uint8)
    white = slice(width // 2, None) if mirrored else slice(None, width // 2)
    pixels[:, white] = 255
    return Image.fromarray(pixels, "RGB")


def frames(path: Path) -> np.ndarray:
    """Every video frame of the mp4 as (F, H, W, 3) uint8."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def correlation(frame: np.ndarray, image: Image.Image) -> float:
    """Pearson correlation of the grayscale (mean over RGB) frame and image, the image resized to
    the frame's size."""
    height, width = frame.shape[:2]
    resized = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), np.float64)
    a = frame.astype(np.float64).mean(axis=2).ravel()
    b = resized.mean(axis=2).ravel()
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator else 0.0
