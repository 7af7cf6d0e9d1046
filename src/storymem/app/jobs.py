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

from ..errors import StoryMemError


@dataclass
class Job:
    run_dir: Path
    story: object
    settings: dict  # RunSettings fields for generate_story
    model: dict  # what builds the pipeline: model, memory_mode, preview
    resume: bool = False
    status: str = "queued"  # queued, running, finished, failed
    error: str = ""
    step: int = 0
    steps: int = 0
    generated: int = 0
    done: threading.Event = field(default_factory=threading.Event)


class Generator:
    def __init__(self, build: Callable[..., object]):
        """build(**model) returns a placed pipeline (the CLI's, with its checks)."""
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

    def _pipeline(self, model: dict):
        key = tuple(sorted(model.items()))
        if self._pipe_key != key:
            self._pipe = None  # free the old one first
            self._pipe = self._build(**model)
            self._pipe.set_progress_bar_config(disable=True)
            self._pipe_key = key
        return self._pipe

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            job.status = "running"
            try:
                pipe = self._pipeline(job.model)

                def on_step(step, steps, job=job):
                    job.step, job.steps = step, steps

                pipe.on_step = on_step
                result = pipe.generate_story(job.story, job.run_dir, resume=job.resume, progress=False, **job.settings)
                job.generated = result.generated
                job.status = "finished"
            except StoryMemError as e:  # the CLI's one-line message, shown in the page
                job.status, job.error = "failed", str(e)
            except Exception as e:  # never lose the worker thread
                job.status, job.error = "failed", f"{type(e).__name__}: {e}"
            finally:
                if self._pipe is not None:
                    self._pipe.on_step = None
                job.done.set()
