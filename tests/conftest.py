import os
from pathlib import Path

import pytest

# Tests never touch a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
STBENCH = REPO.parent / "shared" / "stbench"


@pytest.fixture(scope="session")
def stbench_files() -> list[Path]:
    files = sorted(STBENCH.glob("*.json"))
    assert len(files) == 30, f"expected the 30 ST-Bench scripts in {STBENCH}, found {len(files)}"
    return files


@pytest.fixture
def tiny_pipe():
    from storymem import StoryMemPipeline

    pipe = StoryMemPipeline.from_preset("tiny")
    pipe.set_progress_bar_config(disable=True)
    return pipe
