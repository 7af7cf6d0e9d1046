import os
from pathlib import Path

import pytest

# Tests never touch a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Under `pytest -n` every core already runs a worker: one torch thread each, or the workers'
# thread pools fight over the cores (the CLI makes the same choice for the built-in models).
if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
    import torch

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
STBENCH = Path(os.environ.get("STORYMEM_STBENCH", REPO.parent / "shared" / "stbench"))


@pytest.fixture(scope="session")
def stbench_files() -> list[Path]:
    """The 30 real ST-Bench scripts, read from ../shared (never copied into the repository).
    A clone without ../shared skips the tests that need them; .ci/run sets
    STORYMEM_REQUIRE_STBENCH=1, which makes their absence a failure."""
    if not STBENCH.is_dir():
        message = f"the ST-Bench scripts are not at {STBENCH} (a clone without ../shared)"
        if os.environ.get("STORYMEM_REQUIRE_STBENCH") == "1":
            pytest.fail(message + "; CI requires them")
        pytest.skip(message)
    files = sorted(STBENCH.glob("*.json"))
    assert len(files) == 30, f"expected the 30 ST-Bench scripts in {STBENCH}, found {len(files)}"
    return files


@pytest.fixture
def tiny_pipe():
    from storymem import StoryMemPipeline

    pipe = StoryMemPipeline.from_preset("tiny")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `storymem ARGS...` in this process: (exit code, stdout, stderr). Faster than a
    subprocess; the CLI's thread choice for the built-in models is undone afterwards."""
    import sys

    import torch

    from storymem.cli import main

    def invoke(*args):
        threads = torch.get_num_threads()
        monkeypatch.setattr(sys, "argv", ["storymem", *map(str, args)])
        try:
            with pytest.raises(SystemExit) as exit_info:
                main()
        finally:
            torch.set_num_threads(threads)
        captured = capsys.readouterr()
        return exit_info.value.code, captured.out, captured.err

    return invoke


RUN_ARGUMENTS = (
    "resume",
    "overwrite",
    "embedder",
    "scorer",
    "aesthetic_head",
    "progress",
    "release_t2v",
    "callback_on_step_end",
)


def run_story(pipe, story, out, **kw):
    """`storymem.generate_story` (quiet), given `RunSettings` fields and its own arguments in one
    call: the tests' shorthand."""
    from storymem import RunSettings, generate_story

    arguments = {k: kw.pop(k) for k in list(kw) if k in RUN_ARGUMENTS}
    arguments.setdefault("progress", False)
    return generate_story(pipe, story, out, RunSettings.from_dict(kw), **arguments)
