"""Frames in and out: images, mp4 files. Writes are atomic (temp file + rename)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps

from .errors import InputError


def to_uint8(frames) -> np.ndarray:
    """PIL images, or float arrays in [0, 1], or uint8 arrays -> uint8 [F, H, W, 3]."""
    if isinstance(frames, np.ndarray) and frames.dtype == np.uint8:
        return frames
    if isinstance(frames, np.ndarray):
        return (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)
    return np.stack([np.asarray(f.convert("RGB")) for f in frames])


MAX_IMAGE_PIXELS = 64_000_000  # a 8000x8000 photo; larger is refused before it is decoded


def load_image(path: str | Path) -> PIL.Image.Image:
    """An RGB image, or an `InputError` naming the file. Every PIL mode converts faithfully:
    16-bit and float greyscale are scaled (not clipped), transparency is flattened onto white,
    CMYK and palettes become RGB, and the EXIF orientation is applied."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image not found")
    try:
        with PIL.Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise InputError(
                    f"{path}: the image is {width}x{height} pixels, more than the {MAX_IMAGE_PIXELS // 10**6} MP "
                    "limit; downscale it (the model works at 832x480)"
                )
            return to_rgb(PIL.ImageOps.exif_transpose(image))
    except InputError:
        raise
    except PIL.Image.DecompressionBombError:
        raise InputError(
            f"{path}: the image is larger than the {MAX_IMAGE_PIXELS // 10**6} MP limit (refused as a "
            "decompression bomb); downscale it"
        ) from None
    except Exception as e:  # truncated or foreign
        raise InputError(f"{path}: not a readable image ({type(e).__name__})") from None


def to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max(initial=0) > 255 else 255.0  # 16-bit data, or 8-bit in a wide mode
        grey = np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8)
        return PIL.Image.fromarray(grey).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


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
