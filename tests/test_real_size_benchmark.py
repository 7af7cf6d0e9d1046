"""benchmarks/real_size.py runs its real-size code at tiny scale on a CPU, and reports honestly."""

import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO

SCRIPT = REPO / "benchmarks" / "real_size.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_tiny_scale_measures_every_section_and_merges_reports(tmp_path):
    forward, shot = tmp_path / "forward.json", tmp_path / "shot.json"
    common = ["--scale", "tiny", "--device", "cpu", "--repeats", "1"]
    assert run("--sections", "forward", "--out", forward, *common).returncode == 0
    result = run("--sections", "shot", "--out", shot, *common)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(forward.read_text())["forward"]
    assert set(figures["eager"]) == {"0", "1", "3", "5", "10"}
    assert set(figures["modes"]) == {"resident", "fp8", "group-offload"}
    assert figures["lora"]["merged"]["s"] > 0
    cards = json.loads(shot.read_text())["shot"]["cards"]
    assert [cards[c]["mode"] for c in ("80", "48", "24")] == ["resident", "fp8", "group-offload"]
    assert all(c["shot"]["denoise_s"] > 0 for c in cards.values())

    table = run("--report", forward, shot).stdout
    assert "| forward, eager | 10 |" in table and "| 24 GB | group-offload" in table
    assert "projected 10-shot story" in table and "preview" in table


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message is for machines without CUDA")
def test_without_cuda_it_says_so_and_exits_0():
    result = run()
    assert result.returncode == 0
    assert result.stdout.startswith("no CUDA device here")
