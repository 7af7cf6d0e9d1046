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


def test_the_stored_h100_figures_give_the_benchmarks_page_table():
    """docs/benchmarks.md quotes benchmarks/results/real_size_*_h100.json: the report of those files
    must print the figures the page states."""
    results = REPO / "benchmarks" / "results"
    table = run("--report", results / "real_size_forward_h100.json", results / "real_size_shot_h100.json").stdout
    readme = (REPO / "docs" / "benchmarks.md").read_text()
    assert "device: NVIDIA H100 80GB HBM3" in table
    for row, readme_text in [
        ("| forward, eager | 10 | 5.804 | 31.9 |", "| eager (s) | 3.22 | 3.49 | 4.08 | 4.50 | 5.80 |"),
        ("| mode group-offload | 10 | 6.341 | 7.0 |", "6.34 s group-offload\n(7.0 GiB)"),
        ("| 80 GB | resident (resident) | 28.6 | 24.1 | 0.48 | 0.03 | 3.94 | 74.3 | 1.1% |", "| 80 GB | resident | 28.6 | 24.1 | 0.48 | 3.94 | 74.3 | 1.1% |"),
        ("| 24 GB | group-offload (group-offload) | 34.0 | 26.4 | 0.57 | 0.00 | 6.98 | 7.6 | 1.6% |", "| 24 GB (emulated) | group-offload | 34.0 | 26.4 | 0.57 | 6.98 | 7.6 | 1.6% |"),
        ("full quality 71.0 min; preview 4.6 min; compiled: full 59.6 min, preview 4.1 min", "71.0 min at full quality"),
        ("M=10/M=0 eager 1.80; compiled 1.88; group-offload / resident 1.09", "1.80 eager and 1.88 compiled"),
    ]:  # fmt: skip
        assert row in table, row
        assert readme_text in readme, readme_text
