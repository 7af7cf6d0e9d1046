"""Frames in and out: images, mp4 files. Writes are atomic (temp file + rename)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import PIL.Image

from .errors import InputError


def to_uint8(frames) -> np.ndarray:
    """PIL images, or float arrays in [0, 1], or uint8 arrays -> uint8 [F, H, W, 3]."""
    if isinstance(frames, np.ndarray) and frames.dtype == np.uint8:
        return frames
    if isinstance(frames, np.ndarray):
        return (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)
    return np.stack([np.asarray(f.convert("RGB")) for f in frames])


def load_image(path: str | Path) -> PIL.Image.Image:
    """An RGB image, or an `InputError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image not found")
    try:
        with PIL.Image.open(path) as image:
            return image.convert("RGB")
    except Exception as e:
        raise InputError(f"{path}: not a readable image ({type(e).__name__})") from None


def write_video(frames, path: str | Path, fps: int) -> Path:
    """Encode frames to H.264 mp4 (yuv420p, plays everywhere). Atomic."""
    import imageio.v3 as iio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    iio.imwrite(tmp, to_uint8(frames), fps=fps, codec="libx264", macro_block_size=1, pixelformat="yuv420p")
    os.replace(tmp, path)
    return path


def write_lossless_video(frames, path: str | Path, fps: int = 8) -> Path:
    """Encode frames to an exactly lossless mp4 (H.264 RGB, qp 0): for training data, where
    chroma subsampling would blur small frames. `read_video` reads it back bit for bit. Atomic."""
    import imageio.v3 as iio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    iio.imwrite(
        tmp,
        to_uint8(frames),
        fps=fps,
        codec="libx264rgb",
        macro_block_size=1,
        pixelformat="rgb24",
        output_params=["-qp", "0"],
    )
    os.replace(tmp, path)
    return path


def read_video(path: str | Path) -> np.ndarray:
    """uint8 [F, H, W, 3]."""
    import imageio.v3 as iio

    try:
        return np.asarray(iio.imread(path, plugin="pyav" if _has_pyav() else None))
    except Exception as e:
        raise InputError(f"{path}: not a readable video ({type(e).__name__})") from None


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401

        return True
    except ImportError:
        return False


def concat_videos(paths: list[Path], out: str | Path) -> Path:
    """Join shot videos in the given order without re-encoding (ffmpeg concat demuxer).
    The list is explicit: stray files in the folder can never end up in the story."""
    import subprocess

    import imageio_ffmpeg

    out = Path(out)
    listing = out.with_name(f".{out.stem}.concat.txt")
    listing.write_text("".join(f"file '{Path(p).resolve()}'\n" for p in paths))
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing)]
    result = subprocess.run(cmd + ["-c", "copy", str(tmp)], capture_output=True, text=True)
    listing.unlink()
    if result.returncode != 0:
        raise InputError(f"{out}: could not join the shot videos ({result.stderr.strip().splitlines()[-1:]})")
    os.replace(tmp, out)
    return out
