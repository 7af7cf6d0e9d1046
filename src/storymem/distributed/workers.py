"""Many stories at once with Ray: each job (a story with one method) is a Ray task.

A task runs in a Ray worker process that builds the pipeline once and keeps it for the tasks
that follow; it writes the job's normal run folder, so a worker that dies loses only the shot it
was making: Ray runs the task again (`max_retries`) and it resumes from the folder, like
`storymem generate --resume`. Real-model tasks each take one GPU; the built-in models take one
CPU core. The driver never loads a model for generation; evaluation and the report stay in the
driver, exactly as in a serial run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tqdm.auto import tqdm

from ..batch import run_job_as_its_method
from ..errors import InputError, StoryMemError

RETRIES = 3  # a task whose worker died is run again this many times, resuming each time

_built: dict[str, object] = {}  # in a worker process: built pipelines by description


def _job_in_worker(build: Callable, key: str, job):
    if key not in _built:
        _built.clear()  # one pipeline per worker process
        pipe = build()
        pipe.set_progress_bar_config(disable=True)
        _built[key] = pipe
    return run_job_as_its_method(_built[key], job)


def _start_ray(address: str | None, workers: int, gpu: bool):
    try:
        import ray
    except ImportError:
        raise InputError("--workers needs Ray: pip install 'storymem[ray]'") from None
    if ray.is_initialized():
        return ray, False
    options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address:
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise InputError(f"--ray-address {address}: cannot join that Ray cluster ({e})") from None
    else:
        ray.init(num_cpus=None if gpu else workers, **options)
    return ray, True


def run_jobs(build: Callable, key: str, jobs: list, workers: int, address: str | None = None, gpu: bool = False,
             progress: bool = True) -> int:  # fmt: skip
    """Run `jobs` as Ray tasks, at most `workers` at a time; returns the shots generated.
    build: a picklable function returning a placed pipeline (called once per worker process);
    key: a description of it. gpu: give each task one GPU (else one CPU core)."""
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    ray, started = _start_ray(address, workers, gpu)
    resources = {"num_gpus": 1} if gpu else {"num_cpus": 1}
    task = ray.remote(max_retries=RETRIES, **resources)(_job_in_worker)
    bar = tqdm(total=len(jobs), desc="runs", unit="run", disable=not progress)
    generated = 0
    pending: dict = {}
    todo = list(jobs)
    try:
        while todo or pending:
            while todo and len(pending) < workers:
                job = todo.pop(0)
                pending[task.remote(build, key, job)] = job
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            generated += _result(ray, done[0], job)
            bar.set_postfix_str(f"{job.name}/{job.method}")
            bar.update(1)
    finally:
        bar.close()
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
    return generated


def _result(ray, ref, job) -> int:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, StoryMemError):
            raise cause from None
        raise StoryMemError(f"{job.run_dir}: the run failed in its worker: {cause or e}") from None
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.RayError) as e:
        raise StoryMemError(
            f"{job.run_dir}: its worker died {RETRIES + 1} times ({type(e).__name__}); the finished shots are kept: "
            "run the same command again to resume"
        ) from None
