"""Where each component lives and when: memory modes, LoRA merging, compilation, attention.

Memory modes (all built on diffusers hooks, none of our own offloading):

    resident       both experts of the pair in use on the GPU in their own dtype (bf16)
    fp8            the same, stored as float8_e4m3fn and computed in bf16 (diffusers layerwise
                   casting): half the memory; the LoRA stays an unmerged bf16 layer beside them
    group-offload  experts on pinned CPU memory, streamed to the GPU one block at a time on a
                   CUDA side stream (diffusers group offloading); a few GiB of GPU memory
    model-offload  one whole model on the GPU at a time (diffusers model CPU offload)

`auto` picks from the free GPU memory (`choose_memory_mode`, a pure function). Whatever the
mode, the text encoder visits the GPU only while a story's prompts are encoded, and the T2V
experts are loaded only for the shots that need them (the pipeline asks, the runner frees).
"""

from __future__ import annotations

import contextlib
import gc

import torch

from .errors import InputError
from .options import MODE_CHOICES

CUDA_ONLY_MODES = ("model-offload",)
# GPU memory a shot needs beside the expert weights: attention activations at 10 memory frames
# (~5 GiB at 480x832), the VAE decoding 81 frames (~9 GiB in fp32), CLIP, and a margin.
WORKING_GIB = 12.0
GIB = 2**30


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def choose_memory_mode(free_gib: float, expert_gib: float, working_gib: float = WORKING_GIB) -> str:
    """The fastest mode whose weights fit: a pair of experts in bf16 (resident), in fp8 (half the
    bytes), or streamed block by block (group offload). For Wan2.2-A14B (26.6 GiB per expert):
    resident from 65 GiB free (80 GB cards), fp8 from 39 GiB (40-48 GB), group offload below."""
    if free_gib >= 2 * expert_gib + working_gib:
        return "resident"
    if free_gib >= expert_gib + working_gib:
        return "fp8"
    return "group-offload"


def available_gib(device: torch.device, held_gib: float = 0.0) -> float:
    """Memory a pipeline can use on a CUDA device: what is free (within this process's memory
    fraction, if one was set) plus `held_gib`, what its own models already occupy there."""
    free, total = torch.cuda.mem_get_info(device)
    get_fraction = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    fraction = get_fraction(device) if get_fraction is not None else 1.0
    allowed = fraction * total - torch.cuda.memory_reserved(device)
    return min(free, allowed) / GIB + held_gib


def module_gib(module: torch.nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in module.parameters()) / GIB


def check_memory_mode(requested: str, device: torch.device) -> None:
    """One line for a mode that does not exist or cannot run here (before any weights are read)."""
    if requested not in MODE_CHOICES:
        raise InputError(f"--memory-mode must be one of {', '.join(MODE_CHOICES)}, got {requested!r}")
    if device.type != "cuda" and requested in CUDA_ONLY_MODES:
        raise InputError(f"--memory-mode {requested} needs a CUDA GPU; on {device.type} use resident (or auto)")


def resolve_memory_mode(requested: str, device: torch.device, expert_gib: float, held_gib: float = 0.0) -> str:
    """`requested`, or for auto the choice for this device's memory (held_gib: see available_gib)."""
    check_memory_mode(requested, device)
    if device.type != "cuda":
        return "resident" if requested == "auto" else requested
    if requested == "auto":
        return choose_memory_mode(available_gib(device, held_gib), expert_gib)
    return requested


def gib_on(modules, device: torch.device) -> float:
    """Bytes of these modules' parameters that already live on `device`, in GiB."""
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters() if p.device == device) / GIB


# ---------------------------------------------------------------------------- LoRA adapters
def _tuner_layers(model: torch.nn.Module):
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def is_fused(model: torch.nn.Module) -> bool:
    return any(layer.merged for layer in _tuner_layers(model))


def activate_adapters(model: torch.nn.Module, names: list[str], fuse: bool) -> None:
    """Make exactly `names` (those the model has) the active LoRA adapters, merged into the
    weights if `fuse`. Merging and unmerging are peft's, in place, so they hold wherever the
    weights live (GPU, pinned CPU copies under group offload, CPU under model offload);
    unmerging restores the plain weights within the rounding of their dtype."""
    if not getattr(model, "peft_config", None):
        return
    if is_fused(model):
        model.unfuse_lora()
    names = [n for n in names if n in model.peft_config]
    if not names:
        model.disable_lora()
        return
    model.set_adapters(names, [1.0] * len(names))  # scales stay each adapter's own (rsLoRA included)
    model.enable_lora()
    if fuse:
        model.fuse_lora(adapter_names=names)


# ---------------------------------------------------------------------------- placement
class Placement:
    """Applies one memory mode to a pipeline's components and moves them when asked."""

    def __init__(self, mode: str, device: torch.device):
        self.mode = mode
        self.device = torch.device(device)
        self.offload_device = torch.device("cpu")

    @property
    def fuses_lora(self) -> bool:
        # fp8 storage would round the LoRA's small delta away (3 mantissa bits): keep it beside.
        return self.mode != "fp8"

    @property
    def hooks_move_models(self) -> bool:
        return self.mode == "model-offload"

    def prepare(self, pipe) -> None:
        """Once, after the LoRAs are loaded: hooks and the fixed placements."""
        if self.mode == "model-offload":
            pipe.enable_model_cpu_offload(device=self.device)
            return
        for expert in pipe.loaded_experts():
            self.prepare_expert(expert)
        pipe.vae.to(self.device)
        if self.mode != "resident":
            pipe.vae.enable_tiling()
        pipe.text_encoder.to(self.offload_device)

    def prepare_expert(self, expert: torch.nn.Module) -> None:
        """Mode-specific storage for one expert (also for T2V experts loaded later)."""
        if self.mode == "fp8":
            expert.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=expert.dtype)
        elif self.mode == "group-offload":
            expert.to(self.offload_device)
            stream = self.device.type == "cuda"
            expert.enable_group_offload(
                onload_device=self.device,
                offload_device=self.offload_device,
                offload_type="block_level",
                num_blocks_per_group=1,
                use_stream=stream,  # prefetch the next block while this one computes (pins memory)
            )

    def added_expert(self, pipe) -> None:
        """A model joined the pipeline after `prepare` (the T2V experts, loaded on demand)."""
        if self.mode == "model-offload":
            pipe.enable_model_cpu_offload(device=self.device)  # re-hooks every component

    def activate(self, experts, others) -> None:
        """Before denoising with `experts`: they are on the device; `others` (the other pair,
        when still loaded) leave it in the modes that keep weights resident."""
        if self.mode not in ("resident", "fp8"):
            return
        for model in others:
            if model is not None and model.device != self.offload_device:
                model.to(self.offload_device)
        for model in experts:
            model.to(self.device)

    @contextlib.contextmanager
    def text_encoder(self, pipe):
        """The text encoder on the device only while prompts are encoded."""
        if self.hooks_move_models:
            yield
            return
        pipe.text_encoder.to(self.device)
        try:
            yield
        finally:
            pipe.text_encoder.to(self.offload_device)
            free_memory()


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------- speed options
CPU_ATTENTION_BACKENDS = ("native", "_native_math", "flex")


def check_attention_backend(backend: str, device: torch.device) -> None:
    """One line for a backend diffusers does not have or that cannot run here."""
    from diffusers.models.attention_dispatch import AttentionBackendName

    names = [b.value for b in AttentionBackendName]
    if backend not in names:
        raise InputError(f"--attention must be one of {', '.join(names)}, got {backend!r}")
    if device.type != "cuda" and backend not in CPU_ATTENTION_BACKENDS:
        raise InputError(
            f"--attention {backend} needs a CUDA GPU; on {device.type} use one of {', '.join(CPU_ATTENTION_BACKENDS)}"
        )


def set_attention_backend(models, backend: str, device: torch.device) -> None:
    """diffusers' attention backends, with our one-line errors (a missing package included)."""
    check_attention_backend(backend, device)
    for model in models:
        try:
            model.set_attention_backend(backend)
        except (RuntimeError, ValueError, ImportError) as e:
            raise InputError(f"--attention {backend}: {str(e).splitlines()[0]}") from None


def compile_model(model: torch.nn.Module) -> None:
    """Regional compilation: each transformer block is compiled once and reused by all blocks.
    A new token count (another number of memory frames) recompiles once; from the second new
    one on, dynamo marks the sequence length dynamic, so a story compiles two or three times."""
    import torch._dynamo

    # 11 memory lengths x 2 experts x CFG branches must not exhaust the recompile budget.
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # torch < 2.6
    setattr(config, name, max(getattr(config, name), 64))
    model.compile_repeated_blocks(fullgraph=True)
