"""The storyboard: one row per shot, a few of its frames, then the memory that conditioned it.

A person should see at a glance whether the characters stay the same from shot to shot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont


def _thumb(image: PIL.Image.Image, height: int) -> PIL.Image.Image:
    width = max(1, round(image.width * height / image.height))
    # Nearest for upscaling tiny frames (keeps pixels crisp), bicubic for real ones.
    resample = PIL.Image.NEAREST if image.height < height else PIL.Image.BICUBIC
    return image.convert("RGB").resize((width, height), resample)


def evenly_spaced(count: int, total: int) -> list[int]:
    if total <= count:
        return list(range(total))
    return [round(i * (total - 1) / (count - 1)) for i in range(count)]


def _memory_caption(memory: Sequence) -> str:
    return f"memory ({len(memory)})"


def render_storyboard(
    rows: Sequence[tuple[str, Sequence[PIL.Image.Image], Sequence[PIL.Image.Image]]],
    path: str | Path,
    frame_height: int = 96,
    memory_height: int = 56,
) -> Path:
    """rows: (label, shot frames to show, memory images that conditioned the shot)."""
    pad, label_h = 8, 18
    font = PIL.ImageFont.load_default(size=13)
    rendered = []
    for label, frames, memory in rows:
        shot = [_thumb(f, frame_height) for f in frames]
        mem = [_thumb(m, memory_height) for m in memory]
        # the memory block is as wide as its thumbnails or its caption, whichever is wider
        mem_w = max(sum(t.width + 2 for t in mem), font.getlength(_memory_caption(mem)))
        width = sum(t.width + 2 for t in shot) + (pad * 3 + round(mem_w) if mem else 0)
        rendered.append((label, shot, mem, width))
    total_w = pad * 2 + max(max(r[3] for r in rendered), 420)
    row_h = label_h + frame_height + pad
    board = PIL.Image.new("RGB", (total_w, pad + row_h * len(rendered)), "white")
    draw = PIL.ImageDraw.Draw(board)
    for r, (label, shot, mem, _) in enumerate(rendered):
        y = pad + r * row_h
        draw.text((pad, y), label, fill="black", font=font)
        x, y = pad, y + label_h
        for t in shot:
            board.paste(t, (x, y))
            x += t.width + 2
        if mem:
            x += pad
            draw.line([(x, y), (x, y + frame_height)], fill=(160, 160, 160), width=2)
            x += pad * 2
            draw.text((x, y + memory_height + 2), _memory_caption(mem), fill=(90, 90, 90), font=font)
            for t in mem:
                board.paste(t, (x, y))
                x += t.width + 2
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    board.save(tmp)
    tmp.replace(path)
    return path


def render_contact_sheet(
    items: Sequence[tuple[PIL.Image.Image, str]], path: str | Path, height: int = 96, per_row: int = 6
) -> Path:
    """A grid of captioned thumbnails (a run's memory: `storymem memory RUN`). The caption's
    lines go under each picture; an empty sheet says so."""
    pad, font = 8, PIL.ImageFont.load_default(size=13)
    thumbs = [(_thumb(image, height), caption.splitlines()) for image, caption in items]
    line_h = 16
    lines = max((len(c) for _, c in thumbs), default=1)
    cell_w = max([t.width for t, _ in thumbs] + [round(font.getlength(x)) for _, c in thumbs for x in c] + [height])
    cell_h = height + 4 + line_h * lines
    columns = max(1, min(per_row, len(thumbs)))
    rows = max(1, -(-len(thumbs) // columns))
    sheet = PIL.Image.new("RGB", (pad + columns * (cell_w + pad), pad + rows * (cell_h + pad)), "white")
    draw = PIL.ImageDraw.Draw(sheet)
    if not thumbs:
        draw.text((pad, pad), "the memory is empty", fill="black", font=font)
    for i, (thumb, caption) in enumerate(thumbs):
        x, y = pad + (i % columns) * (cell_w + pad), pad + (i // columns) * (cell_h + pad)
        sheet.paste(thumb, (x, y))
        for j, line in enumerate(caption):
            draw.text((x, y + height + 4 + j * line_h), line, fill="black" if j == 0 else (90, 90, 90), font=font)
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    sheet.save(tmp)
    tmp.replace(path)
    return path
