"""Where the pipeline's models live: the memory mode (`acceleration.Placement`), context
parallelism over torchrun's ranks, and the T2V experts, loaded when a shot first needs them and
freed when the story needs them no more. A mixin of `StoryMemPipeline`.
"""

from __future__ import annotations

import torch

from .. import acceleration
from ..distributed import context_parallel
from ..distributed.lockstep import in_lockstep
from ..errors import InputError
from ..models.preview import PREVIEW_ADAPTER, load_preview_lora
from ..options import PipelineOptions

T2V_MISSING = (
    "a shot with no memory and no first frames needs the T2V experts, which are not loaded; "
    "load them (load_t2v=True) or give reference images as memory"
)


class PlacementMixin:
    """Needs: the experts, vae, text_encoder, preview, and the state set by `_init_placement`."""

    def _init_placement(self, t2v_given: tuple) -> None:
        # Loads the T2V experts when a shot needs them and they are not loaded (None: cannot).
        self.t2v_loader = (lambda: t2v_given) if t2v_given[0] is not None else None
        self._t2v_releasable = False  # experts built in code stay; loaded ones can be freed
        self.placement: acceleration.Placement | None = None
        self._compile = False
        self._attention: str | None = None
        self._context_parallel = 1  # ranks each shot is split over (torchrun)
        self.lockstep = None  # rank 0 of a torchrun launch: tells the other ranks each shot

    @property
    def _execution_device(self) -> torch.device:
        if self.placement is not None and not self.placement.hooks_move_models:
            return self.placement.device
        return super()._execution_device

    def loaded_experts(self) -> list[torch.nn.Module]:
        experts = (self.transformer, self.transformer_2, self.t2v_transformer, self.t2v_transformer_2)
        return [e for e in experts if e is not None]

    def enable_memory_mode(
        self,
        mode: str = PipelineOptions.memory_mode,
        device: str | torch.device | None = None,
        *,
        compile: bool = False,
        attention: str | None = None,
    ) -> str:
        """Place the components for one GPU (or the CPU): ``auto``, ``resident``, ``fp8``,
        ``group-offload`` or ``model-offload`` (see `storymem.acceleration`). Merges the LoRAs
        into the weights (except in fp8, where they stay beside), optionally compiles the
        experts' blocks and sets an attention backend. Returns the mode chosen."""
        if self.placement is not None:
            raise InputError("the memory mode is set once per pipeline; build a new pipeline to change it")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        expert_gib = acceleration.module_gib(self.transformer)
        models = [m for m in self.components.values() if isinstance(m, torch.nn.Module)]
        held = acceleration.gib_on(models, device) if mode == "auto" and device.type == "cuda" else 0.0
        chosen = acceleration.resolve_memory_mode(mode, device, expert_gib, held)
        if self._context_parallel > 1 and chosen not in ("resident", "fp8"):
            raise InputError(
                f"context parallelism keeps each expert whole on every GPU; memory mode {chosen} is not supported "
                "with it: use --memory-mode resident or fp8"
            )
        if attention is not None:
            if self._context_parallel > 1:
                context_parallel.check_attention(attention)
            acceleration.set_attention_backend(self.loaded_experts(), attention, device)
        self.placement = acceleration.Placement(chosen, device)
        self._configure_adapters()
        self.placement.prepare(self)
        if compile:
            for expert in self.loaded_experts():
                acceleration.compile_model(expert)
        self._compile, self._attention = compile, attention
        return chosen

    def enable_context_parallel(self, degree: int) -> None:
        """Split every shot's token sequence over `degree` ranks (run under torchrun, one
        process per GPU; see `storymem.distributed`). Call before `enable_memory_mode`."""
        if self.placement is not None:
            raise InputError("enable context parallelism before the memory mode")
        for expert in self.loaded_experts():
            context_parallel.enable(expert, degree)
        self._context_parallel = degree

    def can_make_t2v(self) -> bool:
        return (self.t2v_transformer is not None and self.t2v_transformer_2 is not None) or self.t2v_loader is not None

    def t2v_experts(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        """The T2V experts, loaded (and placed) now if they are not."""
        if self.t2v_transformer is None or self.t2v_transformer_2 is None:
            if self.t2v_loader is None:
                raise InputError(T2V_MISSING)
            high, low = self.t2v_loader()
            self.register_modules(t2v_transformer=high, t2v_transformer_2=low)
            self._set_up_added_experts((high, low))
        return self.t2v_transformer, self.t2v_transformer_2

    def _set_up_added_experts(self, experts) -> None:
        if self.preview is not None and self.preview.t2v:
            for expert, which in zip(experts, ("high", "low"), strict=True):
                load_preview_lora(expert, self.preview.t2v[which])
        if self._context_parallel > 1:
            for expert in experts:
                context_parallel.enable(expert, self._context_parallel)
        if self.placement is not None:
            for expert in experts:
                if self._attention:
                    expert.set_attention_backend(self._attention)
                acceleration.activate_adapters(expert, [PREVIEW_ADAPTER], self.placement.fuses_lora)
                self.placement.prepare_expert(expert)
                if self._compile:
                    acceleration.compile_model(expert)
            self.placement.added_expert(self)

    @in_lockstep
    def release_t2v_experts(self) -> None:
        """Free the T2V experts (the runner calls this once no later shot needs them); they are
        loaded again if a T2V shot comes after all."""
        if not self._t2v_releasable or (self.t2v_transformer is None and self.t2v_transformer_2 is None):
            return
        self.register_modules(t2v_transformer=None, t2v_transformer_2=None)
        if self.placement is not None:
            self.placement.added_expert(self)
        acceleration.free_memory()
