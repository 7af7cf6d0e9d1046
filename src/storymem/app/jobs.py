"""One generation at a time per app process: a queue and a worker thread.

A run belongs to the app, not to a browser tab: closing the tab leaves it running, and any tab
sees it (by its run folder). The pipeline is built on the first run and kept while the model
settings stay the same.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..build import build_pipeline
from ..errors import StoryMemError
from ..options import PipelineOptions, RunSettings
from ..runner import generate_story, reshoot


@dataclass
class Job:
    run_dir: Path
    story: object
    settings: RunSettings
    options: PipelineOptions  # what builds the pipeline
    resume: bool = False
    reshoot: dict | None = None  # {"shot", "prompt", "seed", "then"}: make one shot of the run again
    status: str = "queued"  # queued, running, finished, failed
    error: str = ""
    step: int = 0
    steps: int = 0
    generated: int = 0
    done: threading.Event = field(default_factory=threading.Event)


class Generator:
    def __init__(self, build: Callable[[PipelineOptions], object] = build_pipeline):
        """build(options) returns a placed pipeline."""
        self._build = build
        self._pipe, self._pipe_key = None, None
        self._queue: queue.Queue[Job] = queue.Queue()
        self.jobs: dict[str, Job] = {}  # by run folder
        self._lock = threading.Lock()
        threading.Thread(target=self._work, daemon=True, name="storymem-generator").start()

    def submit(self, job: Job) -> Job:
        key = str(job.run_dir.resolve())
        with self._lock:
            current = self.jobs.get(key)
            if current is not None and current.status in ("queued", "running"):
                return current  # that run is already on its way
            self.jobs[key] = job
        self._queue.put(job)
        return job

    def job_for(self, run_dir: Path) -> Job | None:
        return self.jobs.get(str(Path(run_dir).resolve()))

    def busy(self) -> bool:
        return any(j.status in ("queued", "running") for j in self.jobs.values())

    def _pipe_for(self, options: PipelineOptions):
        if self._pipe_key != options:
            self._pipe = None  # free the old one first
            self._pipe = self._build(options)
            self._pipe.set_progress_bar_config(disable=True)
            self._pipe_key = options
        return self._pipe

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            job.status = "running"
            try:
                pipe = self._pipe_for(job.options)

                def on_step(pipe, step, timestep, tensors, job=job):
                    job.step, job.steps = step + 1, pipe.num_timesteps
                    return tensors

                if job.reshoot is not None:
                    result, _ = reshoot(pipe, job.run_dir, **job.reshoot, progress=False, on_step=on_step)
                else:
                    result = generate_story(
                        pipe, job.story, job.run_dir, job.settings, resume=job.resume, progress=False,
                        callback_on_step_end=on_step,
                    )  # fmt: skip
                job.generated = result.generated
                job.status = "finished"
            except StoryMemError as e:  # the CLI's one-line message, shown in the page
                job.status, job.error = "failed", str(e)
            except Exception as e:  # never lose the worker thread
                job.status, job.error = "failed", f"{type(e).__name__}: {e}"
            finally:
                job.done.set()
