"""Rank 0 leads, the other ranks follow: how a story runs under torchrun.

Rank 0 runs the story as always (story checks, run folder, resume, keyframe selection, every
write). Each call that needs all ranks (a shot's denoising is collective under context
parallelism) is first broadcast to the followers, which repeat it with the same arguments. After
the experts' output is gathered every rank holds the same latents, so nothing else needs sharing.
Followers read no files and write none: resume works exactly as in a single-process run.
"""

from __future__ import annotations

import contextlib
import functools

import torch

STOP = "stop"


def _broadcast(message=None):
    box = [message]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _on_cpu(value):
    # Followers unpickle tensors onto the device they were saved from: send CPU tensors.
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(v) for v in value)
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    return value


class Leader:
    """Rank 0's side: tells the followers each collective call before making it."""

    def send(self, name: str, args: tuple, kwargs: dict) -> None:
        _broadcast((name, _on_cpu(args), _on_cpu(kwargs)))

    def stop(self) -> None:
        _broadcast((STOP, (), {}))


def in_lockstep(method):
    """Decorator for pipeline methods that every rank must call together."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self.lockstep is not None:
            self.lockstep.send(method.__name__, args, kwargs)
        return method(self, *args, **kwargs)

    return wrapper


def follow(pipe) -> None:
    """A follower's whole life: repeat rank 0's calls until it says stop."""
    while True:
        name, args, kwargs = _broadcast()
        if name == STOP:
            return
        try:
            getattr(pipe, name)(*args, **kwargs)
        except Exception:  # rank 0 meets the same error on the same inputs and reports it
            pass


@contextlib.contextmanager
def lead_or_follow(pipe, launch):
    """Yields True on the rank that runs the story (rank 0, or a process on its own); the
    other ranks follow inside this block and it yields False to them."""
    from . import context_parallel

    if launch is None:
        yield True
        return
    try:
        if launch.rank:
            pipe.set_progress_bar_config(disable=True)
            follow(pipe)
            yield False
        else:
            pipe.lockstep = Leader()
            try:
                yield True
            finally:
                pipe.lockstep.stop()
                pipe.lockstep = None
    finally:
        context_parallel.stop()
