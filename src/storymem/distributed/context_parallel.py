"""One shot across several processes: diffusers' context parallelism (Ulysses) on the experts.

Under `torchrun --nproc-per-node N`, every rank holds the whole pipeline and runs the same shot;
inside each expert the token sequence is split N ways and attention exchanges heads (all-to-all),
as diffusers' `enable_parallelism` with Wan's `_cp_plan` does. Our memory RoPE module is named
`rope`, so its explicit negative time positions are split exactly like the stock table.

Ulysses needs the token count to divide by N; memory frames make any count possible, so the
transformer appends empty latent frames and masks them out of attention
(`StoryMemWanTransformer3DModel.sequence_multiple`). Ring attention is not offered: it needs an
attention kernel that returns log-sum-exp (flash / cuDNN, CUDA only), which no machine of ours
could run.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from dataclasses import dataclass

import torch

from ..errors import InputError


@dataclass(frozen=True)
class Launch:
    rank: int
    world_size: int
    local_rank: int


def launched() -> Launch | None:
    """The torchrun launch this process belongs to, or None when it runs alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size < 2:
        return None
    return Launch(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def is_follower() -> bool:
    """A rank other than 0 of a torchrun launch: it computes but never speaks or writes."""
    launch = launched()
    return launch is not None and launch.rank != 0


def start(launch: Launch) -> torch.device:
    """Join the process group (NCCL on GPUs, gloo on CPUs) and return this rank's device."""
    cuda = torch.cuda.is_available()
    if cuda:
        if torch.cuda.device_count() <= launch.local_rank:
            raise InputError(
                f"rank {launch.rank} needs GPU {launch.local_rank}, but only {torch.cuda.device_count()} are visible; "
                "give torchrun at most one process per GPU"
            )
        torch.cuda.set_device(launch.local_rank)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return torch.device("cuda", launch.local_rank) if cuda else torch.device("cpu")


def stop() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _mesh.cache_clear()


@functools.lru_cache(maxsize=1)
def _mesh(degree: int, device_type: str):
    # One mesh (one set of process groups) for all experts of this process.
    return torch.distributed.device_mesh.init_device_mesh(device_type, (1, degree), mesh_dim_names=("ring", "ulysses"))


@contextlib.contextmanager
def _one_device_on_cpu():
    # diffusers picks the rank's device as rank % torch.accelerator.device_count(), which is 0 on
    # a CPU-only machine (ZeroDivisionError); the device it picks is unused when we give the mesh.
    if torch.accelerator.device_count() > 0:
        yield
        return
    original = torch.accelerator.device_count
    torch.accelerator.device_count = lambda: 1
    try:
        yield
    finally:
        torch.accelerator.device_count = original


def check_degree(expert: torch.nn.Module, degree: int) -> None:
    heads = expert.config.num_attention_heads
    if heads % degree:
        raise InputError(
            f"context parallelism over {degree} processes needs the attention heads ({heads}) to divide by "
            f"{degree}; start torchrun with --nproc-per-node one of "
            f"{', '.join(str(n) for n in range(2, heads + 1) if heads % n == 0)}"
        )


def check_attention(backend: str | None) -> None:
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    if backend is not None and not _AttentionBackendRegistry._is_context_parallel_available(
        AttentionBackendName(backend)
    ):
        raise InputError(f"--attention {backend} does not support context parallelism; leave --attention out")


def enable(expert: torch.nn.Module, degree: int) -> None:
    """Split this expert's token sequence over `degree` ranks (Ulysses), with padding for any length."""
    from diffusers import ContextParallelConfig

    check_degree(expert, degree)
    check_attention(getattr(expert.blocks[0].attn1.processor, "_attention_backend", None))
    device_type = torch._C._get_accelerator().type
    config = ContextParallelConfig(ulysses_degree=degree, mesh=_mesh(degree, device_type))
    _quiet_diffusers()
    with _one_device_on_cpu():
        expert.enable_parallelism(config=config)
    expert.sequence_multiple = degree


def _quiet_diffusers() -> None:
    # Notices a user cannot act on, for the rest of this process: "experimental feature" (every
    # expert, every rank), the A14B experts' per-sample timestep left unsplit (correct: it is not
    # per token), and a deprecation inside diffusers' all-gather.
    for name in ("diffusers.models.modeling_utils", "diffusers.hooks.context_parallel"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*all_gather_tensor.*deprecated", category=FutureWarning)
