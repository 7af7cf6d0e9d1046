"""Many stories, one run folder each: the jobs of `storymem generate A.json B.json`, of a
benchmark (every story x every method) and of Ray workers, and how they run in one process.

A job's run folder is a normal run: a finished one is skipped, an interrupted one resumes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .errors import InputError
from .options import RunSettings
from .runner import StoryResult, generate_story
from .story import Story


@dataclass(frozen=True)
class Job:
    """One story made with one set of settings (its method included) into one run folder."""

    name: str
    story: Story
    run_dir: Path
    settings: RunSettings
    aesthetic_head: str | None = None  # the LAION head for --quality aesthetic

    @property
    def method(self) -> str:
        return self.settings.method


def find_stories(sources: list[Path]) -> dict[str, Path]:
    """Story files by name (file stem) from files and folders (their *.json, sorted)."""
    found: dict[str, Path] = {}
    for source in sources:
        source = Path(source)
        if source.is_dir():
            files = sorted(source.glob("*.json"))
            if not files:
                raise InputError(f"{source}: no story scripts (*.json) in this folder")
        elif source.is_file():
            files = [source]
        else:
            raise InputError(f"{source}: no such story file or folder")
        for file in files:
            if file.stem in found and found[file.stem] != file:
                raise InputError(f"{file}: another story is also named {file.stem!r} ({found[file.stem]}); rename one")
            found[file.stem] = file
    return found


def run_job(pipe, job: Job, release_t2v: bool = False) -> StoryResult:
    """Generate (or resume, or skip if finished) one job's run folder."""
    resume = (job.run_dir / "state.json").is_file()
    return generate_story(
        pipe, job.story, job.run_dir, job.settings, resume=resume, progress=False, release_t2v=release_t2v,
        aesthetic_head=job.aesthetic_head,
    )  # fmt: skip


def run_job_as_its_method(pipe, job: Job) -> int:
    """`run_job` with the StoryMem LoRA off for the baselines; returns the shots generated."""
    with contextlib.nullcontext() if job.method == "storymem" else pipe.lora_disabled():
        return run_job(pipe, job).generated


def generate_jobs(pipe, jobs: list[Job], progress: bool = True) -> int:
    """The jobs one after another in this process; returns the shots generated."""
    generated = 0
    bar = tqdm(total=len(jobs), desc="runs", unit="run", disable=not progress)
    for method in dict.fromkeys(job.method for job in jobs):
        # a baseline's stories all run in one block without the LoRA (switched once)
        with contextlib.nullcontext() if method == "storymem" else pipe.lora_disabled():
            for job in (j for j in jobs if j.method == method):
                bar.set_postfix_str(f"{job.name}/{method}")
                generated += run_job(pipe, job).generated
                bar.update(1)
    bar.close()
    return generated
