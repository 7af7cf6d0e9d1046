"""Images in every PIL mode, and story files that are not what they seem (one line each)."""

import json
import os

import numpy as np
import PIL.Image
import pytest

from storymem import StoryError, load_story
from storymem.errors import InputError
from storymem.video import load_image

GOOD = {"story_overview": "x", "scenes": [{"scene_num": 1, "video_prompts": ["a fox"], "cut": [True]}]}


# ---------------------------------------------------------------------------- images
def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    grey = np.full((8, 8), 32768, np.uint16)  # mid grey in 16 bits
    PIL.Image.fromarray(grey).save(tmp_path / "g16.png")
    assert PIL.Image.open(tmp_path / "g16.png").mode.startswith("I")
    assert np.asarray(load_image(tmp_path / "g16.png"))[0, 0].tolist() == [128, 128, 128]


def test_transparency_is_flattened_onto_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    rgba[0, 0] = [255, 0, 0, 255]  # one opaque red pixel
    PIL.Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = np.asarray(load_image(tmp_path / "a.png"))
    assert image[0, 0].tolist() == [255, 0, 0] and image[1, 1].tolist() == [255, 255, 255]
    la = PIL.Image.fromarray(np.stack([np.full((4, 4), 50, np.uint8), np.zeros((4, 4), np.uint8)], -1), "LA")
    la.save(tmp_path / "la.png")
    assert np.asarray(load_image(tmp_path / "la.png"))[2, 2].tolist() == [255, 255, 255]
    palette = PIL.Image.fromarray(rgba, "RGBA").convert("P")
    palette.save(tmp_path / "p.png", transparency=0)
    assert load_image(tmp_path / "p.png").mode == "RGB"


def test_cmyk_and_exif_rotation(tmp_path):
    PIL.Image.new("CMYK", (4, 2), (0, 255, 255, 0)).save(tmp_path / "c.jpg")  # red in CMYK
    red = np.asarray(load_image(tmp_path / "c.jpg"))[0, 0]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    wide = PIL.Image.new("RGB", (6, 2), (10, 200, 10))
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    wide.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").size == (2, 6)


def test_a_huge_image_is_refused_before_it_is_decoded(tmp_path):
    import struct
    import zlib

    # a valid PNG header claiming 20000x20000 pixels (the pixel data is never read)
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IEND", b""))
    with pytest.raises(InputError, match="bomb.png: the image is larger than the 64 MP limit"):
        load_image(tmp_path / "bomb.png")
    big = PIL.Image.new("L", (9000, 8000))  # 72 MP: under PIL's own limit, over ours
    big.save(tmp_path / "big.png")
    with pytest.raises(InputError, match="big.png: the image is 9000x8000 pixels, more than the 64 MP limit"):
        load_image(tmp_path / "big.png")


# ---------------------------------------------------------------------------- story files
def write(tmp_path, text, name="s.json"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"scenes": [], "scenes": []}', "the key 'scenes' appears twice in one object"),
        (
            json.dumps(GOOD).replace('"a fox"', '"a fox \\ud800"'),
            "scenes[0].video_prompts[0]: holds a lone UTF-16 surrogate",
        ),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (
            json.dumps(GOOD).replace('"a fox"', '"\\u200b \\u200b\\t"'),
            "must not be empty (it has no visible characters)",
        ),
    ],
)
def test_story_files_that_are_not_what_they_seem(tmp_path, text, message):
    with pytest.raises(StoryError) as info:
        load_story(write(tmp_path, text))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_non_regular_and_oversize_files(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(StoryError, match="is not a regular file"):  # instead of blocking forever
        load_story(fifo)
    big = write(tmp_path, json.dumps({**GOOD, "story_overview": "x" * 11_000_000}))
    with pytest.raises(StoryError, match=r"is 11.0 MB; a story script is at most 10 MB"):
        load_story(big)


def test_a_prompt_past_the_text_limit_warns_with_its_token_count(tiny_pipe):
    from storymem import StoryMemWarning

    long = "a fox " * 20  # the tiny tokenizer reads 32 tokens
    with pytest.warns(StoryMemWarning, match=r"a prompt has \d+ tokens; the text encoder reads the first 32"):
        tiny_pipe.encode_story_prompts([long], negative=False)
