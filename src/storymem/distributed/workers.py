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
import socket
from collections.abc import Callable

from tqdm.auto import tqdm

from ..batch import BatchResult, run_job_as_its_method
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


CONNECT_TIMEOUT_S = 10  # how long an unreachable --ray-address is tried before one line says so


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """One line within `timeout` seconds when nothing answers at a Ray address (ray.init would
    retry for minutes without a word). "auto" (a local cluster found by Ray) is not checked."""
    if address == "auto":
        return
    where = address.split("://", 1)[-1]
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--ray-address {address}: expected HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise InputError(
            f"--ray-address {address}: nothing answers at {host}:{port} within {timeout:.0f} s "
            f"({e.strerror or type(e).__name__}); is the Ray head running there?"
        ) from None


def _start_ray(address: str | None, workers: int, gpu: bool):
    try:
        import ray
    except ImportError:
        raise InputError("--workers needs Ray: pip install 'storymem[ray]'") from None
    if ray.is_initialized():
        return ray, False
    options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address:
        check_reachable(address)
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise InputError(f"--ray-address {address}: cannot join that Ray cluster ({e})") from None
    else:
        ray.init(num_cpus=None if gpu else workers, **options)
    return ray, True


def run_jobs(build: Callable, key: str, jobs: list, workers: int, address: str | None = None, gpu: bool = False,
             progress: bool = True) -> int:  # fmt: skip
    """Run `jobs` as Ray tasks, at most `workers` at a time. A job that fails is recorded and the
    others go on (none is cancelled). build: a picklable function returning a placed pipeline
    (called once per worker process); key: a description of it. gpu: give each task one GPU (else
    one CPU core)."""
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    ray, started = _start_ray(address, workers, gpu)
    resources = {"num_gpus": 1} if gpu else {"num_cpus": 1}
    task = ray.remote(max_retries=RETRIES, **resources)(_job_in_worker)
    bar = tqdm(total=len(jobs), desc="runs", unit="run", disable=not progress)
    result = BatchResult()
    pending: dict = {}
    todo = list(jobs)
    try:
        while todo or pending:
            while todo and len(pending) < workers:
                job = todo.pop(0)
                pending[task.remote(build, key, job)] = job
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            try:
                result.generated += _result(ray, done[0], job)
            except StoryMemError as e:
                result.failed(job, e)
            bar.set_postfix_str(f"{job.name}/{job.method}")
            bar.update(1)
    finally:
        bar.close()
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
    return result


def _result(ray, ref, job) -> int:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, StoryMemError):
            raise cause from None
        raise StoryMemError(f"the run failed in its worker: {cause or e}") from None
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.RayError) as e:
        raise StoryMemError(
            f"its worker died {RETRIES + 1} times ({type(e).__name__}); the finished shots are kept: "
            "run the same command again to resume"
        ) from None
