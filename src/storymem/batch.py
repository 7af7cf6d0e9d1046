"""Many stories, one run folder each: the jobs of `storymem generate A.json B.json`, of a
benchmark (every story x every method) and of Ray workers, and how they run in one process.

A job's run folder is a normal run: a finished one is skipped, an interrupted one resumes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .errors import InputError, StoryMemError
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


@dataclass
class BatchResult:
    generated: int = 0  # shots generated
    failures: list[tuple[Job, str]] = field(default_factory=list)  # the jobs that failed, and why

    def failed(self, job: Job, error: BaseException) -> None:
        why = str(error) if isinstance(error, StoryMemError) else f"{type(error).__name__}: {error}"
        self.failures.append((job, why))

    def succeeded(self, jobs: list[Job]) -> list[Job]:
        failed = {id(job) for job, _ in self.failures}
        return [job for job in jobs if id(job) not in failed]

    def report(self) -> list[str]:
        """One line per failed run, naming its story and method."""
        return [f"{job.name}/{job.method}: {why}" for job, why in self.failures]


def run_job_as_its_method(pipe, job: Job) -> int:
    """`run_job` with the StoryMem LoRA off for the baselines; returns the shots generated."""
    with contextlib.nullcontext() if job.method == "storymem" else pipe.lora_disabled():
        return run_job(pipe, job).generated


def generate_jobs(pipe, jobs: list[Job], progress: bool = True) -> BatchResult:
    """The jobs one after another in this process. A job that fails is recorded and the others
    go on (its finished shots are kept: run the batch again to resume it)."""
    result = BatchResult()
    bar = tqdm(total=len(jobs), desc="runs", unit="run", disable=not progress)
    for method in dict.fromkeys(job.method for job in jobs):
        # a baseline's stories all run in one block without the LoRA (switched once)
        with contextlib.nullcontext() if method == "storymem" else pipe.lora_disabled():
            for job in (j for j in jobs if j.method == method):
                bar.set_postfix_str(f"{job.name}/{method}")
                try:
                    result.generated += run_job(pipe, job).generated
                except Exception as e:  # one story's failure is not the batch's
                    result.failed(job, e)
                bar.update(1)
    bar.close()
    return result
